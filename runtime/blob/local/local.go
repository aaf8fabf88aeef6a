// Package local is a blob.Bucket on a directory. Object names are validated and every
// file operation goes through os.Root, so no name (nor a symlink planted in the
// directory) can reach outside it. Writes are atomic (temp file, then rename or link).
//
// One process should write a directory at a time: generation preconditions are
// enforced with an in-process lock; create-if-absent is atomic across processes.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/visionstack/visionstack/runtime/blob"
)

const (
	tmpDir  = ".visionstack-tmp"
	metaDir = ".visionstack-meta" // sidecar JSON per object: content type and metadata
)

// Bucket is a directory holding one bucket's objects.
type Bucket struct {
	name string
	dir  string
	root *os.Root
	mu   sync.Mutex // serialises conditional writes and generation stamps
	// visited counts the entries List looked at (a test checks a page's cost).
	visited atomic.Int64
}

var _ blob.Bucket = (*Bucket)(nil)

// Open opens (creating it if needed) the directory dir as bucket name.
func Open(dir, name string) (*Bucket, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open local bucket %s: %w", name, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open local bucket %s: %w", name, err)
	}
	for _, d := range []string{tmpDir, metaDir} {
		if err := root.MkdirAll(d, 0o755); err != nil {
			root.Close()
			return nil, fmt.Errorf("open local bucket %s: %w", name, err)
		}
	}
	return &Bucket{name: name, dir: dir, root: root}, nil
}

// Name of the bucket.
func (b *Bucket) Name() string { return b.name }

// Dir is the directory, for messages that tell a person where outputs are.
func (b *Bucket) Dir() string { return b.dir }

// Close releases the directory handle.
func (b *Bucket) Close() error { return b.root.Close() }

func checkName(name string) error {
	if err := blob.ValidateName(name); err != nil {
		return err
	}
	if first, _, _ := strings.Cut(name, "/"); first == tmpDir || first == metaDir {
		return fmt.Errorf("%w %q: reserved by the local backend", blob.ErrInvalidName, name)
	}
	return nil
}

