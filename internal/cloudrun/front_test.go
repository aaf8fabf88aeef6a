package cloudrun

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// echo is the container: it answers with the authorization headers it was given.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, r.Header.Get("Authorization")+"|"+r.Header.Get("X-Serverless-Authorization")+"|"+strconv.FormatInt(n, 10))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func do(t *testing.T, url string, headers map[string]string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFrontChecksAndStripsTokens(t *testing.T) {
	const invoker, other, aud = "push@p.iam.gserviceaccount.com", "someone@p.iam.gserviceaccount.com", "visionstack-demo-push"
	f, err := Start(Options{Backend: echo(t), Invokers: []string{invoker}, Audiences: []string{aud}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	good := f.Token(invoker, aud, time.Hour)
	expired := f.Sign(map[string]any{"iss": "https://accounts.google.com", "aud": aud, "email": invoker, "email_verified": true, "exp": time.Now().Add(-time.Minute).Unix()})
	g2, _ := Start(Options{Backend: "127.0.0.1:1"})
	defer g2.Close()
	cases := []struct {
		name    string
		headers map[string]string
		code    int
		seen    string // what the container sees: Authorization|X-Serverless-Authorization|bytes
	}{
		{"no token", nil, 401, ""},
		{"not a bearer token", map[string]string{"Authorization": "Basic eDp5"}, 401, ""},
		{"signed by someone else", map[string]string{"Authorization": "Bearer " + g2.Token(invoker, aud, time.Hour)}, 401, ""},
		{"expired", map[string]string{"Authorization": "Bearer " + expired}, 401, ""},
		{"other audience", map[string]string{"Authorization": "Bearer " + f.Token(invoker, "https://elsewhere", time.Hour)}, 401, ""},
		{"service URL as audience", map[string]string{"Authorization": "Bearer " + f.Token(invoker, f.URL, time.Hour)}, 200, "stripped||3"},
		{"not an invoker", map[string]string{"Authorization": "Bearer " + f.Token(other, aud, time.Hour)}, 403, ""},
		{"invoker", map[string]string{"Authorization": "Bearer " + good}, 200, "stripped||3"},
		// X-Serverless-Authorization is checked (and stripped); Authorization is the
		// application's own and passes untouched.
		{"serverless header first", map[string]string{"X-Serverless-Authorization": "Bearer " + good, "Authorization": "Bearer app-token"}, 200, "Bearer app-token|stripped|3"},
		{"serverless header refused", map[string]string{"X-Serverless-Authorization": "Bearer " + f.Token(other, aud, time.Hour), "Authorization": "Bearer " + good}, 403, ""},
	}
	for _, c := range cases {
		code, body := do(t, f.URL+"/v1/pubsub/push", c.headers, []byte("abc"))
		if code != c.code {
			t.Errorf("%s: %d %q, want %d", c.name, code, body, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		stripped := "Bearer " + good[:strings.LastIndexByte(good, '.')+1] + SignatureRemoved
		if tok := strings.TrimPrefix(c.headers["Authorization"], "Bearer "); c.name == "service URL as audience" {
			stripped = "Bearer " + tok[:strings.LastIndexByte(tok, '.')+1] + SignatureRemoved
		}
		if want := strings.ReplaceAll(c.seen, "stripped", stripped); body != want {
			t.Errorf("%s: the container saw %q, want %q", c.name, body, want)
		}
	}
	if f.Accepted.Load() != 3 || f.Refused.Load() != int64(len(cases)-3) {
		t.Errorf("accepted %d refused %d", f.Accepted.Load(), f.Refused.Load())
	}
}

func TestFrontPublicServicePassesTokensUntouched(t *testing.T) {
	f, err := Start(Options{Backend: echo(t), Public: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code, body := do(t, f.URL, map[string]string{"Authorization": "Bearer a.b.c"}, nil)
	if code != 200 || body != "Bearer a.b.c||0" {
		t.Errorf("%d %q", code, body)
	}
}

func TestFrontCapsRequests(t *testing.T) {
	f, err := Start(Options{Backend: echo(t), Public: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if code, body := do(t, f.URL, nil, make([]byte, MaxRequestBytes)); code != 200 || !strings.HasSuffix(body, "|33554432") {
		t.Errorf("32 MiB: %d %q", code, body)
	}
	if code, _ := do(t, f.URL, nil, make([]byte, MaxRequestBytes+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("32 MiB + 1: %d, want 413", code)
	}
}

func TestFrontHoldsRequestsWhileTheInstanceStarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens yet
	f, err := Start(Options{Backend: addr, Public: true, Hold: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	go func() {
		time.Sleep(500 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") })}
		t.Cleanup(func() { srv.Close() })
		srv.Serve(ln)
	}()
	if code, body := do(t, f.URL, nil, []byte("x")); code != 200 || body != "up" {
		t.Errorf("%d %q, want the request held until the instance answers", code, body)
	}
}

func TestInstanceTerminateGracePeriod(t *testing.T) {
	// A process that leaves on SIGTERM is not killed; one that ignores it is, after Grace.
	for _, c := range []struct {
		script string
		killed bool
	}{{"sleep 30", false}, {`trap "" TERM; sleep 30 & wait; sleep 30`, true}} {
		in := &Instance{New: func() *exec.Cmd { return exec.Command("sh", "-c", c.script) }, Grace: 300 * time.Millisecond}
		if err := in.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // let the trap be set
		start := time.Now()
		killed := in.Terminate()
		if killed != c.killed {
			t.Errorf("%q: killed %v, want %v", c.script, killed, c.killed)
		}
		if took := time.Since(start); c.killed && took < 300*time.Millisecond {
			t.Errorf("%q: killed after %v, before the grace period", c.script, took)
		}
	}
}
