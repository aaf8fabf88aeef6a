// Package gcs is a blob.Bucket on Cloud Storage. Writes carry generation
// preconditions (create-if-absent is DoesNotExist), so two workers can never both
// believe they wrote an output.
package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/visionstack/visionstack/runtime/blob"
)

// Bucket is one Cloud Storage bucket.
type Bucket struct {
	name string
	h    *storage.BucketHandle
}

var _ blob.Bucket = (*Bucket)(nil)

// New wraps the bucket name of client.
func New(client *storage.Client, name string) *Bucket {
	return &Bucket{name: name, h: client.Bucket(name)}
}

// Name of the bucket.
func (b *Bucket) Name() string { return b.name }

// NewReader opens an object with its attributes.
func (b *Bucket) NewReader(ctx context.Context, name string) (io.ReadCloser, blob.Attrs, error) {
	if err := blob.ValidateName(name); err != nil {
		return nil, blob.Attrs{}, err
	}
	obj := b.h.Object(name)
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		return nil, blob.Attrs{}, b.mapErr(name, err)
	}
	// Read only the generation whose size was just checked: a newer one fails the
	// precondition instead of being read unchecked.
	r, err := obj.If(storage.Conditions{GenerationMatch: attrs.Generation}).NewReader(ctx)
	if err != nil {
		return nil, blob.Attrs{}, b.mapErr(name, err)
	}
	return r, toAttrs(attrs), nil
}

// Attrs returns an object's attributes.
func (b *Bucket) Attrs(ctx context.Context, name string) (blob.Attrs, error) {
	if err := blob.ValidateName(name); err != nil {
		return blob.Attrs{}, err
	}
	a, err := b.h.Object(name).Attrs(ctx)
	if err != nil {
		return blob.Attrs{}, b.mapErr(name, err)
	}
	return toAttrs(a), nil
}

// Put writes an object, conditionally when opts says so.
func (b *Bucket) Put(ctx context.Context, name string, data []byte, opts blob.PutOptions) (blob.Attrs, error) {
	if err := blob.ValidateName(name); err != nil {
		return blob.Attrs{}, err
	}
	obj := b.h.Object(name)
	if g := opts.IfGenerationMatch; g != nil {
		if *g == 0 {
			obj = obj.If(storage.Conditions{DoesNotExist: true})
		} else {
			obj = obj.If(storage.Conditions{GenerationMatch: *g})
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // an abandoned write must not complete
	w := obj.NewWriter(ctx)
	w.ContentType = opts.ContentType
	w.Metadata = opts.Metadata
	w.ChunkSize = 0 // one request: outputs are small, and a single upload is atomic
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return blob.Attrs{}, b.mapErr(name, err)
	}
	if err := w.Close(); err != nil {
		return blob.Attrs{}, b.mapErr(name, err)
	}
	return toAttrs(w.Attrs()), nil
}

// Delete removes an object.
func (b *Bucket) Delete(ctx context.Context, name string) error {
	if err := blob.ValidateName(name); err != nil {
		return err
	}
	return b.mapErr(name, b.h.Object(name).Delete(ctx))
}

// List returns a page of the objects under q.Prefix in name order. Cloud Storage
// starts a listing at a name (StartOffset, inclusive): the name After itself is
// passed over.
func (b *Bucket) List(ctx context.Context, q blob.Query) ([]blob.Attrs, error) {
	it := b.h.Objects(ctx, &storage.Query{Prefix: q.Prefix, StartOffset: q.After})
	if q.Limit > 0 {
		it.PageInfo().MaxSize = min(q.Limit+1, 1000) // +1: After itself may come first
	}
	var out []blob.Attrs
	for q.Limit <= 0 || len(out) < q.Limit {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list gs://%s/%s: %w", b.name, q.Prefix, err)
		}
		if q.After != "" && a.Name <= q.After {
			continue
		}
		out = append(out, toAttrs(a))
	}
	return out, nil
}

func toAttrs(a *storage.ObjectAttrs) blob.Attrs {
	if a == nil {
		return blob.Attrs{}
	}
	return blob.Attrs{Name: a.Name, Size: a.Size, Generation: a.Generation, ContentType: a.ContentType,
		Metadata: a.Metadata, Updated: a.Updated}
}

func (b *Bucket) mapErr(name string, err error) error {
	var ge *googleapi.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrObjectNotExist):
		return fmt.Errorf("%w: gs://%s/%s", blob.ErrNotFound, b.name, name)
	case errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed:
		return fmt.Errorf("%w: gs://%s/%s", blob.ErrPrecondition, b.name, name)
	case errors.As(err, &ge) && ge.Code == http.StatusNotFound:
		return fmt.Errorf("%w: gs://%s/%s", blob.ErrNotFound, b.name, name)
	}
	return fmt.Errorf("gs://%s/%s: %w", b.name, name, err)
}
