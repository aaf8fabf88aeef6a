package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/api/idtoken"
)

// TokenValidator checks a Google-signed ID token; *idtoken.Validator is one.
type TokenValidator interface {
	Validate(ctx context.Context, token, audience string) (*idtoken.Payload, error)
}

// PushAuth verifies the OIDC token Pub/Sub attaches to push requests: signed by
// Google, for Audience, issued to ServiceAccount (the push invoker). Cloud Run can
// check the token too; this keeps the endpoint safe wherever it runs.
type PushAuth struct {
	Validator      TokenValidator
	Audience       string // the push subscription's audience (default: its push endpoint URL)
	ServiceAccount string // e-mail of the subscription's push service account
}

var googleIssuers = map[string]bool{"accounts.google.com": true, "https://accounts.google.com": true}

// check returns nil when the request carries a valid token.
func (a *PushAuth) check(r *http.Request) error {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return fmt.Errorf("no bearer token: the push subscription must use OIDC authentication")
	}
	p, err := a.Validator.Validate(r.Context(), tok, a.Audience)
	if err != nil {
		return fmt.Errorf("token rejected: %w", err)
	}
	if !googleIssuers[p.Issuer] {
		return fmt.Errorf("token issuer %q is not Google", p.Issuer)
	}
	email, _ := p.Claims["email"].(string)
	verified, _ := p.Claims["email_verified"].(bool)
	if email != a.ServiceAccount || !verified {
		return fmt.Errorf("token for %q (verified %v), want %q", email, verified, a.ServiceAccount)
	}
	return nil
}
