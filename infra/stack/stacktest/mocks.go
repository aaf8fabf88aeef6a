// Package stacktest has the Pulumi mocks the infra tests share.
package stacktest

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Mocks records every resource the program registers and answers the provider
// functions the stack calls, for pulumi.WithMocks.
type Mocks struct {
	mu  sync.Mutex
	Res []pulumi.MockResourceArgs
	// EarlyCalls lists provider functions invoked while an API the stack enables
	// was not enabled yet: on a fresh project they fail.
	EarlyCalls []string
	enabling   int // API services registered and not yet "enabled"
	// Deployed are the outputs of the stack's last deployment, which a stack
	// reference to itself reads (none: never deployed).
	Deployed map[string]string
}

// apiDelay is how long enabling an API takes in the mocks: long enough that a call
// that does not wait for it runs first.
const apiDelay = 50 * time.Millisecond

// NewResource records a resource and returns its inputs as outputs, plus the
// computed outputs the stack reads (account e-mails, service URLs).
func (m *Mocks) NewResource(a pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.Res = append(m.Res, a)
	api := a.TypeToken == "gcp:projects/service:Service"
	if api {
		m.enabling++
	}
	m.mu.Unlock()
	if api {
		time.Sleep(apiDelay)
		m.mu.Lock()
		m.enabling--
		m.mu.Unlock()
	}
	out := a.Inputs.Copy()
	switch a.TypeToken {
	case "gcp:serviceaccount/account:Account":
		out["email"] = resource.NewStringProperty(fmt.Sprintf("%s@%s.iam.gserviceaccount.com", a.Inputs["accountId"].StringValue(), a.Inputs["project"].StringValue()))
		out["name"] = resource.NewStringProperty("projects/p/serviceAccounts/" + a.Inputs["accountId"].StringValue())
	case "gcp:cloudrunv2/service:Service":
		out["uri"] = resource.NewStringProperty("https://" + a.Inputs["name"].StringValue() + "-abc-ew.a.run.app")
	case "gcp:storage/bucketObject:BucketObject":
		out["generation"] = resource.NewNumberProperty(1733300000000001)
		out["source"] = resource.NewStringProperty("asset") // assets are not plain values in the outputs
	case "gcp:projects/iAMCustomRole:IAMCustomRole":
		out["name"] = resource.NewStringProperty(fmt.Sprintf("projects/%s/roles/%s", a.Inputs["project"].StringValue(), a.Inputs["roleId"].StringValue()))
	case "pulumi:pulumi:StackReference":
		outs := resource.PropertyMap{}
		for k, v := range m.Deployed {
			outs[resource.PropertyKey(k)] = resource.NewStringProperty(v)
		}
		out["outputs"] = resource.NewObjectProperty(outs)
	case "gcp:projects/serviceIdentity:ServiceIdentity":
		agent := map[string]string{"pubsub.googleapis.com": "gcp-sa-pubsub"}[a.Inputs["service"].StringValue()]
		email := fmt.Sprintf("service-123456789@%s.iam.gserviceaccount.com", agent)
		out["email"] = resource.NewStringProperty(email)
		out["member"] = resource.NewStringProperty("serviceAccount:" + email)
	}
	return a.Name + "-id", out, nil
}

// Call answers the provider functions the stack invokes.
func (m *Mocks) Call(a pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	if m.enabling > 0 {
		m.EarlyCalls = append(m.EarlyCalls, a.Token)
	}
	m.mu.Unlock()
	switch a.Token {
	case "gcp:organizations/getProject:getProject":
		return resource.PropertyMap{"number": resource.NewStringProperty("123456789"), "projectId": a.Args["projectId"]}, nil
	case "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
		return resource.PropertyMap{"emailAddress": resource.NewStringProperty("service-123456789@gs-project-accounts.iam.gserviceaccount.com")}, nil
	}
	return nil, fmt.Errorf("unmocked call %s", a.Token)
}

// Of returns the recorded resources of one type.
func (m *Mocks) Of(typ string) []pulumi.MockResourceArgs {
	var out []pulumi.MockResourceArgs
	for _, r := range m.Res {
		if r.TypeToken == typ {
			out = append(out, r)
		}
	}
	return out
}

// key names a resource in dependency lists: its type and name.
func key(typ, name string) string { return typ + "::" + name }

// urnKey turns a dependency URN (urn:pulumi:STACK::PROJECT::PARENT$TYPE::NAME) into a key.
func urnKey(urn string) string {
	i := strings.LastIndex(urn, "::")
	if i < 0 {
		return urn
	}
	typ, name := urn[:i], urn[i+2:]
	if j := strings.LastIndex(typ, "$"); j >= 0 {
		typ = typ[j+1:]
	} else if j := strings.LastIndex(typ, "::"); j >= 0 {
		typ = typ[j+2:]
	}
	return key(typ, name)
}

// Deps returns the direct dependencies of r (explicit DependsOn and the resources
// its inputs come from), as keys.
func Deps(r pulumi.MockResourceArgs) []string {
	if r.RegisterRPC == nil {
		return nil
	}
	var out []string
	for _, d := range r.RegisterRPC.GetDependencies() {
		out = append(out, urnKey(d))
	}
	for _, pd := range r.RegisterRPC.GetPropertyDependencies() {
		for _, d := range pd.GetUrns() {
			out = append(out, urnKey(d))
		}
	}
	return out
}

// After reports whether a waits for b, directly or through other resources.
func (m *Mocks) After(a, b pulumi.MockResourceArgs) bool {
	byKey := map[string]pulumi.MockResourceArgs{}
	for _, r := range m.Res {
		byKey[key(r.TypeToken, r.Name)] = r
	}
	target := key(b.TypeToken, b.Name)
	seen := map[string]bool{}
	var walk func(r pulumi.MockResourceArgs) bool
	walk = func(r pulumi.MockResourceArgs) bool {
		for _, d := range Deps(r) {
			if d == target {
				return true
			}
			if seen[d] {
				continue
			}
			seen[d] = true
			if next, ok := byKey[d]; ok && walk(next) {
				return true
			}
		}
		return false
	}
	return walk(a)
}
