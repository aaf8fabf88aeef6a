// Package emulator starts Google's own emulators (shipped by the Debian package
// google-cloud-cli) on 127.0.0.1 with a free port for tests, waits until they answer,
// and stops them by process group. scripts/emulators.sh does the same for people.
package emulator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// SDKRoot is where Debian's google-cloud-cli installs the SDK.
var SDKRoot = "/usr/lib/google-cloud-sdk"

// ErrAbsent: the emulator is not installed (apt-get install google-cloud-cli-firestore-emulator
// or google-cloud-cli-pubsub-emulator; scripts/install-deps.sh does it).
var ErrAbsent = errors.New("emulator not installed")

// Emulator is a running emulator.
type Emulator struct {
	Host string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	log  *os.File
}

// Stop kills the emulator's process group (the launcher scripts start a JVM child).
func (e *Emulator) Stop() {
	if e == nil || e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	if e.log != nil {
		e.log.Close()
		os.Remove(e.log.Name())
	}
}

// Firestore starts the Firestore emulator.
func Firestore() (*Emulator, error) {
	bin := filepath.Join(SDKRoot, "platform", "cloud-firestore-emulator", "cloud_firestore_emulator")
	return start(bin, func(port int) []string {
		return []string{"start", "--host=127.0.0.1", fmt.Sprintf("--port=%d", port)}
	}, "/")
}

// PubSub starts the Pub/Sub emulator (it supports push subscriptions and dead-lettering).
func PubSub(project string) (*Emulator, error) {
	bin := filepath.Join(SDKRoot, "platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator")
	return start(bin, func(port int) []string {
		return []string{"--host=127.0.0.1", fmt.Sprintf("--port=%d", port)}
	}, "/")
}

func start(bin string, args func(port int) []string, probe string) (*Emulator, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrAbsent, bin)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.CreateTemp("", "emulator-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args(port)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	e := &Emulator{Host: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, log: logf}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + e.Host + probe)
		if err == nil {
			resp.Body.Close()
			return e, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := os.ReadFile(logf.Name())
	e.Stop()
	return nil, fmt.Errorf("%s did not answer on %s within 90s:\n%s", filepath.Base(bin), e.Host, tail(string(out), 2000))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Absent reports whether err means the emulator is not installed.
func Absent(err error) bool { return errors.Is(err, ErrAbsent) }