// NewReader opens an object.
func (b *Bucket) NewReader(ctx context.Context, name string) (io.ReadCloser, blob.Attrs, error) {
	if err := checkName(name); err != nil {
		return nil, blob.Attrs{}, err
	}
	f, err := b.root.Open(name)
	if err != nil {
		return nil, blob.Attrs{}, b.mapErr(name, err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, blob.Attrs{}, fmt.Errorf("%w: %s/%s", blob.ErrNotFound, b.name, name)
	}
	attrs, err := b.attrsOf(name, st, f)
	if err != nil {
		f.Close()
		return nil, blob.Attrs{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, blob.Attrs{}, err
	}
	return f, attrs, nil
}

// Attrs stats an object.
func (b *Bucket) Attrs(ctx context.Context, name string) (blob.Attrs, error) {
	r, a, err := b.NewReader(ctx, name)
	if err != nil {
		return a, err
	}
	r.Close()
	return a, nil
}

func (b *Bucket) attrsOf(name string, st fs.FileInfo, r io.Reader) (blob.Attrs, error) {
	head := make([]byte, 512)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return blob.Attrs{}, fmt.Errorf("read %s/%s: %w", b.name, name, err)
	}
	a := blob.Attrs{
		Name:        name,
		Size:        st.Size(),
		Generation:  st.ModTime().UnixNano(),
		ContentType: http.DetectContentType(head[:n]),
		Updated:     st.ModTime(),
	}
	// The sidecar counts only if it was written for this generation.
	if raw, err := b.root.ReadFile(metaDir + "/" + name + ".json"); err == nil {
		var sc sidecar
		if json.Unmarshal(raw, &sc) == nil && sc.Generation == a.Generation {
			a.Metadata = sc.Metadata
			if sc.ContentType != "" {
				a.ContentType = sc.ContentType
			}
		}
	}
	return a, nil
}

type sidecar struct {
	Generation  int64             `json:"generation"`
	ContentType string            `json:"contentType,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// writeSidecar records content type and metadata for the generation just written.
// A crash before it leaves an object without metadata, which readers treat as unknown.
func (b *Bucket) writeSidecar(name string, gen int64, opts blob.PutOptions) error {
	p := metaDir + "/" + name + ".json"
	if opts.ContentType == "" && len(opts.Metadata) == 0 {
		if err := b.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	raw, err := json.Marshal(sidecar{Generation: gen, ContentType: opts.ContentType, Metadata: opts.Metadata})
	if err != nil {
		return err
	}
	if dir := path.Dir(p); dir != "." {
		if err := b.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp, err := b.writeTemp(raw)
	if err != nil {
		return err
	}
	return b.root.Rename(tmp, p)
}

// Put writes an object atomically, honouring IfGenerationMatch.
func (b *Bucket) Put(ctx context.Context, name string, data []byte, opts blob.PutOptions) (blob.Attrs, error) {
	if err := checkName(name); err != nil {
		return blob.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, err
	}
	if dir := path.Dir(name); dir != "." {
		if err := b.root.MkdirAll(dir, 0o755); err != nil {
			return blob.Attrs{}, fmt.Errorf("put %s/%s: %w", b.name, name, err)
		}
	}
	tmp, err := b.writeTemp(data)
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s/%s: %w", b.name, name, err)
	}
	defer b.root.Remove(tmp) // after a link, or after a failure

	b.mu.Lock()
	defer b.mu.Unlock()
	prev, statErr := b.root.Stat(name)
	var prevGen int64
	if statErr == nil {
		prevGen = prev.ModTime().UnixNano()
	}
	if g := opts.IfGenerationMatch; g != nil {
		switch {
		case *g == 0:
			// Link fails if the name exists, even if another process raced us.
			if err := b.root.Link(tmp, name); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return blob.Attrs{}, fmt.Errorf("%w: %s/%s exists", blob.ErrPrecondition, b.name, name)
				}
				return blob.Attrs{}, fmt.Errorf("put %s/%s: %w", b.name, name, err)
			}
			return b.stamp(name, prevGen, opts)
		case statErr != nil || prevGen != *g:
			return blob.Attrs{}, fmt.Errorf("%w: %s/%s is not at generation %d", blob.ErrPrecondition, b.name, name, *g)
		}
	}
	if err := b.root.Rename(tmp, name); err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s/%s: %w", b.name, name, err)
	}
	return b.stamp(name, prevGen, opts)
}

// stamp gives the object a generation strictly greater than the one it replaced:
// file times can be coarser than two quick writes.
func (b *Bucket) stamp(name string, prevGen int64, opts blob.PutOptions) (blob.Attrs, error) {
	gen := max(time.Now().UnixNano(), prevGen+1)
	t := time.Unix(0, gen)
	if err := b.root.Chtimes(name, t, t); err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s/%s: %w", b.name, name, err)
	}
	if err := b.writeSidecar(name, gen, opts); err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s/%s: metadata: %w", b.name, name, err)
	}
	f, err := b.root.Open(name)
	if err != nil {
		return blob.Attrs{}, b.mapErr(name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return blob.Attrs{}, err
	}
	return b.attrsOf(name, st, f)
}

func (b *Bucket) writeTemp(data []byte) (string, error) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	tmp := tmpDir + "/" + hex.EncodeToString(rnd[:])
	f, err := b.root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return tmp, f.Close()
}

// Delete removes an object.
func (b *Bucket) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	st, err := b.root.Lstat(name)
	if err != nil {
		return b.mapErr(name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s/%s", blob.ErrNotFound, b.name, name)
	}
	if err := b.root.Remove(name); err != nil {
		return b.mapErr(name, err)
	}
	_ = b.root.Remove(metaDir + "/" + name + ".json")
	return nil
}

// List returns a page of the objects under q.Prefix in name order. The walk
// collects names only, from the deepest folder the prefix names; attributes are
// read for the page alone.
func (b *Bucket) List(ctx context.Context, q blob.Query) ([]blob.Attrs, error) {
	// Visited in name order, folder by folder, skipping every folder whose names all
	// sort before q.After or lie outside q.Prefix, and stopping at q.Limit: a page
	// reads the folders on its way, not the whole bucket (a walk of the whole tree
	// for every page made going through a bucket quadratic in its size).
	var names []string
	full := func() bool { return q.Limit > 0 && len(names) >= q.Limit }
	var walk func(dir string) error
	walk = func(dir string) error {
		entries, err := fs.ReadDir(b.root.FS(), dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no such folder: no objects under it
		}
		if err != nil {
			return err
		}
		type entry struct {
			name string // the object name, or the folder's with its "/": how it sorts
			dir  bool
		}
		list := make([]entry, 0, len(entries))
		for _, e := range entries {
			p := e.Name()
			if dir != "." {
				p = dir + "/" + p
			}
			switch {
			case e.IsDir() && (p == tmpDir || p == metaDir):
			case e.IsDir():
				list = append(list, entry{p + "/", true})
			case e.Type().IsRegular():
				list = append(list, entry{p, false})
			}
		}
		slices.SortFunc(list, func(x, y entry) int { return strings.Compare(x.name, y.name) })
		// From the first entry past After (or the folder After is in).
		start, _ := slices.BinarySearchFunc(list, q.After, func(e entry, after string) int {
			if e.name <= after {
				return -1
			}
			return 1
		})
		if start > 0 && list[start-1].dir && strings.HasPrefix(q.After, list[start-1].name) {
			start--
		}
		for _, e := range list[start:] {
			if full() {
				return nil
			}
			b.visited.Add(1)
			if !e.dir {
				if strings.HasPrefix(e.name, q.Prefix) && e.name > q.After {
					names = append(names, e.name)
				}
				continue
			}
			within := strings.HasPrefix(e.name, q.Prefix) || strings.HasPrefix(q.Prefix, e.name)
			before := e.name < q.After && !strings.HasPrefix(q.After, e.name) // all its names ≤ After
			if within && !before {
				if err := walk(strings.TrimSuffix(e.name, "/")); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("."); err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", b.name, q.Prefix, err)
	}
	out := make([]blob.Attrs, 0, len(names))
	for _, n := range names {
		a, err := b.Attrs(ctx, n)
		if errors.Is(err, blob.ErrNotFound) {
			continue // deleted since the walk
		}
		if err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", b.name, q.Prefix, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func (b *Bucket) mapErr(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s/%s", blob.ErrNotFound, b.name, name)
	case strings.Contains(err.Error(), "path escapes from parent"):
		return fmt.Errorf("%w %q: escapes the bucket", blob.ErrInvalidName, name)
	}
	return fmt.Errorf("%s/%s: %w", b.name, name, err)
}
