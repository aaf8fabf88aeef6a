// Package localmode runs a project on embedded defaults, no cloud: buckets are
// directories, metadata is SQLite, the queue is a SQLite table, and the built-in
// face model runs in-process. Everything lives under one output directory:
//
//	<dir>/incoming/    originals, as submitted
//	<dir>/processed/   anonymized, stripped, downscaled outputs
//	<dir>/quarantine/  originals that could not be processed, with the reason recorded
//	<dir>/visionstack.db  jobs, results and metadata
//	<dir>/queue.db        the durable work queue
package localmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/local"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/models"
	"github.com/visionstack/visionstack/runtime/pipeline"
	qlocal "github.com/visionstack/visionstack/runtime/queue/local"
	"github.com/visionstack/visionstack/runtime/telemetry"
)

// Topics of the local queue.
const (
	WorkTopic      = "uploaded"
	ProcessedTopic = "processed"
)

// Options tune a local environment.
type Options struct {
	Workers int // concurrent images (default 1)
	Logger  *slog.Logger
	// Backoff overrides the project's delivery backoff (local runs want seconds, not minutes).
	MinBackoff, MaxBackoff time.Duration
	// Models replaces the built-in clients (tests wrap them to count or fail calls).
	Models map[string]model.Predictor
	// Admit is the pipeline's admission control (the service sets it).
	Admit func(ctx context.Context, pixels int64) (func(), error)
	// Telemetry records metrics and spans (nil: none).
	Telemetry *telemetry.Telemetry
	// Lease of a queue delivery and of a job's claim (default the project's delivery.lease),
	// both renewed while the job runs: after a crash, a restarted run waits at most
	// this long for what the dead process held.
	Lease time.Duration
}

// Env is an opened local environment.
type Env struct {
	Dir        string
	Incoming   *local.Bucket
	Processed  *local.Bucket
	Quarantine *local.Bucket
	Meta       *sqlite.Store
	Queue      *qlocal.Queue
	Pipeline   *pipeline.Pipeline
	closers    closers.Stack
}

