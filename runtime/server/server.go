// Package server is the HTTP face of the runtime, the Cloud Run entrypoint:
//
//	POST /v1/images:analyze   synchronous path: prepare + the analyses marked sync,
//	                          answered at once; the original is stored and a task
//	                          queued so the push path does the rest
//	POST /v1/pubsub/push      asynchronous path: a Pub/Sub push envelope carrying a
//	                          Cloud Storage OBJECT_FINALIZE notification or a task;
//	                          2xx only after the job reached a final state
//	GET  /healthz, /readyz    liveness and readiness (not ready while draining)
//	GET  /metrics             Prometheus metrics (when Options.Metrics is set)
//	GET  /review/             the review page (when Options.Review is set)
//
// Every request runs in a span continuing the caller's W3C trace context, and is
// logged with Cloud Logging's httpRequest fields.
//
// It depends on interfaces only; the backends are chosen by whoever builds it.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/visionstack/visionstack/runtime/analyze"
	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/fault"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/queue"
	"github.com/visionstack/visionstack/runtime/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Options configure a Server.
type Options struct {
	Pipeline  *pipeline.Pipeline
	Incoming  blob.Bucket     // where the sync path stores originals
	Publisher queue.Publisher // where the sync path queues the rest
	WorkTopic string          // topic the push subscription reads
	Admission *Admission      // nil: no admission control
	MaxBody   int64           // request body cap (the prepare maxBytes)
	// PushAuth, when set, verifies the OIDC token of every push request.
	PushAuth *PushAuth
	// RetryAfter is suggested to clients turned away by admission control.
	RetryAfter time.Duration
	Logger     *slog.Logger
	// Metrics serves GET /metrics (nil: not served).
	Metrics http.Handler
	// Review serves the review page under /review/ (nil: not served).
	Review http.Handler
}

// Server serves the endpoints.
type Server struct {
	o        Options
	mux      *http.ServeMux
	draining atomic.Bool
}

// New builds a Server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 5 * time.Second
	}
	s := &Server{o: o, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /v1/images:analyze", s.analyze)
	s.mux.HandleFunc("POST /v1/pubsub/push", s.push)
	// The API answers JSON to every request, a wrong method or path included.
	for _, p := range []string{"/v1/images:analyze", "/v1/pubsub/push"} {
		s.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "POST")
			s.fail(w, r, &httpError{code: http.StatusMethodNotAllowed, msg: r.Method + " " + r.URL.Path + ": use POST"})
		})
	}
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, &httpError{code: http.StatusNotFound, msg: r.URL.Path + ": no such API; the API is POST /v1/images:analyze"})
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	s.mux.HandleFunc("GET /readyz", s.ready)
	if o.Metrics != nil {
		s.mux.Handle("GET /metrics", o.Metrics)
	}
	if o.Review != nil {
		s.mux.Handle("/review/", o.Review)
		s.mux.Handle("GET /{$}", http.RedirectHandler("/review/", http.StatusFound))
	}
	return s
}

// ServeHTTP implements http.Handler: a span per request and an access log line.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := telemetry.ExtractHTTP(r.Context(), r.Header)
	ctx, span := s.o.Pipeline.Telemetry().Tracer().Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	s.mux.ServeHTTP(rec, r.WithContext(ctx))
	span.SetAttributes(attribute.Int("http.response.status_code", rec.code))
	if quiet(r.URL.Path) && rec.code < 400 {
		return // probes and scrapes every few seconds would drown the log
	}
	lvl := slog.LevelInfo
	if rec.code >= 500 {
		lvl = slog.LevelError
	} else if rec.code >= 400 {
		lvl = slog.LevelWarn
	}
	s.o.Logger.LogAttrs(ctx, lvl, r.Method+" "+r.URL.Path+" "+strconv.Itoa(rec.code), slog.Any(telemetry.LogHTTPRequest, HTTPRequest{
		RequestMethod: r.Method, RequestURL: r.URL.String(), Status: rec.code, ResponseSize: strconv.FormatInt(rec.size, 10),
		RequestSize: strconv.FormatInt(max(r.ContentLength, 0), 10), UserAgent: r.UserAgent(), RemoteIP: r.RemoteAddr,
		Protocol: r.Proto, Latency: fmt.Sprintf("%.6fs", time.Since(start).Seconds()),
	}))
}

func quiet(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics" || strings.HasPrefix(path, "/review/")
}

