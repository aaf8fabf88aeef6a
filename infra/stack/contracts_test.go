package stack_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/infra/stack/stacktest"
	"github.com/visionstack/visionstack/runtime/config"
)

// Cloud Monitoring refuses a metric-threshold or absence condition whose filter does
// not restrict resource.type ("must specify a restriction on "resource.type" in the
// filter": terraform-provider-google #4165 and #7179, nodejs-monitoring #46); the
// first `up` would stop there. The runtime's own metrics are on the resource its
// exporter writes them on (config.CloudMetricResource, job = the telemetry service
// name), and the dashboard reads the same series.
func TestAlertFiltersNameTheirResource(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	own := `resource.type="` + config.CloudMetricResource + `" AND resource.labels.job="` + config.TelemetryService("acme-defects") + `"`
	n := 0
	for _, p := range m.Of("gcp:monitoring/alertPolicy:AlertPolicy") {
		for _, c := range p.Inputs["conditions"].ArrayValue() {
			for _, k := range []string{"filter", "denominatorFilter"} {
				f := str(obj(c, "conditionThreshold", k))
				if f == "" {
					continue
				}
				n++
				if !strings.Contains(f, `resource.type="`) {
					t.Errorf("%s: %s has no resource.type: %s", p.Name, k, f)
				}
				if strings.Contains(f, config.CloudMetricPrefix) && !strings.Contains(f, own) {
					t.Errorf("%s: the runtime's metric is read off its resource (want %s): %s", p.Name, own, f)
				}
			}
		}
	}
	if n < 6 {
		t.Fatalf("%d filters", n)
	}
	var dash struct {
		GridLayout struct {
			Widgets []struct {
				Title   string
				XyChart struct {
					DataSets []struct {
						TimeSeriesQuery struct {
							TimeSeriesFilter struct{ Filter string }
						}
					}
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(str(m.Of("gcp:monitoring/dashboard:Dashboard")[0].Inputs["dashboardJson"])), &dash); err != nil {
		t.Fatal(err)
	}
	for _, w := range dash.GridLayout.Widgets {
		for _, d := range w.XyChart.DataSets {
			f := d.TimeSeriesQuery.TimeSeriesFilter.Filter
			if !strings.Contains(f, `resource.type="`) || strings.Contains(f, config.CloudMetricPrefix) && !strings.Contains(f, own) {
				t.Errorf("chart %q reads %s", w.Title, f)
			}
		}
	}
}

// `destroy` deletes the database (the provider's default, ABANDON, leaves it in the
// project and the next `up` of the name collides with it); delete protection, on by
// default (TestDeleteProtectionIsASetting), is what stops it.
func TestDestroyDeletesFirestore(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "")
	for _, protect := range []bool{true, false} {
		p.GCP.DeleteProtection = &protect
		db := run(t, p).Of("gcp:firestore/database:Database")
		if got := str(db[0].Inputs["deletionPolicy"]); got != "DELETE" {
			t.Errorf("protection %v: deletionPolicy %q: destroy would abandon the database", protect, got)
		}
	}
}

// Every composite index the runtime's queries need (config.FirestoreIndexes, which
// runtime/meta/firestore's TestEveryQueryHasItsIndex checks the queries against) is
// created, field for field.
func TestFirestoreIndexesCreated(t *testing.T) {
	got := map[string]bool{}
	for _, ix := range run(t, project(t, "acme-defects", "acme-prod", "")).Of("gcp:firestore/index:Index") {
		var fields []string
		for _, f := range ix.Inputs["fields"].ArrayValue() {
			fields = append(fields, str(obj(f, "fieldPath"))+" "+str(obj(f, "order")))
		}
		got[str(ix.Inputs["collection"])+": "+strings.Join(fields, ", ")] = true
	}
	for _, ix := range config.FirestoreIndexes {
		var fields []string
		for _, f := range ix.Fields {
			order := "ASCENDING"
			if f.Descending {
				order = "DESCENDING"
			}
			fields = append(fields, f.Path+" "+order)
		}
		if k := ix.Collection + ": " + strings.Join(fields, ", "); !got[k] {
			t.Errorf("no index %s (have %v)", k, got)
		}
	}
}

// The pipeline gets what its code uses and no more: predictions on its endpoint
// (not roles/aiplatform.user, which deploys and undeploys too), no publisher on the
// dead-letter topic (only Pub/Sub's agent dead-letters in the cloud), no log writer
// (Cloud Run ships stdout itself); and the project-wide Cloud Storage agent's grant
// on a shared KMS key outlives a destroyed stack.
func TestGrantsMatchWhatTheCodeUses(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "")
	m := &stacktest.Mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := stack.NewProject(ctx, p, stack.Args{Image: "i@sha256:abc", KMSKey: "projects/acme-prod/locations/europe-west3/keyRings/r/cryptoKeys/k"})
		return err
	}, pulumi.WithMocks("visionstack", p.Name, m))
	if err != nil {
		t.Fatal(err)
	}
	pipe := "serviceAccount:acme-defects-pipeline@acme-prod.iam.gserviceaccount.com"
	for _, g := range m.Of("gcp:pubsub/topicIAMMember:TopicIAMMember") {
		if str(g.Inputs["member"]) == pipe && str(g.Inputs["topic"]) == "acme-defects-dead-letter" {
			t.Errorf("%s: the pipeline may publish to the dead-letter topic", g.Name)
		}
	}
	for _, g := range m.Of("gcp:projects/iAMMember:IAMMember") {
		if r := str(g.Inputs["role"]); r == "roles/logging.logWriter" || r == "roles/aiplatform.user" {
			t.Errorf("%s: %s", g.Name, r)
		}
	}
	roles := m.Of("gcp:projects/iAMCustomRole:IAMCustomRole")
	if len(roles) != 1 {
		t.Fatalf("%d custom roles", len(roles))
	}
	var perms []string
	for _, v := range roles[0].Inputs["permissions"].ArrayValue() {
		perms = append(perms, v.StringValue())
	}
	if !slices.Equal(perms, []string{"aiplatform.endpoints.predict"}) {
		t.Errorf("the predict role has %v", perms)
	}
	kms := m.Of("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
	if len(kms) != 1 {
		t.Fatalf("%d KMS grants", len(kms))
	}
	if rpc := kms[0].RegisterRPC; rpc == nil || rpc.RetainOnDelete == nil || !*rpc.RetainOnDelete {
		t.Errorf("the Cloud Storage agent's KMS grant is deleted with the stack: another stack sharing the key loses CMEK writes")
	}
}

