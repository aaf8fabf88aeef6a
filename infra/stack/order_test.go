package stack_test

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/infra/stack/stacktest"
	"github.com/visionstack/visionstack/runtime/config"
)

// runWith builds the component with args.
func runWith(t *testing.T, p *config.Project, args stack.Args) *stacktest.Mocks {
	t.Helper()
	m := &stacktest.Mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := stack.NewProject(ctx, p, args)
		return err
	}, pulumi.WithMocks("visionstack", p.Name, m))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func one(t *testing.T, m *stacktest.Mocks, typ string, match func(pulumi.MockResourceArgs) bool) pulumi.MockResourceArgs {
	t.Helper()
	for _, r := range m.Of(typ) {
		if match(r) {
			return r
		}
	}
	t.Fatalf("no %s matching", typ)
	return pulumi.MockResourceArgs{}
}

// #1: an alert on a custom metric fails on a fresh project until the metric exists;
// every metric an alert reads is declared first, and the alert waits for it.
func TestAlertsWaitForTheirMetricDescriptors(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	custom := regexp.MustCompile(`metric\.type="(` + regexp.QuoteMeta(config.CloudMetricPrefix) + `[^"]+)"`)
	descriptors := map[string]pulumi.MockResourceArgs{}
	for _, d := range m.Of("gcp:monitoring/metricDescriptor:MetricDescriptor") {
		descriptors[str(d.Inputs["type"])] = d
	}
	var reads int
	for _, a := range m.Of("gcp:monitoring/alertPolicy:AlertPolicy") {
		for _, c := range a.Inputs["conditions"].ArrayValue() {
			for _, mt := range custom.FindAllStringSubmatch(str(obj(c, "conditionThreshold", "filter")), -1) {
				reads++
				d, ok := descriptors[mt[1]]
				if !ok {
					t.Errorf("alert %s reads %s, which no MetricDescriptor declares", a.Name, mt[1])
					continue
				}
				if !m.After(a, d) {
					t.Errorf("alert %s does not wait for the descriptor of %s", a.Name, mt[1])
				}
			}
		}
	}
	if reads < 2 {
		t.Fatalf("%d alert conditions on the runtime's metrics; want drift and model configuration errors", reads)
	}
	var configAlert bool
	for _, a := range m.Of("gcp:monitoring/alertPolicy:AlertPolicy") {
		f := str(obj(a.Inputs["conditions"].ArrayValue()[0], "conditionThreshold", "filter"))
		if strings.Contains(f, config.MetricModelErrors.CloudType()) && strings.Contains(f, `metric.labels.kind="config"`) {
			configAlert = true
		}
	}
	if !configAlert {
		t.Error(`no alert on model errors of kind "config" (an undeployed endpoint, a missing role)`)
	}
}

// #2: the APIs the stack and the runtime use are enabled, and nothing asks an API
// for anything before it is.
func TestAPIsEnabledBeforeUse(t *testing.T) {
	for _, api := range []string{"cloudresourcemanager.googleapis.com", "cloudtrace.googleapis.com"} {
		if !slices.Contains(stack.APIs, api) {
			t.Errorf("%s is not enabled", api)
		}
	}
	m := runWith(t, project(t, "acme-defects", "acme-prod", ""), stack.Args{KMSKey: "projects/acme-prod/locations/europe-west3/keyRings/r/cryptoKeys/k"})
	if len(m.EarlyCalls) > 0 {
		t.Errorf("provider functions called before the APIs were enabled: %v", m.EarlyCalls)
	}
	apis := m.Of("gcp:projects/service:Service")
	for _, r := range m.Res {
		if r.TypeToken == "gcp:projects/service:Service" || r.TypeToken == stack.ComponentType {
			continue
		}
		for _, api := range apis {
			if !m.After(r, api) {
				t.Errorf("%s %s does not wait for %s", r.TypeToken, r.Name, str(api.Inputs["service"]))
				break
			}
		}
	}
}