// Open opens (creating) the environment for cfg under dir.
func Open(cfg *config.Project, dir string, o Options) (_ *Env, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.Lease <= 0 {
		o.Lease = cfg.Delivery.Lease.Duration
	}
	if o.Lease <= 0 {
		o.Lease = pipeline.DefaultLease
	}
	e := &Env{Dir: dir}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	e.closers.Add(unlock)
	open := func(sub string) (*local.Bucket, error) {
		b, err := local.Open(filepath.Join(dir, sub), sub)
		if err == nil {
			e.closers.Add(b.Close)
		}
		return b, err
	}
	if e.Incoming, err = open("incoming"); err != nil {
		return nil, err
	}
	if e.Processed, err = open("processed"); err != nil {
		return nil, err
	}
	if e.Quarantine, err = open("quarantine"); err != nil {
		return nil, err
	}
	if e.Meta, err = sqlite.Open(filepath.Join(dir, "visionstack.db")); err != nil {
		return nil, err
	}
	e.closers.Add(e.Meta.Close)
	e.Queue, err = qlocal.Open(filepath.Join(dir, "queue.db"), qlocal.Options{
		MaxAttempts: cfg.Delivery.MaxAttempts, MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff,
		AckDeadline: o.Lease, Workers: max(o.Workers, 1), Logger: o.Logger,
	})
	if err != nil {
		return nil, err
	}
	e.closers.Add(e.Queue.Close)
	models := o.Models
	if models == nil {
		if models, err = Models(cfg); err != nil {
			return nil, err
		}
	}
	e.Pipeline, err = pipeline.New(cfg, pipeline.Deps{
		Incoming: e.Incoming, Processed: e.Processed, Quarantine: e.Quarantine,
		Meta: e.Meta, Publisher: e.Queue, ProcessedTopic: ProcessedTopic, Models: models, Logger: o.Logger, Admit: o.Admit, Lease: o.Lease,
		Telemetry: o.Telemetry,
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Close closes every backend.
func (e *Env) Close() error {
	return e.closers.Close()
}

// Models builds the model clients local mode can run: the built-in ones.
func Models(cfg *config.Project) (map[string]model.Predictor, error) {
	m, _, err := models.Build(context.Background(), cfg, models.Options{BuiltinOnly: true})
	return m, err
}

// Input is one image file to submit.
type Input struct {
	Path   string // on disk
	Object string // name in the incoming bucket
	// Skip, when set, says why the file cannot be submitted (not a regular file);
	// run reports it instead of reading it.
	Skip string
}

// FindInputs expands files and folders into image files (by extension, recursively),
// naming each object by its path below the folder given. Symbolic links to regular
// files are followed, named or found in a folder; links to folders inside a folder
// are not descended into (no cycles). Anything that is not a regular file — a named
// pipe, socket or device, even named x.jpg — is listed with Skip set and never opened:
// opening a pipe would block until something writes to it.
func FindInputs(paths []string) ([]Input, error) {
	in, _, err := FindInputsNoting(paths)
	return in, err
}

// FindInputsNoting is FindInputs, and also names the files of the folders that it
// left out because their names are not images' (notes.txt): run says so.
func FindInputsNoting(paths []string) ([]Input, []string, error) {
	var out []Input
	var ignored []string
	seen := map[string]bool{}
	add := func(p, obj string) {
		abs, _ := filepath.Abs(p)
		if seen[abs] {
			return
		}
		seen[abs] = true
		in := Input{Path: p, Object: filepath.ToSlash(obj)}
		if st, err := os.Stat(p); err != nil {
			in.Skip = cannotRead(err)
		} else if !st.Mode().IsRegular() {
			in.Skip = "not a regular file (" + fileKind(st.Mode()) + ")"
		}
		out = append(out, in)
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("input %s: %w", p, err)
		}
		if !st.IsDir() {
			add(p, filepath.Base(p))
			continue
		}
		base := filepath.Base(filepath.Clean(p))
		err = filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			if !IsImageName(f) {
				ignored = append(ignored, f)
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				if st, err := os.Stat(f); err == nil && st.IsDir() {
					return nil // a link to a folder named like an image: not descended into
				}
			}
			rel, _ := filepath.Rel(p, f)
			add(f, filepath.Join(base, rel))
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("input %s: %w", p, err)
		}
	}
	uniqueObjects(out)
	sort.Slice(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	return out, ignored, nil
}

// uniqueObjects renames inputs that would share an object name (files named on the
// command line by the same base name: x/p.jpg and y/p.jpg): each takes its path,
// cleaned of leading "/" and "../", and a counter if that still clashes. Distinct
// files are distinct objects; otherwise the later would replace the earlier.
func uniqueObjects(ins []Input) {
	count := map[string]int{}
	for _, in := range ins {
		count[in.Object]++
	}
	used := map[string]bool{}
	for _, in := range ins {
		if count[in.Object] == 1 {
			used[in.Object] = true
		}
	}
	for i, in := range ins {
		if count[in.Object] == 1 {
			continue
		}
		var parts []string
		for _, p := range strings.Split(filepath.ToSlash(filepath.Clean(in.Path)), "/") {
			if p != "" && p != "." && p != ".." {
				parts = append(parts, p)
			}
		}
		name := strings.Join(parts, "/")
		for n := 2; used[name]; n++ {
			ext := path.Ext(in.Object)
			name = strings.TrimSuffix(strings.Join(parts, "/"), ext) + "-" + strconv.Itoa(n) + ext
		}
		used[name] = true
		ins[i].Object = name
	}
}

// cannotRead says why a file could not be read, without repeating its path.
func cannotRead(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return "cannot read: " + err.Error()
}

// fileKind names a non-regular file's type for messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	case m.IsDir():
		return "folder"
	}
	return m.Type().String()
}

// readRegular reads a file only if it is a regular file, deciding on the open file
// itself: opened non-blocking, so a pipe that replaced the file after FindInputs
// looked cannot hang the run.
func readRegular(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fileKind(st.Mode()))
	}
	return io.ReadAll(f)
}

// IsImageName reports whether a file name has an image extension worth submitting.
// The content is checked later; this only keeps folders' other files out.
func IsImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".avif", ".jxl":
		return true
	}
	return false
}

// Submitted says what Submit did with one input.
type Submitted struct {
	Input
	Key     string
	Skipped bool // already final from an earlier run
	// NotRead says why the file was not submitted (not a regular file, unreadable).
	NotRead string
}

// Submit stores each input in the incoming bucket and queues a task, unless its
// content was already processed (the content hash is the key), so a re-run does no work.
// A file that cannot be read is reported in NotRead, not as an error: one bad
// input does not stop a run.
func (e *Env) Submit(ctx context.Context, in Input) (Submitted, error) {
	if in.Skip != "" {
		return Submitted{Input: in, NotRead: in.Skip}, nil
	}
	data, err := readRegular(in.Path)
	if err != nil {
		return Submitted{Input: in, NotRead: cannotRead(err)}, nil
	}
	s := Submitted{Input: in, Key: pipeline.ContentKey(data)}
	if j, err := e.Meta.Get(ctx, s.Key); err == nil && j.State.Final() {
		s.Skipped = true
		return s, nil
	} else if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return s, err
	}
	attrs, err := e.Incoming.Put(ctx, in.Object, data, blob.PutOptions{})
	if err != nil {
		return s, fmt.Errorf("submit %s: %w", in.Path, err)
	}
	task := pipeline.Task{Key: s.Key, Source: meta.Source{Bucket: e.Incoming.Name(), Object: in.Object, Generation: attrs.Generation}}
	if err := pipeline.Publish(ctx, e.Queue, WorkTopic, task); err != nil {
		return s, err
	}
	return s, nil
}
