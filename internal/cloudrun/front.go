// Package cloudrun is a stand-in for Cloud Run's front, for tests: what Cloud Run does
// to a request before the container sees it, and to the container when it stops.
// Each rule cites the document it models:
//
//   - A service that requires authentication checks the caller's Google-signed ID
//     token (audience: the service URL or one of its custom audiences) and that the
//     caller holds roles/run.invoker; 401 for a missing or invalid token, 403 for a
//     caller who may not invoke. It then removes the token's signature: the container
//     sees header.claims.SIGNATURE_REMOVED_BY_GOOGLE. The token may come in
//     X-Serverless-Authorization, which then takes precedence over Authorization.
//     https://cloud.google.com/run/docs/authenticating/service-to-service
//     https://cloud.google.com/run/docs/securing/managing-access
//   - HTTP/1 requests are capped at 32 MiB (413 beyond).
//     https://cloud.google.com/run/quotas
//   - A request that arrives while no instance is up waits for one to start; one in
//     flight when the instance dies gets a 503.
//     https://cloud.google.com/run/docs/about-instance-autoscaling
//   - Shutdown: SIGTERM, then SIGKILL 10 s later.
//     https://cloud.google.com/run/docs/container-contract#instance-shutdown
//
// The tokens are signed by the front's own key (the stand-in for Google's), minted by
// Token, and attached to push deliveries by PushSigner as Pub/Sub's OIDC push does.
package cloudrun

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
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxRequestBytes is Cloud Run's cap on an HTTP/1 request.
const MaxRequestBytes = 32 << 20

// Grace is how long Cloud Run waits after SIGTERM before SIGKILL.
const Grace = 10 * time.Second

// SignatureRemoved replaces a checked token's signature.
const SignatureRemoved = "SIGNATURE_REMOVED_BY_GOOGLE"

// Options describe the service behind the front.
type Options struct {
	Backend   string   // host:port the container listens on
	Public    bool     // allUsers holds run.invoker: no token is asked for or touched
	Invokers  []string // e-mails holding roles/run.invoker on a private service
	Audiences []string // custom audiences; the front's own URL is always one
	Hold      time.Duration
	// Log, when set, gets a line a request: what it was and what the front answered.
	Log io.Writer
}

// Front is a running front; URL is the service's URL.
type Front struct {
	URL      string
	o        Options
	key      *rsa.PrivateKey
	srv      *httptest.Server
	Refused  atomic.Int64 // requests the front answered itself (401, 403, 413)
	Accepted atomic.Int64 // requests passed on to the container
}

// Start starts a front for opts.Backend.
func Start(opts Options) (*Front, error) {
	if opts.Hold == 0 {
		opts.Hold = 20 * time.Second
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	f := &Front{o: opts, key: key}
	u := &url.URL{Scheme: "http", Host: opts.Backend}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{DialContext: f.dialHolding, DisableKeepAlives: true}
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, "service unavailable: "+err.Error(), http.StatusServiceUnavailable)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		f.serve(rec, r, rp)
		if f.o.Log != nil {
			fmt.Fprintf(f.o.Log, "front: %s %s %s %d after %v\n", start.Format("15:04:05.000"), r.Method, r.URL.Path, rec.code, time.Since(start).Round(time.Millisecond))
		}
	}))
	f.URL = f.srv.URL
	return f, nil
}

// Close stops the front.
func (f *Front) Close() { f.srv.Close() }

