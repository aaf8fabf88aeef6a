// Package modelserver serves a model.Predictor behind the Vertex AI custom container
// contract, so the built-in face model can be deployed to a Vertex endpoint as is:
// it listens on $AIP_HTTP_PORT (8080), predicts on $AIP_PREDICT_ROUTE and answers
// health on $AIP_HEALTH_ROUTE. It also answers the public
// /v1/projects/P/locations/L/endpoints/E:predict path, so Vertex clients can be
// pointed at it locally.
package modelserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/model"
)

// Routes follow Vertex AI's environment variables.
type Routes struct {
	Port    string // AIP_HTTP_PORT, default 8080
	Predict string // AIP_PREDICT_ROUTE, default /predict
	Health  string // AIP_HEALTH_ROUTE, default /health
}

// RoutesFromEnv reads the AIP_* variables Vertex AI sets in a custom container.
func RoutesFromEnv() Routes {
	r := Routes{Port: os.Getenv("AIP_HTTP_PORT"), Predict: os.Getenv("AIP_PREDICT_ROUTE"), Health: os.Getenv("AIP_HEALTH_ROUTE")}
	if r.Port == "" {
		r.Port = "8080"
	}
	if r.Predict == "" {
		r.Predict = "/predict"
	}
	if r.Health == "" {
		r.Health = "/health"
	}
	return r
}

// PredictRequest is Vertex AI's predict body.
type PredictRequest struct {
	Instances  []model.Instance `json:"instances"`
	Parameters model.Parameters `json:"parameters"`
}

// PredictResponse is Vertex AI's predict answer.
type PredictResponse struct {
	Predictions []model.Prediction `json:"predictions"`
	// DeployedModelID is Vertex AI's to set: it adds the real one to what the
	// container answers, so the container's own route leaves it out; the public
	// endpoint path (Vertex's front, stood in for locally) sets one.
	DeployedModelID string `json:"deployedModelId,omitempty"`
}

// MaxRequestBytes mirrors the cap of Vertex AI's shared public endpoints.
const MaxRequestBytes = 1_500_000

// Options bound what one server takes on.
type Options struct {
	Routes  Routes
	ModelID string // reported as deployedModelId on the public endpoint path only
	Logger  *slog.Logger
	// MaxInstances is the most instances one request may carry (default
	// DefaultMaxInstances): 413 beyond.
	MaxInstances int
	// Limits gate each instance's header before anything decodes (size, format,
	// pixels, dimensions): 400 when one fails.
	Limits imaging.Limits
	// Admit takes room in a pixel budget for a request's images (imaging.Header.Cost
	// each, added up) before they decode, waiting its turn: 429 with Retry-After when
	// there is none in time, 413 when the request is larger than the whole budget.
	Admit func(ctx context.Context, pixels int64) (release func(), err error)
	// Budget is the whole budget Admit hands out (for the 413; 0: no such check).
	Budget int64
}

// DefaultMaxInstances is the instance cap when Options say none.
const DefaultMaxInstances = 8

// Handler serves p as o says.
func Handler(p model.Predictor, o Options) http.Handler {
	log, routes, modelID := o.Logger, o.Routes, o.ModelID
	if log == nil {
		log = slog.Default()
	}
	if o.MaxInstances <= 0 {
		o.MaxInstances = DefaultMaxInstances
	}
	mux := http.NewServeMux()
	predict := func(w http.ResponseWriter, r *http.Request, modelID string) {
		var req PredictRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		if err := dec.Decode(&req); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes: send a smaller image", MaxRequestBytes))
				return
			}
			writeError(w, http.StatusBadRequest, "body must be {\"instances\": [{\"content\": base64}], \"parameters\": {...}}: "+err.Error())
			return
		}
		if len(req.Instances) == 0 {
			writeError(w, http.StatusBadRequest, "no instances")
			return
		}
		if len(req.Instances) > o.MaxInstances {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d instances in one request, at most %d (model serve --max-instances): send fewer a request", len(req.Instances), o.MaxInstances))
			return
		}
		// Every image's header is read, and the request's pixels admitted, before any
		// image decodes: an oversized request costs a header read, not a decode.
		var cost int64
		for i, in := range req.Instances {
			data, err := base64.StdEncoding.DecodeString(in.Content)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("instance %d: content is not base64: %v", i, err))
				return
			}
			h, err := o.Limits.Check(data)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("instance %d: %v", i, err))
				return
			}
			cost += h.Cost()
		}
		if o.Budget > 0 && cost > o.Budget {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request's images decode to %d pixels, more than this server's budget of %d (model serve --max-inflight-pixels): send fewer or smaller images", cost, o.Budget))
			return
		}
		if o.Admit != nil {
			release, err := o.Admit(r.Context(), cost)
			if err != nil {
				w.Header().Set("Retry-After", "2")
				writeError(w, http.StatusTooManyRequests, "busy with other requests' images ("+err.Error()+"): try again")
				return
			}
			defer release()
		}
		preds, err := p.Predict(r.Context(), req.Instances, req.Parameters)
		if err != nil {
			code := http.StatusInternalServerError
			if fault.IsPermanent(err) {
				code = http.StatusBadRequest
			} else if errors.Is(err, model.ErrTransient) {
				code = http.StatusServiceUnavailable
			}
			log.Warn("predict failed", "err", err, "status", code)
			writeError(w, code, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, PredictResponse{Predictions: preds, DeployedModelID: modelID})
	}
	mux.HandleFunc("POST "+routes.Predict, func(w http.ResponseWriter, r *http.Request) { predict(w, r, "") })
	mux.HandleFunc("GET "+routes.Health, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	// The public endpoint path, e.g. /v1/projects/p/locations/l/endpoints/e:predict
	// (v1beta1 too: the aiplatform REST client speaks it).
	mux.HandleFunc("POST /{version}/projects/{p}/locations/{l}/endpoints/{e}", func(w http.ResponseWriter, r *http.Request) {
		if v := r.PathValue("version"); v != "v1" && v != "v1beta1" {
			writeError(w, http.StatusNotFound, "API version "+v+" is not served: use v1 or v1beta1")
			return
		}
		if !strings.HasSuffix(r.PathValue("e"), ":predict") {
			writeError(w, http.StatusNotFound, "only :predict is served")
			return
		}
		predict(w, r, modelID)
	})
	return mux
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
