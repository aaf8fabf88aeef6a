package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"cloud.google.com/go/storage"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/model/onnx"
)

// PinsEnv names the variable that pins gs:// model files: a JSON object from each
// onnx:gs://… reference to the object generation and sha256 the stack uploaded. On
// Cloud Run a new file is a new revision (the pin changes), and a file changed behind
// the stack's back is refused instead of run.
const PinsEnv = "VISIONSTACK_ONNX_PINS"

// Pin is a model file's version in its bucket: where the stack uploaded the file an
// onnx: reference names (URI, for a path relative to the project file), or the
// generation of a gs:// reference, and its sha256.
type Pin struct {
	URI        string `json:"uri,omitempty"`
	Generation int64  `json:"generation"`
	SHA256     string `json:"sha256"`
}

// MaxModelBytes bounds a model file read into memory.
const MaxModelBytes = 2 << 30

// OpenONNX loads onnx:target for analysis a (its onnx settings, its format checked
// against the model's outputs): the file (relative to dir, the project file's, or
// gs://), and the version results record: the file's name and content hash.
func OpenONNX(ctx context.Context, dir string, a config.Analysis, target string) (*onnx.Model, error) {
	analysis, format := a.Name, a.Format
	data, err := ReadModelFile(ctx, dir, target)
	if err != nil {
		return nil, fmt.Errorf("analysis %s: %w", analysis, err)
	}
	var set config.ONNX
	if a.ONNX != nil {
		set = *a.ONNX
	}
	sum := sha256.Sum256(data)
	o := onnx.Options{Format: set.Format, Resize: set.Resize, Channels: set.Channels, Mean: set.Mean, Std: set.Std,
		Labels: set.Labels, Width: set.Width, Height: set.Height,
		Version: "onnx:" + filepath.Base(target) + "@" + hex.EncodeToString(sum[:6])}
	if set.Scale != nil {
		o.Scale = *set.Scale
	}
	m, err := onnx.New(data, o)
	if err != nil {
		return nil, fmt.Errorf("analysis %s (onnx:%s): %w", analysis, target, err)
	}
	classifies := m.Format() == onnx.FormatClassification
	if format != "" && classifies != (format == "automl-classification") {
		m.Close()
		want := "automl-detection"
		if classifies {
			want = "automl-classification"
		}
		return nil, fmt.Errorf("analysis %s: onnx:%s is read as %s, which makes %s: set the analysis' format: %s", analysis, target, m.Format(), strings.TrimPrefix(want, "automl-"), want)
	}
	return m, nil
}

// ReadModelFile reads onnx:target: a path relative to dir, or gs://BUCKET/OBJECT
// (through the Cloud Storage client, which honours STORAGE_EMULATOR_HOST), checked
// against its pin when PinsEnv has one.
func ReadModelFile(ctx context.Context, dir, target string) ([]byte, error) {
	var pin *Pin
	if raw := os.Getenv(PinsEnv); raw != "" {
		var pins map[string]Pin
		if err := json.Unmarshal([]byte(raw), &pins); err != nil {
			return nil, fmt.Errorf("%s: %w", PinsEnv, err)
		}
		if p, ok := pins[target]; ok {
			pin = &p
		}
	}
	uri := target
	if pin != nil && pin.URI != "" {
		uri = pin.URI // on Cloud Run: the copy `up` uploaded
	}
	if !strings.HasPrefix(uri, "gs://") {
		p := target
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read model file: %w", err)
		}
		return data, nil
	}
	bucket, object, _ := strings.Cut(strings.TrimPrefix(uri, "gs://"), "/")
	c, err := storage.NewClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", uri, err)
	}
	defer c.Close()
	obj := c.Bucket(bucket).Object(object)
	if pin != nil && pin.Generation != 0 {
		obj = obj.Generation(pin.Generation)
	}
	r, err := obj.NewReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", uri, err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, MaxModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", target, err)
	}
	if len(data) > MaxModelBytes {
		return nil, errors.New("read " + target + ": larger than 2 GiB, the most ONNX's protobuf holds")
	}
	if pin != nil && pin.SHA256 != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != pin.SHA256 {
			return nil, fmt.Errorf("read %s: its sha256 is %s, the stack pinned %s: the file changed outside the stack; run visionstack up", target, got, pin.SHA256)
		}
	}
	return data, nil
}
