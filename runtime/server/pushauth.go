package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/api/idtoken"
)

// TokenValidator checks a Google-signed ID token; *idtoken.Validator is one.
type TokenValidator interface {
	Validate(ctx context.Context, token, audience string) (*idtoken.Payload, error)
}

// SignatureRemoved is what Cloud Run puts in place of an ID token's signature after
// it has checked the token itself, on a service that requires authentication
// (https://cloud.google.com/run/docs/authenticating/service-to-service: the container
// sees header.claims.SIGNATURE_REMOVED_BY_GOOGLE).
const SignatureRemoved = "SIGNATURE_REMOVED_BY_GOOGLE"

// PushAuth verifies the OIDC token Pub/Sub attaches to push requests: signed by
// Google, for Audience, issued to ServiceAccount (the push invoker).
//
// Behind Cloud Run's authentication (a private service) the token arrives without its
// signature: Cloud Run has checked it and removed it. Such a token is accepted only
// when CheckedByFront says so, and its claims are still checked; anywhere else a token
// must carry a valid signature, so a stripped token someone forges is worth nothing.
type PushAuth struct {
	Validator      TokenValidator
	Audience       string // the push subscription's audience (default: its push endpoint URL)
	ServiceAccount string // e-mail of the subscription's push service account
	// CheckedByFront: the service runs on Cloud Run and requires authentication, so
	// every request has passed Cloud Run's own token check (serve sets it from
	// K_SERVICE and serving.public: false).
	CheckedByFront bool
	Now            func() time.Time // for tests; time.Now by default
}

var googleIssuers = map[string]bool{"accounts.google.com": true, "https://accounts.google.com": true}

// bearer is the request's token: Cloud Run takes X-Serverless-Authorization before
// Authorization when both are there (same document), and so does this check.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("X-Serverless-Authorization")
	if h == "" {
		h = r.Header.Get("Authorization")
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return tok, ok && tok != ""
}

// check returns nil when the request carries a valid token.
func (a *PushAuth) check(r *http.Request) error {
	tok, ok := bearer(r)
	if !ok {
		return fmt.Errorf("no bearer token: the push subscription must use OIDC authentication")
	}
	var p *idtoken.Payload
	if strings.HasSuffix(tok, "."+SignatureRemoved) {
		if !a.CheckedByFront {
			return fmt.Errorf("token without its signature: accepted only on Cloud Run behind its authentication (a private service), where Cloud Run has checked it")
		}
		var err error
		if p, err = idtoken.ParsePayload(tok); err != nil {
			return fmt.Errorf("token rejected: %w", err)
		}
		// Cloud Run checked the signature and that the caller may invoke the service;
		// which audience, account and lifetime this endpoint wants is ours to check.
		now := time.Now
		if a.Now != nil {
			now = a.Now
		}
		if p.Audience != a.Audience {
			return fmt.Errorf("token for audience %q, want %q", p.Audience, a.Audience)
		}
		if exp := time.Unix(p.Expires, 0); !now().Before(exp.Add(time.Minute)) { // idtoken's own clock skew
			return fmt.Errorf("token expired at %s", exp.UTC().Format(time.RFC3339))
		}
	} else {
		var err error
		if p, err = a.Validator.Validate(r.Context(), tok, a.Audience); err != nil {
			return fmt.Errorf("token rejected: %w", err)
		}
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
