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
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

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