// HTTPRequest is Cloud Logging's httpRequest field
// (https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry#HttpRequest).
type HTTPRequest struct {
	RequestMethod string `json:"requestMethod"`
	RequestURL    string `json:"requestUrl"`
	RequestSize   string `json:"requestSize"`
	Status        int    `json:"status"`
	ResponseSize  string `json:"responseSize"`
	UserAgent     string `json:"userAgent,omitempty"`
	RemoteIP      string `json:"remoteIp,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
	Latency       string `json:"latency"`
}

// recorder remembers the status and size of a response.
type recorder struct {
	http.ResponseWriter
	code  int
	size  int64
	wrote bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.size += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (flush, deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Drain marks the server not ready, so load balancers stop sending new work while
// in-flight requests finish.
func (s *Server) Drain() { s.draining.Store(true) }

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

// AnalyzeResponse is the synchronous API's answer.
type AnalyzeResponse struct {
	Key string `json:"key"`
	// Name is the file name the form gave the image, as the job records it.
	Name    string        `json:"name,omitempty"`
	Format  string        `json:"format"`
	Width   int           `json:"width"`
	Height  int           `json:"height"`
	Results []meta.Result `json:"results"`
	// Queued says the remaining steps (async analyses, transform, act) were handed to
	// the push path under Key.
	Queued bool `json:"queued"`
	// Timings of this request's parts, in milliseconds.
	Timings Timings `json:"timingsMs"`
}

// Timings split a sync request's time.
type Timings struct {
	Prepare float64 `json:"prepare"`
	Analyze float64 `json:"analyze"`
	HandOff float64 `json:"handOff"`
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

func (s *Server) analyze(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Decided before a byte of the body is read: a body that cannot fit, or a request
	// that would only queue behind a full budget, costs no memory and no read time.
	if s.o.MaxBody > 0 && r.ContentLength > s.o.MaxBody {
		s.fail(w, r, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("image of %d bytes is larger than %d bytes", r.ContentLength, s.o.MaxBody)})
		return
	}
	if s.o.Admission.Full() {
		s.fail(w, r, fmt.Errorf("%w: no room left; try again after Retry-After", pipeline.ErrOverloaded))
		return
	}
	data, name, err := s.readImage(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := s.o.Pipeline
	key := pipeline.ContentKey(data)
	ctx = telemetry.WithKey(ctx, key)
	r = r.WithContext(ctx)
	h, err := p.Preparer().Limits().Check(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	release, err := s.o.Admission.Admit(ctx, h.Cost())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	start := time.Now()
	img, err := p.Preparer().Prepare(data, 0) // the model input only: the push path transforms
	var tm Timings
	tm.Prepare = msSince(start)
	if err != nil {
		release()
		s.fail(w, r, err)
		return
	}
	img.Close()
	start = time.Now()
	results, err := p.Analyzer().Run(ctx, img.Base64, img.MimeType, analyze.ModeSync)
	tm.Analyze = msSince(start)
	release()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Hand the rest over before answering: once the client has its answer, the image
	// must already be safe in the incoming bucket and its task queued.
	start = time.Now()
	if err := s.handOff(ctx, key, h.Format, name, data, results); err != nil {
		s.fail(w, r, err)
		return
	}
	tm.HandOff = msSince(start)
	writeJSON(w, http.StatusOK, AnalyzeResponse{Key: key, Name: name, Format: h.Format, Width: img.Width, Height: img.Height,
		Results: rounded(meta.WithoutShadows(results)), Queued: true, Timings: tm})
}

// rounded is results with box coordinates and confidences to 4 decimals (a
// hundredth of a pixel at 1024 px) for the API's answer; the store keeps them whole.
func rounded(results []meta.Result) []meta.Result {
	r4 := func(v float64) float64 { return math.Round(v*1e4) / 1e4 }
	out := make([]meta.Result, len(results))
	for i, r := range results {
		ds := make([]meta.Detection, len(r.Detections))
		for j, d := range r.Detections {
			d.Confidence = r4(d.Confidence)
			if d.Box != nil {
				b := meta.Box{XMin: r4(d.Box.XMin), XMax: r4(d.Box.XMax), YMin: r4(d.Box.YMin), YMax: r4(d.Box.YMax)}
				d.Box = &b
			}
			ds[j] = d
		}
		r.Detections = ds
		out[i] = r
	}
	return out
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// handOff stores the original under its content hash (create-if-absent: a repeat
// upload is one object), records the job with the sync results (the push path reads
// them from the store, never from the message) and queues its task.
func (s *Server) handOff(ctx context.Context, key, format, upload string, data []byte, done []meta.Result) error {
	name := pipeline.SyncObject(key, format)
	md := map[string]string{pipeline.OriginMetadata: pipeline.OriginSync}
	if upload != "" {
		md[pipeline.NameMetadata] = upload
	}
	put := func(gen *int64) (blob.Attrs, error) {
		return s.o.Incoming.Put(ctx, name, data, blob.PutOptions{IfGenerationMatch: gen, ContentType: "image/" + format, Metadata: md})
	}
	attrs, err := put(blob.DoesNotExist())
	if errors.Is(err, blob.ErrPrecondition) {
		// Already there: a repeat upload of the same bytes, or bytes someone wrote
		// under this name. The name says what it holds, so it is checked: what does
		// not hash to it is replaced (on its generation) by the bytes just analysed.
		attrs, err = s.keep(ctx, name, key, put)
	}
	if err != nil {
		return fmt.Errorf("store original: %w", err)
	}
	src := meta.Source{Bucket: s.o.Incoming.Name(), Object: name, Generation: attrs.Generation}
	if err := s.o.Pipeline.Meta().Prime(ctx, key, src, done); err != nil {
		return fmt.Errorf("record sync results: %w", err)
	}
	return pipeline.Publish(ctx, s.o.Publisher, s.o.WorkTopic, pipeline.Task{Key: key, Source: src})
}

// keep returns the attributes of the object under content key name when it holds
// those bytes, and otherwise replaces it with the bytes put writes.
func (s *Server) keep(ctx context.Context, name, key string, put func(gen *int64) (blob.Attrs, error)) (blob.Attrs, error) {
	// Larger than any upload (MaxBody): not these bytes, and not read.
	held, attrs, err := pipeline.ObjectContentKey(ctx, s.o.Incoming, name, s.o.MaxBody)
	if err != nil && !errors.Is(err, pipeline.ErrTooLarge) {
		return blob.Attrs{}, err
	}
	if err == nil && held == pipeline.BaseKey(key) {
		return attrs, nil
	}
	s.o.Logger.WarnContext(ctx, "the object under a content key held other bytes: replaced by the ones analysed", "object", name, "generation", attrs.Generation)
	return put(&attrs.Generation)
}

// readImage takes raw bytes (any image/* or octet-stream body) or the one file of a
// multipart form, capped at MaxBody, with the file name the form gave it
// (pipeline.UploadName; "" for a raw body).
func (s *Server) readImage(w http.ResponseWriter, r *http.Request) ([]byte, string, error) {
	body := http.MaxBytesReader(w, r.Body, s.o.MaxBody)
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		data, err := readAll(body, s.o.MaxBody)
		return data, "", err
	}
	mr := multipart.NewReader(body, params["boundary"])
	var data []byte
	var name string
	for {
		part, err := mr.NextPart()
		switch {
		case errors.Is(err, io.EOF) && data != nil:
			return data, name, nil
		case err != nil && data != nil:
			return nil, "", bodyError(err, s.o.MaxBody)
		case err != nil:
			return nil, "", badRequest("multipart body has no file part: send the image as a form file (e.g. curl -F image=@photo.jpg)")
		}
		if part.FileName() == "" && part.FormName() != "image" {
			continue
		}
		// One image a request: a second would get no answer while the caller thinks
		// both were analysed.
		if data != nil {
			return nil, "", badRequest(fmt.Sprintf("multipart body has a second file (%q): send one image a request", part.FileName()))
		}
		if data, err = readAll(part, s.o.MaxBody); err != nil {
			return nil, "", err
		}
		name = pipeline.UploadName(part.FileName())
	}
}

// readAll reads an image body.
func readAll(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, bodyError(err, limit)
	}
	return data, nil
}

// bodyError answers a failed body read: 413 past the cap, 400 otherwise.
func bodyError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("image larger than %d bytes", limit)}
	}
	return badRequest("read body: " + err.Error())
}

// PushEnvelope is what a Pub/Sub push subscription POSTs.
type PushEnvelope struct {
	Message struct {
		Data        []byte            `json:"data"` // base64 in JSON
		Attributes  map[string]string `json:"attributes"`
		MessageID   string            `json:"messageId"`
		PublishTime time.Time         `json:"publishTime"`
	} `json:"message"`
	Subscription    string `json:"subscription"`
	DeliveryAttempt int    `json:"deliveryAttempt"`
}

// push handles one Pub/Sub push delivery. 204 acks it; 4xx/5xx make Pub/Sub redeliver
// with backoff until the dead-letter policy takes it.
func (s *Server) push(w http.ResponseWriter, r *http.Request) {
	if a := s.o.PushAuth; a != nil {
		if err := a.check(r); err != nil {
			s.fail(w, r, &httpError{code: http.StatusUnauthorized, msg: err.Error()})
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPushBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		s.fail(w, r, &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("push envelope larger than %d bytes: no message of this service is", MaxPushBody)})
		return
	}
	if err != nil {
		s.fail(w, r, badRequest("read push envelope: "+err.Error()))
		return
	}
	env, task, skip, err := DecodePush(body, s.o.Incoming.Name())
	if env == nil {
		s.fail(w, r, badRequest(err.Error()))
		return
	}
	// The work continues the trace of whoever queued it (the sync API's request).
	ctx := telemetry.Extract(r.Context(), env.Message.Attributes)
	r = r.WithContext(ctx)
	log := s.o.Logger.With("messageId", env.Message.MessageID, "deliveryAttempt", env.DeliveryAttempt)
	switch {
	case err != nil:
		// A message that can never be a task: non-2xx, so it ends in the dead-letter topic.
		log.ErrorContext(ctx, "undecodable push message", "err", err)
		s.fail(w, r, badRequest(err.Error()))
		return
	case skip != "":
		log.InfoContext(ctx, "acked without work", "why", skip)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ctx = telemetry.WithKey(ctx, task.Key)
	r = r.WithContext(ctx)
	out, err := s.o.Pipeline.Deliver(ctx, task, env.DeliveryAttempt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	log.InfoContext(ctx, "push done", "state", out.Job.State, "skipped", out.Skipped)
	w.WriteHeader(http.StatusNoContent)
}

// MaxPushBody caps a push envelope. The service's own messages are a few hundred
// bytes (a task, or a storage notification's object resource).
const MaxPushBody = 1 << 20

// DecodePush reads a push envelope and the task in it: a Cloud Storage notification
// or a task the service could have written (pipeline.TaskFrom). env is nil when the
// body is not an envelope at all; skip, when not empty, says why the message needs
// no work.
func DecodePush(body []byte, incoming string) (env *PushEnvelope, t pipeline.Task, skip string, err error) {
	env = &PushEnvelope{}
	if err := json.Unmarshal(body, env); err != nil {
		return nil, t, "", fmt.Errorf("not a Pub/Sub push envelope: %s", jsonProblem(err))
	}
	t, skip, err = pipeline.TaskFrom(env.Message.Data, env.Message.Attributes, incoming)
	return env, t, skip, err
}

// jsonProblem says what is wrong with a caller's JSON without the Go types it was
// read into (encoding/json's own message spells out the struct).
func jsonProblem(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		field := typ.Field
		if field == "" {
			field = "the body"
		}
		return fmt.Sprintf("%s is a JSON %s, not the %s expected", field, typ.Value, typeName(typ.Type.Kind()))
	}
	return err.Error()
}

// typeName is a JSON name of a Go kind.
func typeName(k reflect.Kind) string {
	switch k {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array or base64 string"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	}
	return "number"
}

// httpError is an error with its status code.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) error { return &httpError{code: http.StatusBadRequest, msg: msg} }

// fail maps an error to a status: bad input 4xx (422 for images that cannot be
// processed), overload 429 with Retry-After, everything else 503 (retryable).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	code := http.StatusServiceUnavailable
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.Is(err, pipeline.ErrOverloaded):
		code = http.StatusTooManyRequests
	case errors.Is(err, meta.ErrBusy):
		code = http.StatusConflict // another delivery holds the job; retry later
	case fault.IsPermanent(err):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable || code == http.StatusConflict {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.o.RetryAfter.Seconds())))
	}
	lvl := slog.LevelWarn
	if code >= 500 {
		lvl = slog.LevelError
	}
	s.o.Logger.Log(r.Context(), lvl, "request failed", "path", r.URL.Path, "status", code, "err", err.Error())
	writeJSON(w, code, errorBody{Error: err.Error(), Code: code})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
