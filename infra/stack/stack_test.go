package stack_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/infra/stack"
	"github.com/visionstack/visionstack/infra/stack/stacktest"
	"github.com/visionstack/visionstack/runtime/config"
)

const demo = `apiVersion: visionstack/v1
kind: Project
name: %s
gcp: {project: %s, region: europe-west3}
pipeline:
  analyses:
    - {name: faces, model: "builtin:faces", mode: sync}
  transforms:
    - blur: {analysis: faces}
  actions: [{store: {}}, {record: {}}, {publish: {}}]
monitoring:
  alertEmails: [ops@acme.example]
  drift: {analysis: faces}
%s`

func project(t *testing.T, name, gcp, extra string) *config.Project {
	t.Helper()
	p, err := config.Load("test.yaml", []byte(fmt.Sprintf(demo, name, gcp, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run builds the component with mocks and returns what it registered.
func run(t *testing.T, p *config.Project) *stacktest.Mocks {
	t.Helper()
	m := &stacktest.Mocks{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		_, err := stack.NewProject(ctx, p, stack.Args{Image: "europe-west3-docker.pkg.dev/acme-prod/x/visionstack@sha256:abc"})
		return err
	}, pulumi.WithMocks("visionstack", p.Name, m))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func str(v resource.PropertyValue) string {
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}

func obj(v resource.PropertyValue, path ...string) resource.PropertyValue {
	for _, k := range path {
		if !v.IsObject() {
			return resource.PropertyValue{}
		}
		v = v.ObjectValue()[resource.PropertyKey(k)]
	}
	return v
}

func TestBucketsArePrivateWithUniformAccess(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	buckets := m.Of("gcp:storage/bucket:Bucket")
	if len(buckets) != 4 { // incoming, processed, quarantine, models
		t.Fatalf("%d buckets, want 4", len(buckets))
	}
	for _, b := range buckets {
		in := b.Inputs
		if !in["uniformBucketLevelAccess"].BoolValue() || str(in["publicAccessPrevention"]) != "enforced" {
			t.Errorf("bucket %s: uniform %v, public access prevention %q", b.Name, in["uniformBucketLevelAccess"], str(in["publicAccessPrevention"]))
		}
		versioned := obj(in["versioning"], "enabled")
		wantVersions := strings.HasSuffix(b.Name, "-processed") || strings.HasSuffix(b.Name, "-models")
		if wantVersions != (versioned.IsBool() && versioned.BoolValue()) {
			t.Errorf("bucket %s: versioning %v (only processed and models are versioned)", b.Name, versioned)
		}
		if strings.HasSuffix(b.Name, "-incoming") && (!in["lifecycleRules"].IsArray() || len(in["lifecycleRules"].ArrayValue()) == 0) {
			t.Errorf("bucket %s has no lifecycle", b.Name)
		}
	}
	for _, g := range m.Of("gcp:storage/bucketIAMMember:BucketIAMMember") {
		if mem := str(g.Inputs["member"]); mem == "allUsers" || mem == "allAuthenticatedUsers" {
			t.Errorf("bucket grant %s to %s", g.Name, mem)
		}
	}
}

func TestDeadLetterWiredWithGrants(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "delivery: {maxAttempts: 7}\n")
	m := run(t, p)
	n := p.Names()
	var push pulumi.MockResourceArgs
	for _, s := range m.Of("gcp:pubsub/subscription:Subscription") {
		if s.Name == n.PushSubscription {
			push = s
		}
	}
	dl := obj(push.Inputs["deadLetterPolicy"])
	if str(obj(dl, "deadLetterTopic")) != n.DeadLetterTopic+"-id" || obj(dl, "maxDeliveryAttempts").NumberValue() != 7 {
		t.Fatalf("dead-letter policy %v", dl)
	}
	if obj(push.Inputs["retryPolicy"], "minimumBackoff").StringValue() != "10s" {
		t.Errorf("retry policy %v", push.Inputs["retryPolicy"])
	}
	agent := "serviceAccount:service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"
	var publishes, subscribes bool
	for _, g := range m.Of("gcp:pubsub/topicIAMMember:TopicIAMMember") {
		if str(g.Inputs["member"]) == agent && str(g.Inputs["topic"]) == n.DeadLetterTopic && str(g.Inputs["role"]) == "roles/pubsub.publisher" {
			publishes = true
		}
	}
	for _, g := range m.Of("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember") {
		if str(g.Inputs["member"]) == agent && str(g.Inputs["subscription"]) == n.PushSubscription && str(g.Inputs["role"]) == "roles/pubsub.subscriber" {
			subscribes = true
		}
	}
	sweeps := false
	for _, g := range m.Of("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember") {
		if strings.HasPrefix(str(g.Inputs["member"]), "serviceAccount:"+n.PipelineSA+"@") && str(g.Inputs["subscription"]) == n.DeadLetterSub && str(g.Inputs["role"]) == "roles/pubsub.subscriber" {
			sweeps = true
		}
	}
	if !sweeps {
		t.Error("the pipeline's service account cannot sweep the dead-letter subscription (the reconciler needs roles/pubsub.subscriber there)")
	}
	if !publishes || !subscribes {
		t.Fatalf("Pub/Sub service agent grants: publisher on dead letter %v, subscriber on push %v", publishes, subscribes)
	}
	if len(m.Of("gcp:storage/notification:Notification")) != 1 {
		t.Error("no storage notification")
	}
}

func TestPushUsesOIDCWithInvoker(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "")
	m := run(t, p)
	n := p.Names()
	invoker := n.InvokerSA + "@acme-prod.iam.gserviceaccount.com"
	for _, s := range m.Of("gcp:pubsub/subscription:Subscription") {
		if s.Name != n.PushSubscription {
			continue
		}
		tok := obj(s.Inputs["pushConfig"], "oidcToken")
		if str(obj(tok, "serviceAccountEmail")) != invoker || str(obj(tok, "audience")) != stack.PushAudience(p.Name) {
			t.Fatalf("push OIDC %v", tok)
		}
		if ep := str(obj(s.Inputs["pushConfig"], "pushEndpoint")); !strings.HasSuffix(ep, "/v1/pubsub/push") || !strings.HasPrefix(ep, "https://") {
			t.Errorf("push endpoint %q", ep)
		}
	}
	var invokes bool
	for _, g := range m.Of("gcp:cloudrunv2/serviceIamMember:ServiceIamMember") {
		if str(g.Inputs["member"]) == "serviceAccount:"+invoker && str(g.Inputs["role"]) == "roles/run.invoker" {
			invokes = true
		}
	}
	if !invokes {
		t.Fatal("the invoker account cannot invoke the service")
	}
}

var iamTypes = []string{"gcp:projects/iAMMember:IAMMember", "gcp:storage/bucketIAMMember:BucketIAMMember",
	"gcp:pubsub/topicIAMMember:TopicIAMMember", "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
	"gcp:serviceaccount/iAMMember:IAMMember", "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"}

func TestNoPrimitiveRoles(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	n := 0
	for _, typ := range iamTypes {
		for _, g := range m.Of(typ) {
			n++
			switch role := str(g.Inputs["role"]); role {
			case "roles/owner", "roles/editor", "roles/viewer", "":
				t.Errorf("%s %s grants %q", typ, g.Name, role)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d grants found: did the IAM types change?", n)
	}
	// Firestore has no per-database IAM: the project grant must be conditioned on the database.
	for _, g := range m.Of("gcp:projects/iAMMember:IAMMember") {
		if str(g.Inputs["role"]) == "roles/datastore.user" && !strings.Contains(str(obj(g.Inputs["condition"], "expression")), "/databases/acme-defects-meta") {
			t.Errorf("datastore.user not limited to the project's database: %v", g.Inputs["condition"])
		}
	}
}

func TestRunNotPublicByDefault(t *testing.T) {
	public := func(m *stacktest.Mocks) bool {
		for _, g := range m.Of("gcp:cloudrunv2/serviceIamMember:ServiceIamMember") {
			if str(g.Inputs["member"]) == "allUsers" {
				return true
			}
		}
		return false
	}
	if public(run(t, project(t, "acme-defects", "acme-prod", ""))) {
		t.Fatal("Cloud Run is public by default")
	}
	if !public(run(t, project(t, "acme-defects", "acme-prod", "serving: {public: true}\n"))) {
		t.Fatal("serving.public: true did not open the service")
	}
}

func TestNamesLegalForLongestName(t *testing.T) {
	name := "a" + strings.Repeat("b", config.MaxNameLen-2) + "c"
	gcp := "g" + strings.Repeat("h", 28) + "i"
	m := run(t, project(t, name, gcp, ""))
	limits := map[string]struct {
		field string
		max   int
	}{
		"gcp:storage/bucket:Bucket":                  {"name", 63},
		"gcp:serviceaccount/account:Account":         {"accountId", 30},
		"gcp:cloudrunv2/service:Service":             {"name", 49},
		"gcp:pubsub/topic:Topic":                     {"name", 255},
		"gcp:pubsub/subscription:Subscription":       {"name", 255},
		"gcp:firestore/database:Database":            {"name", 63},
		"gcp:artifactregistry/repository:Repository": {"repositoryId", 63},
		"gcp:vertex/aiEndpoint:AiEndpoint":           {"name", 9},
	}
	for typ, l := range limits {
		rs := m.Of(typ)
		if len(rs) == 0 {
			t.Errorf("no %s", typ)
		}
		for _, r := range rs {
			v := str(r.Inputs[resource.PropertyKey(l.field)])
			if v == "" || len(v) > l.max {
				t.Errorf("%s %s=%q: %d characters, limit %d", typ, l.field, v, len(v), l.max)
			}
		}
	}
}

func TestTwoProjectsHaveDisjointNames(t *testing.T) {
	a := run(t, project(t, "acme-defects", "acme-prod", ""))
	b := run(t, project(t, "acme-faces", "acme-prod", ""))
	seen := map[string]bool{}
	for _, r := range a.Res {
		seen[r.TypeToken+"/"+r.Name] = true
		for _, f := range []string{"name", "accountId", "repositoryId"} {
			if v := str(r.Inputs[resource.PropertyKey(f)]); v != "" {
				seen[r.TypeToken+"#"+f+"="+v] = true
			}
		}
	}
	for _, r := range b.Res {
		if r.TypeToken == "gcp:projects/service:Service" {
			continue // APIs are shared by the GCP project; their names are per stack anyway
		}
		if seen[r.TypeToken+"/"+r.Name] {
			t.Errorf("both projects create %s %s", r.TypeToken, r.Name)
		}
		for _, f := range []string{"name", "accountId", "repositoryId"} {
			if v := str(r.Inputs[resource.PropertyKey(f)]); v != "" && seen[r.TypeToken+"#"+f+"="+v] && !strings.HasPrefix(v, "projects/") {
				t.Errorf("both projects use %s %s=%s", r.TypeToken, f, v)
			}
		}
	}
}

func TestResourceCountAndTypes(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	count := map[string]int{}
	for _, r := range m.Res {
		count[r.TypeToken]++
	}
	want := map[string]int{
		stack.ComponentType:                                      1,
		"gcp:projects/service:Service":                           len(stack.APIs),
		"gcp:serviceaccount/account:Account":                     2,
		"gcp:storage/bucket:Bucket":                              4, // incoming, processed, quarantine, models
		"gcp:storage/notification:Notification":                  1,
		"gcp:pubsub/topic:Topic":                                 3,
		"gcp:pubsub/subscription:Subscription":                   2,
		"gcp:cloudrunv2/service:Service":                         1,
		"gcp:vertex/aiEndpoint:AiEndpoint":                       1,
		"gcp:firestore/database:Database":                        1,
		"gcp:firestore/index:Index":                              len(config.FirestoreIndexes),
		"gcp:artifactregistry/repository:Repository":             1,
		"gcp:monitoring/notificationChannel:NotificationChannel": 1,
		"gcp:monitoring/alertPolicy:AlertPolicy":                 6, // 5xx, latency, backlog, dead letters, model config errors, drift
		"gcp:monitoring/metricDescriptor:MetricDescriptor":       2, // the runtime metrics alerts read: model errors, drift PSI
		"gcp:projects/serviceIdentity:ServiceIdentity":           1, // the Pub/Sub agent
		"gcp:vertex/aiEndpointIamMember:AiEndpointIamMember":     1,
		"gcp:monitoring/dashboard:Dashboard":                     1,
		"gcp:storage/bucketIAMMember:BucketIAMMember":            5,
		"gcp:pubsub/topicIAMMember:TopicIAMMember":               4,
		"gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": 2,
		"gcp:projects/iAMMember:IAMMember":                       3,
		"gcp:projects/iAMCustomRole:IAMCustomRole":               1, // predict only
		"gcp:serviceaccount/iAMMember:IAMMember":                 1,
		"gcp:cloudrunv2/serviceIamMember:ServiceIamMember":       1,
	}
	for typ, n := range want {
		if count[typ] != n {
			t.Errorf("%s: %d, want %d", typ, count[typ], n)
		}
	}
	for typ, n := range count {
		if _, ok := want[typ]; !ok {
			t.Errorf("unexpected %d × %s", n, typ)
		}
	}
}

// The dashboard charts every metric the runtime writes, and the drift alert reads
// the runtime's drift metric for the configured analysis, under the names the
// runtime's exporter gives them (config.Metrics: one list, no name typed twice).
func TestMonitoringReadsTheRuntimeMetrics(t *testing.T) {
	m := run(t, project(t, "acme-defects", "acme-prod", ""))
	dash := m.Of("gcp:monitoring/dashboard:Dashboard")
	if len(dash) != 1 {
		t.Fatalf("%d dashboards", len(dash))
	}
	js := str(dash[0].Inputs["dashboardJson"])
	for _, metric := range config.Metrics {
		want := `metric.type=\"` + metric.CloudType() + `\" AND metric.labels.project=\"acme-defects\"`
		if !strings.Contains(js, want) {
			t.Errorf("dashboard has no chart of %s (%s)", metric.Name, metric.CloudType())
		}
	}
	var drift string
	for _, p := range m.Of("gcp:monitoring/alertPolicy:AlertPolicy") {
		for _, c := range p.Inputs["conditions"].ArrayValue() {
			if f := str(obj(c, "conditionThreshold", "filter")); strings.Contains(f, config.MetricDriftPSI.CloudType()) {
				drift = f
				if th := obj(c, "conditionThreshold", "thresholdValue"); !th.IsNumber() || th.NumberValue() != config.DefaultDriftThreshold {
					t.Errorf("drift alert threshold %v, want the configured %v", th, config.DefaultDriftThreshold)
				}
			}
		}
	}
	if !strings.Contains(drift, `metric.labels.analysis="faces"`) || !strings.Contains(drift, `metric.labels.project="acme-defects"`) {
		t.Fatalf("no drift alert on the runtime's metric for analysis faces: %q", drift)
	}
}

// Several watched analyses: one drift alert each, on its own series.
func TestDriftAlertPerAnalysis(t *testing.T) {
	p := project(t, "acme-defects", "acme-prod", "")
	p.Pipeline.Analyses = append(p.Pipeline.Analyses, config.Analysis{Name: "defects", Model: "vertex:endpoint", Mode: "async"})
	p.Monitoring.Drift.Analysis, p.Monitoring.Drift.Analyses = "", []string{"faces", "defects"}
	p.ApplyDefaults()
	if probs := p.Validate(); len(probs) > 0 {
		t.Fatal(probs)
	}
	m := run(t, p)
	found := map[string]bool{}
	for _, pol := range m.Of("gcp:monitoring/alertPolicy:AlertPolicy") {
		for _, c := range pol.Inputs["conditions"].ArrayValue() {
			f := str(obj(c, "conditionThreshold", "filter"))
			for _, a := range []string{"faces", "defects"} {
				if strings.Contains(f, config.MetricDriftPSI.CloudType()) && strings.Contains(f, `metric.labels.analysis="`+a+`"`) {
					found[a] = true
				}
			}
		}
	}
	if !found["faces"] || !found["defects"] {
		t.Fatalf("drift alerts for %v, want faces and defects", found)
	}
}
