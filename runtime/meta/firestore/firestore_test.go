package firestore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	fs "cloud.google.com/go/firestore"

	"github.com/visionstack/visionstack/internal/emulator"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/firestore"
	"github.com/visionstack/visionstack/runtime/meta/metatest"
)

var host string

// TestMain starts Google's Firestore emulator once for the package.
func TestMain(m *testing.M) {
	e, err := emulator.Firestore()
	switch {
	case emulator.Absent(err):
		fmt.Println("SKIP: Firestore emulator not installed (scripts/install-deps.sh installs google-cloud-cli-firestore-emulator):", err)
		if os.Getenv("CI") != "" {
			fmt.Println("FAIL: CI must run the Firestore tests")
			os.Exit(1)
		}
		os.Exit(0)
	case err != nil:
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
	host = e.Host
	code := m.Run()
	e.Stop()
	os.Exit(code)
}

// The meta conformance suite on the real Firestore client against the emulator;
// each subtest gets its own project, so its own empty database.
func TestConformance(t *testing.T) {
	t.Setenv("FIRESTORE_EMULATOR_HOST", host)
	var n atomic.Int32
	metatest.Run(t, func(t *testing.T) meta.Store {
		client, err := fs.NewClient(context.Background(), fmt.Sprintf("visionstack-test-%d", n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		s := firestore.New(client)
		t.Cleanup(func() { s.Close() })
		return s
	})
}