// dialHolding waits for the instance to come up, as Cloud Run holds a request
// until an instance can take it.
func (f *Front) dialHolding(ctx context.Context, network, addr string) (net.Conn, error) {
	deadline := time.Now().Add(f.o.Hold)
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return c, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *Front) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if r.ContentLength > MaxRequestBytes {
		f.refuse(w, http.StatusRequestEntityTooLarge, "request larger than Cloud Run's 32 MiB")
		return
	}
	// The body is read whole here so a request can wait for an instance and still be
	// sent in full; the cap holds for a body of unknown length too.
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		f.refuse(w, http.StatusBadRequest, "read request: "+err.Error())
		return
	}
	if len(body) > MaxRequestBytes {
		f.refuse(w, http.StatusRequestEntityTooLarge, "request larger than Cloud Run's 32 MiB")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !f.o.Public {
		header := "X-Serverless-Authorization"
		if r.Header.Get(header) == "" {
			header = "Authorization"
		}
		tok, ok := strings.CutPrefix(r.Header.Get(header), "Bearer ")
		if !ok || tok == "" {
			f.refuse(w, http.StatusUnauthorized, "the request was not authenticated: no ID token")
			return
		}
		claims, err := f.verify(tok)
		if err != nil {
			f.refuse(w, http.StatusUnauthorized, "the request was not authenticated: "+err.Error())
			return
		}
		if email, _ := claims["email"].(string); !slices.Contains(f.o.Invokers, email) {
			f.refuse(w, http.StatusForbidden, fmt.Sprintf("%q does not have permission run.routes.invoke", email))
			return
		}
		r.Header.Set(header, "Bearer "+tok[:strings.LastIndexByte(tok, '.')+1]+SignatureRemoved)
	}
	f.Accepted.Add(1)
	next.ServeHTTP(w, r)
}

func (f *Front) refuse(w http.ResponseWriter, code int, msg string) {
	f.Refused.Add(1)
	http.Error(w, msg, code)
}

// verify checks a token's signature, lifetime and audience; it returns its claims.
func (f *Front) verify(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("signature not base64url")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&f.key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return nil, errors.New("bad signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("claims not base64url")
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, errors.New("claims not JSON")
	}
	if exp, _ := claims["exp"].(float64); time.Now().Unix() > int64(exp) {
		return nil, errors.New("token expired")
	}
	if aud, _ := claims["aud"].(string); aud != f.URL && !slices.Contains(f.o.Audiences, aud) {
		return nil, fmt.Errorf("audience %q is neither the service URL nor a custom audience", aud)
	}
	return claims, nil
}

// Token mints an ID token as Google's token service would for a service account.
func (f *Front) Token(email, audience string, ttl time.Duration) string {
	now := time.Now()
	return f.Sign(map[string]any{"iss": "https://accounts.google.com", "aud": audience, "azp": "1", "sub": "1",
		"email": email, "email_verified": true, "iat": now.Unix(), "exp": now.Add(ttl).Unix()})
}

// Sign signs any claims with the front's key (for tokens with one claim wrong).
func (f *Front) Sign(claims map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "front", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	signing := enc(h) + "." + enc(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err) // rand.Reader does not fail
	}
	return signing + "." + enc(sig)
}

// PushSigner is Pub/Sub's OIDC push in front of the front: a push endpoint for the
// emulator (which attaches no token) that forwards each delivery to path on the front
// with a fresh token for email and audience, and passes the answer back.
func (f *Front) PushSigner(path, email, audience string) *httptest.Server {
	target := f.URL + path
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		req.ContentLength = r.ContentLength
		req.Header.Set("Authorization", "Bearer "+f.Token(email, audience, time.Hour))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
}

type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(c int) { r.code = c; r.ResponseWriter.WriteHeader(c) }

// Instance is the container's process, started and stopped as Cloud Run does.
type Instance struct {
	New   func() *exec.Cmd // makes the process to start
	Grace time.Duration    // SIGTERM to SIGKILL; Grace by default
	cmd   *exec.Cmd
	done  chan struct{}
}

// Start starts a new process.
func (in *Instance) Start() error {
	in.cmd = in.New()
	if err := in.cmd.Start(); err != nil {
		return err
	}
	in.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(in.cmd, in.done)
	return nil
}

// Kill ends the process at once, as a crash or an instance lost would.
func (in *Instance) Kill() { in.stop(syscall.SIGKILL, 0) }

// Terminate sends SIGTERM and SIGKILL after the grace period if the process is still
// there; it reports whether the kill was needed.
func (in *Instance) Terminate() (killed bool) {
	g := in.Grace
	if g == 0 {
		g = Grace
	}
	return in.stop(syscall.SIGTERM, g)
}

func (in *Instance) stop(sig os.Signal, grace time.Duration) (killed bool) {
	if in.cmd == nil || in.cmd.Process == nil {
		return false
	}
	defer func() { in.cmd = nil }()
	_ = in.cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-in.done:
			return false
		case <-time.After(grace):
		}
	}
	_ = in.cmd.Process.Kill()
	<-in.done
	return sig != syscall.SIGKILL
}
