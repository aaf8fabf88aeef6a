package stack

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/cloudrunv2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// service: the pipeline on Cloud Run v2, its config as env, probes on the runtime's
// health endpoints, scaling and startup CPU boost from the project's serving block.
func (b *builder) service() error {
	s := b.cfg.Serving
	b.image = pulumi.String(b.args.Image).ToStringOutput()
	if b.args.Image == "" {
		deployed := b.args.Deployed
		if deployed.OutputState == nil {
			deployed = pulumi.Any(nil)
		}
		b.image = deployed.ApplyT(func(v any) string {
			if s, _ := v.(string); s != "" {
				return s
			}
			return PlaceholderImage
		}).(pulumi.StringOutput)
	}
	vars := map[string]pulumi.StringInput{
		"VISIONSTACK_PROJECT":              pulumi.String(b.cfg.Name),
		"VISIONSTACK_FIRESTORE_DATABASE":   pulumi.String(b.names.Database),
		"VISIONSTACK_VERTEX_ENDPOINT":      b.vertexEndpoint.ID(),
		"VISIONSTACK_PUSH_AUDIENCE":        pulumi.String(PushAudience(b.cfg.Name)),
		"VISIONSTACK_PUSH_SERVICE_ACCOUNT": b.invokerSA.Email,
		"GOMEMLIMIT":                       pulumi.String(fmt.Sprintf("%dMiB", s.MemoryBytes()*7/10>>20)),
	}
	if b.modelPins.OutputState != nil {
		vars["VISIONSTACK_ONNX_PINS"] = b.modelPins // the name of models.PinsEnv
	}
	// In name order: a map's order changes from run to run, and so would the service
	// (a diff on every preview, a new revision on every up).
	env := cloudrunv2.ServiceTemplateContainerEnvArray{}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, cloudrunv2.ServiceTemplateContainerEnvArgs{Name: pulumi.String(k), Value: vars[k]})
	}
	ingress := "INGRESS_TRAFFIC_ALL" // Pub/Sub push arrives from outside the VPC; IAM guards it
	var err error
	b.run, err = cloudrunv2.NewService(b.ctx, b.names.RunService, &cloudrunv2.ServiceArgs{
		Project: pulumi.String(b.cfg.GCP.Project), Name: pulumi.String(b.names.RunService), Location: pulumi.String(b.cfg.GCP.Region),
		Ingress: pulumi.String(ingress), Labels: b.labels(),
		CustomAudiences: pulumi.StringArray{pulumi.String(PushAudience(b.cfg.Name))},
		Template: cloudrunv2.ServiceTemplateArgs{
			ServiceAccount:                b.pipelineSA.Email,
			MaxInstanceRequestConcurrency: pulumi.Int(s.Concurrency),
			Timeout:                       pulumi.Sprintf("%ds", int(b.cfg.Delivery.AckDeadline.Seconds())),
			Scaling: cloudrunv2.ServiceTemplateScalingArgs{
				MinInstanceCount: pulumi.Int(*s.MinInstances), MaxInstanceCount: pulumi.Int(s.MaxInstances),
			},
			Containers: cloudrunv2.ServiceTemplateContainerArray{cloudrunv2.ServiceTemplateContainerArgs{
				Image: b.image,
				Args:  pulumi.StringArray{pulumi.String("serve"), pulumi.String("--backend"), pulumi.String("cloud")},
				Envs:  env,
				Ports: cloudrunv2.ServiceTemplateContainerPortArray{cloudrunv2.ServiceTemplateContainerPortArgs{ContainerPort: pulumi.Int(8080)}},
				Resources: cloudrunv2.ServiceTemplateContainerResourcesArgs{
					Limits:          pulumi.StringMap{"cpu": pulumi.String(fmt.Sprint(s.CPU)), "memory": pulumi.String(s.Memory)},
					StartupCpuBoost: pulumi.Bool(true),
					CpuIdle:         pulumi.Bool(true),
				},
				StartupProbe: cloudrunv2.ServiceTemplateContainerStartupProbeArgs{
					HttpGet:          cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs{Path: pulumi.String("/readyz")},
					PeriodSeconds:    pulumi.Int(2),
					FailureThreshold: pulumi.Int(30),
				},
				LivenessProbe: cloudrunv2.ServiceTemplateContainerLivenessProbeArgs{
					HttpGet: cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs{Path: pulumi.String("/healthz")},
				},
			}},
		},
	}, b.opts()...)
	return err
}
