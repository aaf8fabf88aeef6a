package vertex

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
)

// StageONNX readies a model block whose File is an ONNX file for Vertex AI: the file
// goes to the model bucket under its content's sha256 (once: the same file is the
// same object), becomes the model's artifact directory, and the container (the
// visionstack image) runs `model serve --model onnx:BASE` on the copy Vertex makes of
// that directory ($AIP_STORAGE_URI), with the block's onnx settings. dir is the
// project file's directory. It returns the block to upload.
func StageONNX(ctx context.Context, models blob.Bucket, dir string, m config.ModelDeploy) (config.ModelDeploy, error) {
	if m.File == "" {
		return m, nil
	}
	p := m.File
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return m, fmt.Errorf("model.file: %w", err)
	}
	sum := sha256.Sum256(data)
	base := path.Base(filepath.ToSlash(m.File))
	object := "onnx/" + hex.EncodeToString(sum[:]) + "/" + base
	_, err = models.Put(ctx, object, data, blob.PutOptions{IfGenerationMatch: blob.DoesNotExist(), ContentType: "application/octet-stream"})
	if err != nil && !errors.Is(err, blob.ErrPrecondition) { // there already: the same bytes, by its name
		return m, fmt.Errorf("upload %s to gs://%s: %w", m.File, models.Name(), err)
	}
	m.ArtifactURI = "gs://" + models.Name() + "/" + path.Dir(object) + "/"
	m.Args = []string{"model", "serve", "--model", "onnx:" + base}
	if m.ONNX != nil {
		raw, err := json.Marshal(m.ONNX)
		if err != nil {
			return m, err
		}
		m.Args = append(m.Args, "--onnx", string(raw))
	}
	if m.PredictRoute == "" {
		m.PredictRoute = "/predict"
	}
	if m.HealthRoute == "" {
		m.HealthRoute = "/health"
	}
	if m.Port == 0 {
		m.Port = 8080
	}
	return m, nil
}
