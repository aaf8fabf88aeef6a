package stack

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v7/go/gcp/storage"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/visionstack/visionstack/runtime/config"
)

// ModelObject is where a model file goes in the model bucket: by its content's
// sha256, so a new file is a new object (and a new revision of the service), the same
// file the same object.
func ModelObject(sum, file string) string { return "onnx/" + sum + "/" + path.Base(file) }

// modelFiles uploads the project's onnx:PATH files (relative to the project file) to
// the model bucket and pins each, by generation and sha256, in the service's
// environment (PinsEnv): the running revision reads exactly the file `up` uploaded,
// and a changed file shows in `preview` as a new object and a new revision.
func (b *builder) modelFiles() error {
	type pin struct{ target, uri, sum string }
	var pins []pin
	var gens []any // each pin's object generation, known once it is uploaded
	for _, a := range b.cfg.Pipeline.Analyses {
		ref, err := config.ParseModel(a.Model)
		if err != nil || ref.Kind != config.ModelONNX || strings.HasPrefix(ref.Target, "gs://") ||
			slices.ContainsFunc(pins, func(p pin) bool { return p.target == ref.Target }) {
			continue
		}
		p := ref.Target
		if !filepath.IsAbs(p) {
			p = filepath.Join(b.cfg.Dir, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("analysis %s: read its model file: %w", a.Name, err)
		}
		h := sha256.Sum256(data)
		sum := hex.EncodeToString(h[:])
		obj := ModelObject(sum, ref.Target)
		o, err := storage.NewBucketObject(b.ctx, b.cfg.Name+"-model-"+sum[:12], &storage.BucketObjectArgs{
			Bucket: b.models.Name, Name: pulumi.String(obj), Source: pulumi.NewFileAsset(p),
			ContentType: pulumi.String("application/octet-stream"),
		}, b.opts()...)
		if err != nil {
			return err
		}
		pins = append(pins, pin{ref.Target, "gs://" + b.names.ModelBucket + "/" + obj, sum})
		gens = append(gens, o.Generation)
	}
	if len(pins) == 0 {
		return nil
	}
	// One JSON of every pin, written once all generations are known.
	b.modelPins = pulumi.All(gens...).ApplyT(func(v []any) (string, error) {
		m := map[string]map[string]any{}
		for i, p := range pins {
			m[p.target] = map[string]any{"uri": p.uri, "generation": v[i], "sha256": p.sum}
		}
		raw, err := json.Marshal(m)
		return string(raw), err
	}).(pulumi.StringOutput)
	return nil
}
