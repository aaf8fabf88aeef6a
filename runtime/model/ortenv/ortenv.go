// Package ortenv finds ONNX Runtime's shared library and starts its environment,
// once per process, for every model that runs on it (the built-in face detector, a
// team's own ONNX file).
package ortenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrNoRuntime: ONNX Runtime's shared library was not found.
var ErrNoRuntime = errors.New("ONNX Runtime not found: run scripts/install-onnxruntime.sh, or set VISIONSTACK_ONNXRUNTIME to libonnxruntime.so")

// Library is where ONNX Runtime's shared library is: $VISIONSTACK_ONNXRUNTIME, else
// where scripts/install-onnxruntime.sh puts it, else /usr/local/lib (the image).
func Library() (string, error) {
	if p := os.Getenv("VISIONSTACK_ONNXRUNTIME"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("VISIONSTACK_ONNXRUNTIME: %w", err)
		}
		return p, nil
	}
	var candidates []string
	cache := os.Getenv("XDG_CACHE_HOME")
	if home, err := os.UserHomeDir(); cache == "" && err == nil {
		cache = filepath.Join(home, ".cache")
	}
	if cache != "" {
		candidates = append(candidates, filepath.Join(cache, "visionstack", "onnxruntime", "1.30.0", "libonnxruntime.so"))
	}
	candidates = append(candidates, "/usr/local/lib/libonnxruntime.so")
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", ErrNoRuntime
}

var (
	once    sync.Once
	started error
)

// Start loads the library and starts the environment; later calls return the first
// call's result.
func Start() error {
	once.Do(func() {
		lib, err := Library()
		if err != nil {
			started = err
			return
		}
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(); err != nil {
			started = fmt.Errorf("start ONNX Runtime (%s): %w", lib, err)
			return
		}
		if err := registerArena(); err != nil {
			started = fmt.Errorf("start ONNX Runtime (%s): memory arena: %w", lib, err)
		}
	})
	return started
}

// arenaSameAsRequested is ONNX Runtime's kSameAsRequested extend strategy.
const arenaSameAsRequested = 1

// registerArena gives the environment one CPU memory arena that every session uses
// (SessionOptions), growing by what a run asks and no more. Runs then reuse memory
// instead of mapping fresh pages for every activation, which the kernel faulted in
// and zeroed: without an arena the kernel took a quarter to a half of the job's CPU.
// The default per-session arena doubles each time it grows and held up to twice a
// run's activations: 16 concurrent 12 MP jobs at the 512 MiB budget peaked at
// 510 MiB with it and 451 MiB with this one (bench/RESULTS.md).
func registerArena() error {
	cfg, err := ort.NewArenaCfg(0, arenaSameAsRequested, -1, -1)
	if err != nil {
		return err
	}
	defer cfg.Destroy()
	mi, err := ort.GetMemoryInfo()
	if err != nil {
		return err
	}
	return ort.CreateAndRegisterAllocator(mi, cfg)
}

// SessionOptions are one thread a run (runs go side by side, one a core) and the
// environment's shared arena (registerArena), for a session the caller creates and
// then destroys the options of.
func SessionOptions() (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		opts.Destroy()
		return nil, err
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		opts.Destroy()
		return nil, err
	}
	if err := opts.AddSessionConfigEntry("session.use_env_allocators", "1"); err != nil {
		opts.Destroy()
		return nil, err
	}
	return opts, nil
}