// docs/deploy.md's table of the deployer's roles is DeployerRoles, and every one of them can
// be granted before the first `up`: on the project or the KMS key, never on something
// the stack creates (the old table asked for serviceAccountUser on the pipeline and
// invoker accounts, which do not exist until that `up`).
func TestDeployerRolesCanBeGrantedBeforeTheFirstUp(t *testing.T) {
	readme, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "**The deployer's roles**")
	if start < 0 {
		t.Fatal("docs/deploy.md has no deployer's roles")
	}
	var rows []string
	for _, line := range strings.Split(s[start:], "\n")[1:] {
		if strings.HasPrefix(line, "| `roles/") {
			rows = append(rows, line)
		} else if len(rows) > 0 {
			break
		}
	}
	var want []string
	for _, r := range stack.DeployerRoles {
		if r.On != "project" && r.On != "the key" {
			t.Errorf("%s on %s: not grantable before the stack exists", r.Role, r.On)
		}
		want = append(want, fmt.Sprintf("| `%s` | %s | %s |", r.Role, r.On, r.Why))
	}
	if !slices.Equal(rows, want) {
		t.Errorf("docs/deploy.md's deployer roles differ from stack.DeployerRoles:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
}

// Issue 25: an onnx:PATH file is uploaded to the model bucket (versioned, private) as
// an object named by its content, and the service's environment pins it: the object's
// URI, generation and sha256, so a new file is a new revision and the pipeline may
// read it (objectViewer on that bucket only).
func TestModelFilesUploadedAndPinned(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "")
	p.Dir = "../../projects/defects"
	p.Pipeline.Analyses = append(p.Pipeline.Analyses, config.Analysis{Name: "defects", Model: "onnx:model/defects.onnx", Mode: "async"})
	p.ApplyDefaults()
	if probs := p.Validate(); len(probs) > 0 {
		t.Fatal(probs)
	}
	m := run(t, p)
	objs := m.Of("gcp:storage/bucketObject:BucketObject")
	if len(objs) != 1 {
		t.Fatalf("%d model objects", len(objs))
	}
	sum := sha256.Sum256([]byte(mustReadFile(t, "../../projects/defects/model/defects.onnx")))
	want := stack.ModelObject(hex.EncodeToString(sum[:]), "model/defects.onnx")
	if got := str(objs[0].Inputs["name"]); got != want {
		t.Errorf("object %q, want %q", got, want)
	}
	var bucket pulumi.MockResourceArgs
	for _, b := range m.Of("gcp:storage/bucket:Bucket") {
		if str(b.Inputs["name"]) == "acme-prod-acme-defects-models" {
			bucket = b
		}
	}
	if bucket.Name == "" || !obj(bucket.Inputs["versioning"], "enabled").BoolValue() || str(bucket.Inputs["publicAccessPrevention"]) != "enforced" {
		t.Errorf("model bucket %v", bucket.Inputs)
	}
	var pins string
	for _, e := range obj(m.Of("gcp:cloudrunv2/service:Service")[0].Inputs["template"], "containers").ArrayValue()[0].ObjectValue()["envs"].ArrayValue() {
		if str(e.ObjectValue()["name"]) == "VISIONSTACK_ONNX_PINS" {
			pins = str(e.ObjectValue()["value"])
		}
	}
	if !strings.Contains(pins, `"model/defects.onnx"`) || !strings.Contains(pins, "gs://acme-prod-acme-defects-models/"+want) ||
		!strings.Contains(pins, hex.EncodeToString(sum[:])) || !strings.Contains(pins, "1733300000000001") {
		t.Errorf("pins %q", pins)
	}
	reads := false
	for _, g := range m.Of("gcp:storage/bucketIAMMember:BucketIAMMember") {
		if str(g.Inputs["bucket"]) == "acme-prod-acme-defects-models" && str(g.Inputs["role"]) == "roles/storage.objectViewer" {
			reads = true
		}
	}
	if !reads {
		t.Error("the pipeline may not read the model bucket")
	}
}

func mustReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