// #3: the Pub/Sub service agent is made to exist (ServiceIdentity) before it is
// granted anything, and the push subscription waits for the grants it needs.
func TestPubSubAgentExistsBeforeGrantsAndSubscriptionAfter(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "")
	m := run(t, p)
	n := p.Names()
	agent := one(t, m, "gcp:projects/serviceIdentity:ServiceIdentity", func(r pulumi.MockResourceArgs) bool {
		return str(r.Inputs["service"]) == "pubsub.googleapis.com"
	})
	agentEmail := "service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"
	var grants []pulumi.MockResourceArgs
	for _, typ := range iamTypes {
		for _, g := range m.Of(typ) {
			if strings.Contains(str(g.Inputs["member"]), agentEmail) {
				grants = append(grants, g)
				if !m.After(g, agent) {
					t.Errorf("grant %s to the Pub/Sub agent does not wait for its ServiceIdentity", g.Name)
				}
			}
		}
	}
	if len(grants) < 3 {
		t.Fatalf("%d grants to the Pub/Sub agent, want at least 3", len(grants))
	}
	push := one(t, m, "gcp:pubsub/subscription:Subscription", func(r pulumi.MockResourceArgs) bool { return str(r.Inputs["name"]) == n.PushSubscription })
	for _, g := range grants {
		if str(g.Inputs["subscription"]) == n.PushSubscription {
			continue // a grant on the subscription itself comes after it
		}
		if !m.After(push, g) {
			t.Errorf("the push subscription does not wait for %s", g.Name)
		}
	}
	invoker := one(t, m, "gcp:cloudrunv2/serviceIamMember:ServiceIamMember", func(r pulumi.MockResourceArgs) bool {
		return str(r.Inputs["role"]) == "roles/run.invoker"
	})
	if !m.After(push, invoker) {
		t.Error("the push subscription does not wait for the invoker's run.invoker grant")
	}
}

// #4: with CMEK, the Cloud Storage agent may use the key before a bucket needs it.
func TestCMEKGrantBeforeBuckets(t *testing.T) {
	key := "projects/acme-prod/locations/europe-west3/keyRings/r/cryptoKeys/k"
	m := runWith(t, project(t, "acme-defects", "acme-prod", ""), stack.Args{KMSKey: key})
	grant := one(t, m, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember", func(r pulumi.MockResourceArgs) bool {
		return str(r.Inputs["cryptoKeyId"]) == key && str(r.Inputs["role"]) == "roles/cloudkms.cryptoKeyEncrypterDecrypter" &&
			strings.Contains(str(r.Inputs["member"]), "@gs-project-accounts.iam.gserviceaccount.com")
	})
	for _, b := range m.Of("gcp:storage/bucket:Bucket") {
		if !m.After(b, grant) {
			t.Errorf("bucket %s does not wait for the Cloud Storage agent's grant on the key", b.Name)
		}
	}
	if len(runWith(t, project(t, "acme-defects", "acme-prod", ""), stack.Args{}).Of("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")) != 0 {
		t.Error("a key grant without CMEK")
	}
}

// #5: two runs of the program register identical inputs (no diff on every preview).
func TestProgramIsDeterministic(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "")
	inputs := func() map[string]string {
		out := map[string]string{}
		for _, r := range run(t, p).Res {
			out[r.TypeToken+"::"+r.Name] = fmt.Sprint(r.Inputs.Mappable())
		}
		return out
	}
	a := inputs()
	for range 5 {
		b := inputs()
		if !reflect.DeepEqual(a, b) {
			for k := range a {
				if a[k] != b[k] {
					t.Fatalf("%s differs between two runs:\n%s\n%s", k, a[k], b[k])
				}
			}
			t.Fatal("the runs registered different resources")
		}
	}
}

// evalCondition evaluates the IAM condition forms the stack writes:
// resource.name == "X" and resource.name.startsWith("X"), joined by ||.
func evalCondition(t *testing.T, expr, name string) bool {
	t.Helper()
	eq := regexp.MustCompile(`^resource\.name == "([^"]*)"$`)
	sw := regexp.MustCompile(`^resource\.name\.startsWith\("([^"]*)"\)$`)
	for _, part := range strings.Split(expr, "||") {
		part = strings.TrimSpace(part)
		switch {
		case eq.MatchString(part):
			if name == eq.FindStringSubmatch(part)[1] {
				return true
			}
		case sw.MatchString(part):
			if strings.HasPrefix(name, sw.FindStringSubmatch(part)[1]) {
				return true
			}
		default:
			t.Fatalf("condition part %q is not a form this test evaluates", part)
		}
	}
	return false
}

