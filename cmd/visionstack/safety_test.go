package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Cloud serve will not start with the push endpoint open to anyone, unless told to
// (and then it says so at warning level).
func TestCloudServeRefusesUnauthenticatedPush(t *testing.T) {
	t.Setenv("VISIONSTACK_PUSH_AUDIENCE", "")
	out, err := runCLI(t, "--root", "../..", "serve", "--project", "demo", "--backend", "cloud", "--addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "push authentication is off") || !strings.Contains(err.Error(), "--insecure-push") {
		t.Fatalf("cloud serve without push authentication: %v\n%s", err, out)
	}
	// The review page shows originals: never on a public service.
	root := t.TempDir()
	y := strings.Replace(mustRead(t, "../../projects/demo/project.yaml"), "serving: {", "serving: {public: true, ", 1)
	writeDemo(t, root, y)
	out, err = runCLI(t, "--root", root, "serve", "--project", "demo", "--backend", "cloud", "--insecure-push", "--review", "on", "--addr", "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "serving.public") {
		t.Fatalf("review page on a public service: %v\n%s", err, out)
	}
}

// Local serve listens on loopback unless told otherwise.
func TestLocalServeBindsLoopbackByDefault(t *testing.T) {
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	t.Setenv("PORT", port)
	stop, out := startCLI(t, "--root", "../..", "serve", "--project", "demo", "--data", t.TempDir())
	waitHealthy(t, "http://127.0.0.1:"+port+"/healthz")
	must(t, stop())
	if !strings.Contains(out.String(), "addr=127.0.0.1:"+port) {
		t.Fatalf("local serve did not listen on 127.0.0.1:%s:\n%s", port, out.String())
	}
	if !loopback("127.0.0.1:80") || !loopback("[::1]:80") || !loopback("localhost:80") || loopback(":80") || loopback("0.0.0.0:80") {
		t.Fatal("loopback() misjudges an address")
	}
}

// A client that trickles its body is cut off after the read limit instead of
// holding the connection.
func TestSlowClientsAreCutOff(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	go func() {
		done <- listenAndServe(ctx, addr, h, connLimits{Read: 300 * time.Millisecond, Write: time.Second, Idle: time.Second},
			time.Second, slog.New(slog.DiscardHandler), nil, nil, "test")
	}()
	defer func() { cancel(); <-done }()
	var conn net.Conn
	var err error
	for range 100 {
		if conn, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"))
	must(t, err)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(conn).ReadString('\n')
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a trickling client held the connection %v (%v); the read limit is 300ms", took, err)
	}
}
