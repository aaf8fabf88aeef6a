package kserve_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/model"
	"github.com/visionstack/visionstack/runtime/model/builtin"
	"github.com/visionstack/visionstack/runtime/model/kserve"
	"github.com/visionstack/visionstack/testdata/photos"
)

// v2Server is a small Open Inference server around the built-in model, answering in
// either output style, failing the first `unavailable` calls with 503.
func v2Server(t *testing.T, named bool, unavailable int32) (*httptest.Server, *atomic.Int32) {
	m, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("POST /v2/models/faces/infer", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= unavailable {
			http.Error(w, "loading", http.StatusServiceUnavailable)
			return
		}
		var req kserve.InferRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 || req.Inputs[0].Datatype != "BYTES" {
			http.Error(w, "bad request", 400)
			return
		}
		var contents []string
		_ = json.Unmarshal(req.Inputs[0].Data, &contents)
		var ins []model.Instance
		for _, c := range contents {
			ins = append(ins, model.Instance{Content: c})
		}
		preds, err := m.Predict(r.Context(), ins, model.Parameters{ConfidenceThreshold: 0.5, MaxPredictions: 10})
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
		var resp kserve.InferResponse
		if named {
			p := preds[0]
			var flat []float64
			for _, b := range p.BBoxes {
				flat = append(flat, b[:]...)
			}
			resp.Outputs = []kserve.Tensor{
				{Name: "displayNames", Datatype: "BYTES", Shape: []int{len(p.DisplayNames)}, Data: raw(p.DisplayNames)},
				{Name: "confidences", Datatype: "FP32", Shape: []int{len(p.Confidences)}, Data: raw(p.Confidences)},
				{Name: "bboxes", Datatype: "FP32", Shape: []int{len(p.BBoxes), 4}, Data: raw(flat)},
			}
		} else {
			var docs []string
			for _, p := range preds {
				docs = append(docs, string(raw(p)))
			}
			resp.Outputs = []kserve.Tensor{{Name: "predictions", Datatype: "BYTES", Shape: []int{len(docs)}, Data: raw(docs)}}
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs, &calls
}

func instance(t *testing.T) model.Instance {
	img, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "grace_hopper.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	return model.Instance{Content: base64.StdEncoding.EncodeToString(img)}
}

func TestPredictBothOutputStyles(t *testing.T) {
	for _, named := range []bool{false, true} {
		hs, _ := v2Server(t, named, 0)
		m, err := kserve.New(hs.URL+"/v2/models/faces", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		preds, err := m.Predict(context.Background(), []model.Instance{instance(t)}, model.Parameters{ConfidenceThreshold: 0.5})
		if err != nil || len(preds) != 1 || len(preds[0].BBoxes) == 0 || preds[0].Validate(true) != nil {
			t.Fatalf("named=%v: %+v %v", named, preds, err)
		}
	}
}

// A brief 503 is retried inside the call (it must not cost a delivery attempt); one
// that lasts past the attempts is transient.
func TestTransientRetriedThenClassified(t *testing.T) {
	hs, calls := v2Server(t, false, 2)
	m, _ := kserve.New(hs.URL+"/v2/models/faces", nil)
	m.WithBackoff(model.Backoff{Attempts: 4, Min: time.Millisecond, Max: 5 * time.Millisecond})
	if _, err := m.Predict(context.Background(), []model.Instance{instance(t)}, model.Parameters{}); err != nil || calls.Load() != 3 {
		t.Fatalf("two 503s then an answer: %v after %d calls, want success after 3", err, calls.Load())
	}
	hs, calls = v2Server(t, false, 100)
	m, _ = kserve.New(hs.URL+"/v2/models/faces", nil)
	m.WithBackoff(model.Backoff{Attempts: 3, Min: time.Millisecond, Max: 5 * time.Millisecond})
	_, err := m.Predict(context.Background(), []model.Instance{instance(t)}, model.Parameters{})
	if !errors.Is(err, model.ErrTransient) || calls.Load() != 3 {
		t.Fatalf("a lasting 503 = %v after %d calls, want transient after 3", err, calls.Load())
	}
}

func TestErrorsClassified(t *testing.T) {
	hs, _ := v2Server(t, false, 0)
	m, _ := kserve.New(hs.URL+"/v2/models/faces", nil)
	_, err := m.Predict(context.Background(), []model.Instance{{Content: "***"}}, model.Parameters{})
	if !fault.IsPermanent(err) {
		t.Fatalf("400 = %v, want permanent", err)
	}
	if _, err := kserve.New("http://host/models/x", nil); err == nil {
		t.Fatal("accepted a URL without /v2/models/")
	}
}

// The model version a v2 server reports is kept with each prediction.
func TestModelVersionKept(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		doc := `{"ids":["0"],"displayNames":["face"],"confidences":[0.9],"bboxes":[[0.1,0.2,0.3,0.4]]}`
		data, _ := json.Marshal([]string{doc})
		_ = json.NewEncoder(w).Encode(kserve.InferResponse{ModelName: "faces", ModelVersion: "2",
			Outputs: []kserve.Tensor{{Name: "predictions", Shape: []int{1}, Datatype: "BYTES", Data: data}}})
	}))
	defer hs.Close()
	m, _ := kserve.New(hs.URL+"/v2/models/faces", nil)
	preds, err := m.Predict(context.Background(), []model.Instance{{Content: "aGk="}}, model.Parameters{})
	if err != nil || len(preds) != 1 || preds[0].Version != "2" || preds[0].Deployed != "faces" {
		t.Fatalf("%+v %v", preds, err)
	}
}
