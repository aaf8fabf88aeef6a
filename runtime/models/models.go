// Package models builds the model clients a project's analyses name: the built-in
// models in-process, a team's ONNX file in-process, Vertex AI endpoints through the
// aiplatform client, KServe / Triton models over the Open Inference (v2) protocol.
package models

import (
	"context"
	"fmt"
	"os"

	"github.com/visionstack/visionstack/internal/closers"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/model/kserve"
	"github.com/visionstack/visionstack/runtime/model/vertex"
)

// EndpointEnv names the variable holding this project's Vertex endpoint
// (projects/P/locations/L/endpoints/E) for analyses that say model: vertex:endpoint.
// The stack sets it on the Cloud Run service.
const EndpointEnv = "VISIONSTACK_VERTEX_ENDPOINT"

// Options for Build.
type Options struct {
	// BuiltinOnly refuses remote models (local mode runs without a cloud).
	BuiltinOnly bool
}

// Build returns a predictor per distinct model reference, and a func closing them.
func Build(ctx context.Context, cfg *config.Project, o Options) (map[string]model.Predictor, func() error, error) {
	out := map[string]model.Predictor{}
	var opened closers.Stack
	closeAll := opened.Close
	type use struct {
		Name, Model string
		analysis    config.Analysis // whose settings (onnx:) the model runs with
	}
	var uses []use
	for _, a := range cfg.Pipeline.Analyses {
		uses = append(uses, use{a.Name, a.Model, a})
		if a.Shadow != "" {
			uses = append(uses, use{a.Name + " (shadow)", a.Shadow, a})
		}
	}
	for _, a := range uses {
		if _, ok := out[a.Model]; ok {
			continue
		}
		ref, err := config.ParseModel(a.Model)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if o.BuiltinOnly && ref.Kind != config.ModelBuiltin && ref.Kind != config.ModelONNX {
			closeAll()
			return nil, nil, fmt.Errorf("analysis %s: model %s needs the cloud runtime (visionstack serve --backend cloud); local mode runs builtin and onnx models", a.Name, a.Model)
		}
		switch ref.Kind {
		case config.ModelBuiltin:
			m, err := builtin.New(builtin.DefaultParams)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			out[a.Model] = m
		case config.ModelVertex:
			ep := ref.Target
			if ep == "endpoint" {
				if ep = os.Getenv(EndpointEnv); ep == "" {
					closeAll()
					return nil, nil, fmt.Errorf("analysis %s uses this project's Vertex endpoint: set %s=projects/P/locations/L/endpoints/E (the stack sets it on Cloud Run)", a.Name, EndpointEnv)
				}
			}
			m, err := vertex.New(ctx, vertex.Options{Endpoint: ep})
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			out[a.Model] = m
			opened.Add(m.Close)
		case config.ModelONNX:
			m, err := OpenONNX(ctx, cfg.Dir, a.analysis, ref.Target)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			out[a.Model] = m
			opened.Add(m.Close)
		case config.ModelKServe:
			m, err := kserve.New(ref.Target, nil)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			out[a.Model] = m
		default:
			closeAll()
			return nil, nil, fmt.Errorf("analysis %s: %s models are not supported by this runtime", a.Name, ref.Kind)
		}
	}
	return out, closeAll, nil
}
