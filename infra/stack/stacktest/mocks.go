// Package stacktest has the Pulumi mocks the infra tests share.
package stacktest

import (
	"fmt"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Mocks records every resource the program registers and answers the provider
// functions the stack calls, for pulumi.WithMocks.
type Mocks struct {
	mu  sync.Mutex
	Res []pulumi.MockResourceArgs
}

// NewResource records a resource and returns its inputs as outputs, plus the
// computed outputs the stack reads (account e-mails, service URLs).
func (m *Mocks) NewResource(a pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.Res = append(m.Res, a)
	m.mu.Unlock()
	out := a.Inputs.Copy()
	switch a.TypeToken {
	case "gcp:serviceaccount/account:Account":
		out["email"] = resource.NewStringProperty(fmt.Sprintf("%s@%s.iam.gserviceaccount.com", a.Inputs["accountId"].StringValue(), a.Inputs["project"].StringValue()))
		out["name"] = resource.NewStringProperty("projects/p/serviceAccounts/" + a.Inputs["accountId"].StringValue())
	case "gcp:cloudrunv2/service:Service":
		out["uri"] = resource.NewStringProperty("https://" + a.Inputs["name"].StringValue() + "-abc-ew.a.run.app")
	}
	return a.Name + "-id", out, nil
}

// Call answers the provider functions the stack invokes.
func (m *Mocks) Call(a pulumi.MockCallArgs) (resource.PropertyMap, error) {
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
