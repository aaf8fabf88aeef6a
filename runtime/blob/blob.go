// Package blob is the object store the pipeline reads originals from and writes
// outputs to: a Cloud Storage bucket in the cloud, a directory locally.
// Backends live in sibling packages (blob/local, blob/gcs); blobtest is their
// shared conformance suite.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors every backend maps its own onto.
var (
	ErrNotFound     = errors.New("object not found")
	ErrPrecondition = errors.New("object generation precondition failed")
	ErrInvalidName  = errors.New("invalid object name")
	ErrTooLarge     = errors.New("object larger than allowed")
)

// Attrs describe a stored object.
type Attrs struct {
	Name        string
	Size        int64
	Generation  int64 // changes on every write; the idempotency key uses it
	ContentType string
	Metadata    map[string]string
	Updated     time.Time
}

// PutOptions guard and describe a write.
type PutOptions struct {
	// IfGenerationMatch makes the write conditional: 0 means "only if absent";
	// nil writes unconditionally.
	IfGenerationMatch *int64
	ContentType       string
	Metadata          map[string]string
}

// DoesNotExist is the precondition that makes Put a create-if-absent.
func DoesNotExist() *int64 { var z int64; return &z }

// Bucket is one bucket (incoming, processed or quarantine).
type Bucket interface {
	// Name is the bucket's name, for keys and messages.
	Name() string
	// NewReader opens an object; Attrs come with it so callers can check Size first.
	NewReader(ctx context.Context, name string) (io.ReadCloser, Attrs, error)
	// Attrs returns an object's attributes or ErrNotFound.
	Attrs(ctx context.Context, name string) (Attrs, error)
	// Put writes data as name, atomically: readers see the old or the new object.
	Put(ctx context.Context, name string, data []byte, opts PutOptions) (Attrs, error)
	// Delete removes an object; deleting a missing object is ErrNotFound.
	Delete(ctx context.Context, name string) error
	// List returns a page of the objects whose names start with q.Prefix, in name
	// order: those after q.After, at most q.Limit of them (≤ 0: all). A caller going
	// through a large bucket passes the last name of each page as the next After, so
	// it never holds more than a page.
	List(ctx context.Context, q Query) ([]Attrs, error)
}

// Query selects a page of a bucket's objects (Bucket.List).
type Query struct {
	Prefix string
	After  string // only names sorting after this one ("": from the first)
	Limit  int    // at most this many (≤ 0: all)
}

// ReadAll reads an object whole, refusing objects larger than limit (limit ≤ 0: no limit)
// before reading them, and again while reading in case the object grew.
func ReadAll(ctx context.Context, b Bucket, name string, limit int64) ([]byte, Attrs, error) {
	r, attrs, err := b.NewReader(ctx, name)
	if err != nil {
		return nil, attrs, err
	}
	defer r.Close()
	if limit > 0 && attrs.Size > limit {
		return nil, attrs, fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooLarge, name, attrs.Size, limit)
	}
	lr := io.Reader(r)
	if limit > 0 {
		lr = io.LimitReader(r, limit+1)
	}
	data, err := io.ReadAll(lr)
	if err != nil {
		return nil, attrs, fmt.Errorf("read %s/%s: %w", b.Name(), name, err)
	}
	if limit > 0 && int64(len(data)) > limit {
		return nil, attrs, fmt.Errorf("%w: %s exceeds %d bytes", ErrTooLarge, name, limit)
	}
	return data, attrs, nil
}

// MaxNameBytes is Cloud Storage's limit on object names.
const MaxNameBytes = 1024

// ValidateName applies the rules every backend enforces, the strictest of Cloud
// Storage's and a filesystem's, so a name that works locally works in the cloud and
// no name can address anything outside its bucket.
func ValidateName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidName, name, why) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxNameBytes:
		return bad("longer than 1024 bytes")
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	case strings.HasPrefix(name, "/"):
		return bad("absolute")
	case strings.HasPrefix(name, ".well-known/acme-challenge/"):
		return bad("reserved by Cloud Storage")
	case strings.Contains(name, `\`):
		return bad(`contains '\'`)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x7f && r <= 0x9f) {
			return bad("contains a control character")
		}
	}
	for _, seg := range strings.Split(name, "/") {
		switch seg {
		case "":
			return bad("has an empty path segment")
		case ".", "..":
			return bad("has a '.' or '..' segment")
		}
	}
	return nil
}
