package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/visionstack/visionstack/internal/cloudrun"
	"github.com/visionstack/visionstack/runtime/server"
)

// certsTransport answers Google's certificate URL with our own key, so the real
// idtoken validator checks tokens we sign.
type certsTransport struct{ jwks []byte }

func (c certsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(c.jwks)), Request: r}, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func sign(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	signing := b64(h) + "." + b64(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64(sig)
}

func TestPushOIDCVerification(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kid": "k1", "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	v, err := idtoken.NewValidator(context.Background(), option.WithHTTPClient(&http.Client{Transport: certsTransport{jwks}}))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, 0)
	const aud, sa = "https://demo-pipeline.run.app/v1/pubsub/push", "demo-invoker@p.iam.gserviceaccount.com"
	srv := server.New(server.Options{Pipeline: nil, Incoming: f.env.Incoming, Publisher: f.env.Queue,
		PushAuth: &server.PushAuth{Validator: v, Audience: aud, ServiceAccount: sa}})
	hs := httptest.NewServer(srv)
	defer hs.Close()

	now := time.Now().Unix()
	good := map[string]any{"iss": "https://accounts.google.com", "aud": aud, "email": sa, "email_verified": true, "iat": now, "exp": now + 3600, "sub": "1"}
	with := func(k string, val any) map[string]any {
		c := map[string]any{}
		for kk, vv := range good {
			c[kk] = vv
		}
		c[k] = val
		return c
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	cases := []struct {
		name  string
		token string
		code  int
	}{
		{"no token", "", 401},
		{"wrong audience", sign(t, key, with("aud", "https://elsewhere")), 401},
		{"wrong account", sign(t, key, with("email", "someone@p.iam.gserviceaccount.com")), 401},
		{"not Google", sign(t, key, with("iss", "https://evil.example")), 401},
		{"expired", sign(t, key, with("exp", now-60)), 401},
		{"signed by another key", sign(t, other, good), 401},
		// A valid token passes authentication; this empty envelope then fails as a message.
		{"valid", sign(t, key, good), 400},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("POST", hs.URL+"/v1/pubsub/push", bytes.NewReader([]byte(`{"message":{}}`)))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.code)
		}
	}
}

// TestPushBehindCloudRunsFront: on Cloud Run, a private service gets push tokens with
// their signature removed (Cloud Run checked it). serve accepts them there, still
// checking their claims, and nowhere else.
func TestPushBehindCloudRunsFront(t *testing.T) {
	const aud, sa = "visionstack-demo-push", "demo-invoker@p.iam.gserviceaccount.com"
	f := newFixture(t, 0)
	auth := &server.PushAuth{Validator: refuseAll{}, Audience: aud, ServiceAccount: sa, CheckedByFront: true}
	hs := httptest.NewServer(server.New(server.Options{Incoming: f.env.Incoming, Publisher: f.env.Queue, PushAuth: auth}))
	defer hs.Close()
	addr := strings.TrimPrefix(hs.URL, "http://")
	front, err := cloudrun.Start(cloudrun.Options{Backend: addr, Invokers: []string{sa, "other@p.iam.gserviceaccount.com"}, Audiences: []string{aud}})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	now := time.Now().Unix()
	good := map[string]any{"iss": "https://accounts.google.com", "aud": aud, "email": sa, "email_verified": true, "iat": now, "exp": now + 3600, "sub": "1"}
	with := func(k string, val any) map[string]any {
		c := maps.Clone(good)
		c[k] = val
		return c
	}
	push := func(url string, header, token string) int {
		req, _ := http.NewRequest("POST", url+"/v1/pubsub/push", strings.NewReader(`{"message":{}}`))
		req.Header.Set(header, "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Through the front: a valid token gets past authentication (the empty envelope
	// is then refused as a message, 400).
	for _, c := range []struct {
		name   string
		header string
		claims map[string]any
		code   int
	}{
		{"valid", "Authorization", good, 400},
		{"valid in X-Serverless-Authorization", "X-Serverless-Authorization", good, 400},
		// Cloud Run lets these through (an invoker, an audience of the service); serve
		// wants the push account, a verified e-mail and the push audience.
		{"another invoker", "Authorization", with("email", "other@p.iam.gserviceaccount.com"), 401},
		{"e-mail not verified", "Authorization", with("email_verified", false), 401},
		{"the service URL as audience", "Authorization", with("aud", front.URL), 401},
		{"not Google", "Authorization", with("iss", "https://evil.example"), 401},
	} {
		if code := push(front.URL, c.header, front.Sign(c.claims)); code != c.code {
			t.Errorf("through the front, %s: %d, want %d", c.name, code, c.code)
		}
	}
	// Straight to the container, a forged token without a signature: refused where no
	// front checked it (off Cloud Run, or a public service), accepted only with
	// CheckedByFront, and even then only if it has not expired.
	stripped := func(claims map[string]any) string {
		tok := front.Sign(claims)
		return tok[:strings.LastIndexByte(tok, '.')+1] + server.SignatureRemoved
	}
	if code := push(hs.URL, "Authorization", stripped(with("exp", now-120))); code != 401 {
		t.Errorf("stripped and expired: %d, want 401", code)
	}
	auth.CheckedByFront = false
	if code := push(hs.URL, "Authorization", stripped(good)); code != 401 {
		t.Errorf("stripped, no front: %d, want 401", code)
	}
	if code := push(front.URL, "Authorization", front.Sign(good)); code != 401 {
		t.Errorf("through the front without CheckedByFront: %d, want 401", code)
	}
}

// refuseAll is a validator that finds every signature bad: behind the front none is
// left to check.
type refuseAll struct{}

func (refuseAll) Validate(context.Context, string, string) (*idtoken.Payload, error) {
	return nil, errors.New("bad signature")
}