// #6a: the Firestore grant matches this stack's database and its documents, not a
// database whose name starts the same (another project's "acme-meta-meta").
func TestFirestoreConditionIsExact(t *testing.T) {
	p := project(t, "acme", "acme-prod", "")
	m := run(t, p)
	g := one(t, m, "gcp:projects/iAMMember:IAMMember", func(r pulumi.MockResourceArgs) bool { return str(r.Inputs["role"]) == "roles/datastore.user" })
	expr := str(obj(g.Inputs["condition"], "expression"))
	db := "projects/acme-prod/databases/" + p.Names().Database
	for name, want := range map[string]bool{
		db: true, db + "/documents/jobs/x": true,
		db + "-meta": false, db + "-meta/documents/jobs/x": false, "projects/acme-prod/databases/(default)": false,
	} {
		if got := evalCondition(t, expr, name); got != want {
			t.Errorf("condition %q on %s: %v, want %v", expr, name, got, want)
		}
	}
}

// #6b: predicting is granted on the stack's endpoint, not on every endpoint of the
// project, and as a role that predicts and does nothing else; objects are written
// with objectUser, not objectAdmin (no IAM changes).
func TestGrantsAreNarrow(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	for _, g := range m.Of("gcp:projects/iAMMember:IAMMember") {
		if strings.HasPrefix(str(g.Inputs["role"]), "roles/aiplatform.") {
			t.Errorf("project-wide %s: grant it on the endpoint", str(g.Inputs["role"]))
		}
	}
	ep := one(t, m, "gcp:vertex/aiEndpointIamMember:AiEndpointIamMember", func(r pulumi.MockResourceArgs) bool {
		return str(r.Inputs["role"]) == "projects/acme-prod/roles/"+stack.PredictRoleID("acme-defects") && strings.HasPrefix(str(r.Inputs["member"]), "serviceAccount:acme-defects-pipeline@")
	})
	endpoint := m.Of("gcp:vertex/aiEndpoint:AiEndpoint")[0]
	if !m.After(ep, endpoint) {
		t.Error("the endpoint grant does not name the stack's endpoint")
	}
	for _, g := range m.Of("gcp:storage/bucketIAMMember:BucketIAMMember") {
		if str(g.Inputs["role"]) == "roles/storage.objectAdmin" || str(g.Inputs["role"]) == "roles/storage.admin" {
			t.Errorf("bucket grant %s is %s: objectUser suffices", g.Name, str(g.Inputs["role"]))
		}
	}
}

// #7: a numeric endpoint id has at most 9 digits and no leading zero.
func TestEndpointIDIsLegal(t *testing.T) {
	for _, c := range [][2]string{{"acme-prod", "acme-defects"}, {"p", "a"}, {strings.Repeat("g", 30), strings.Repeat("n", 20)}} {
		id := stack.EndpointID(c[0], c[1])
		if !regexp.MustCompile(`^[1-9][0-9]{0,8}$`).MatchString(id) {
			t.Errorf("EndpointID(%q, %q) = %s: Vertex allows 1-9 digits, no leading zero", c[0], c[1], id)
		}
	}
}

// #8: a lifecycle rule without an age says so (noAge); otherwise the provider sends
// age 0, and "older than 0 days" deletes every object.
func TestLifecycleRulesHaveAnAgeOrNoAge(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	n := 0
	for _, b := range m.Of("gcp:storage/bucket:Bucket") {
		if !b.Inputs["lifecycleRules"].IsArray() {
			continue
		}
		for _, r := range b.Inputs["lifecycleRules"].ArrayValue() {
			n++
			c := obj(r, "condition")
			age, noAge := obj(c, "age"), obj(c, "noAge")
			if !(age.IsNumber() && age.NumberValue() > 0) && !(noAge.IsBool() && noAge.BoolValue()) {
				t.Errorf("bucket %s: lifecycle rule %v has neither an age nor noAge", b.Name, c)
			}
		}
	}
	if n == 0 {
		t.Fatal("no lifecycle rules")
	}
}

// #10: delete protection is a setting: on by default, off lets destroy delete the
// database.
func TestDeleteProtectionIsASetting(t *testing.T) {
	state := func(p *config.Project) string {
		return str(run(t, p).Of("gcp:firestore/database:Database")[0].Inputs["deleteProtectionState"])
	}
	p := project(t, "acme-defects", "acme-prod", "")
	if got := state(p); got != "DELETE_PROTECTION_ENABLED" {
		t.Errorf("default: %q", got)
	}
	off := false
	p.GCP.DeleteProtection = &off
	if got := state(p); got != "DELETE_PROTECTION_DISABLED" {
		t.Errorf("deleteProtection: false: %q", got)
	}
}
