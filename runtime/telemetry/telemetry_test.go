package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"cloud.google.com/go/trace/apiv2/tracepb"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/api/option"
	metricpb "google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/telemetry"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

// cloud is a local server speaking Cloud Monitoring's MetricService and Cloud
// Trace's TraceService: it keeps what the Google exporters send.
type cloud struct {
	monitoringpb.UnimplementedMetricServiceServer
	tracepb.UnimplementedTraceServiceServer
	mu          sync.Mutex
	descriptors []*metricpb.MetricDescriptor
	series      []*monitoringpb.TimeSeries
	spans       []*tracepb.Span
}

func (c *cloud) CreateMetricDescriptor(_ context.Context, r *monitoringpb.CreateMetricDescriptorRequest) (*metricpb.MetricDescriptor, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.descriptors = append(c.descriptors, r.MetricDescriptor)
	return r.MetricDescriptor, nil
}

func (c *cloud) CreateTimeSeries(_ context.Context, r *monitoringpb.CreateTimeSeriesRequest) (*emptypb.Empty, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.series = append(c.series, r.TimeSeries...)
	return &emptypb.Empty{}, nil
}

func (c *cloud) BatchWriteSpans(_ context.Context, r *tracepb.BatchWriteSpansRequest) (*emptypb.Empty, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, r.Spans...)
	return &emptypb.Empty{}, nil
}

func startCloud(t *testing.T) (*cloud, []option.ClientOption) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cloud{}
	srv := grpc.NewServer()
	monitoringpb.RegisterMetricServiceServer(srv, c)
	tracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c, []option.ClientOption{option.WithEndpoint(ln.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))}
}

// In the cloud, the runtime's metrics reach Cloud Monitoring under the types the
// stack's dashboard and alerts read (config.Metric.CloudType), labelled with the
// project and their own labels, and spans reach Cloud Trace.
func TestCloudExportersSendWhatTheStackReads(t *testing.T) {
	c, opts := startCloud(t)
	ctx := context.Background()
	tel, err := telemetry.New(ctx, telemetry.Options{Project: "acme", GCPProject: "acme-prod", ExportInterval: time.Hour,
		MonitoringOptions: opts, TraceOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	sctx, span := tel.Tracer().Start(ctx, "process")
	tel.Step(sctx, "prepare", 40*time.Millisecond)
	tel.Outcome(sctx, config.OutcomeQuarantined)
	tel.ModelCall(sctx, "faces", "builtin:faces", "pigo-facefinder/1", 120*time.Millisecond, "transient")
	tel.Inflight(sctx, 1)
	tel.Read(sctx, 1000, 640*480)
	tel.Drift(sctx, "faces", drift.Report{PSI: 0.31, KS: 0.4, Version: "1"})
	tel.Recheck(sctx, config.RecheckReanonymized)
	tel.Predictions(sctx, meta.Result{Analysis: "faces", ModelVersion: "2", Detections: []meta.Detection{{Label: "face", Confidence: 0.8}}})
	span.End()
	if err := tel.Shutdown(ctx); err != nil { // flushes both exporters
		t.Fatal(err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	types := map[string]map[string]string{}
	for _, ts := range c.series {
		types[ts.Metric.Type] = ts.Metric.Labels
	}
	for _, m := range config.Metrics {
		labels, ok := types[m.CloudType()]
		if !ok {
			t.Errorf("no time series of %s in Cloud Monitoring; sent: %v", m.CloudType(), keys(types))
			continue
		}
		if labels["project"] != "acme" {
			t.Errorf("%s: project label %q, want acme", m.CloudType(), labels["project"])
		}
		for _, l := range m.Labels {
			if labels[l] == "" {
				t.Errorf("%s lacks label %s: %v", m.CloudType(), l, labels)
			}
		}
	}
	if l := types[config.MetricDriftPSI.CloudType()]; l["analysis"] != "faces" {
		t.Errorf("drift series labels %v: the stack's alert filters on analysis=faces", l)
	}
	if len(c.spans) != 1 || !strings.HasPrefix(c.spans[0].Name, "projects/acme-prod/traces/") {
		t.Errorf("Cloud Trace got %d spans: %v", len(c.spans), c.spans)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The JSON log speaks Cloud Logging: severity names it knows, the trace as
// projects/P/traces/ID, the span, and the image key from the context.
func TestLoggerCloudLoggingFields(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, "json", "acme-prod", nil)
	tel, err := telemetry.New(context.Background(), telemetry.Options{Project: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	ctx, span := tel.Tracer().Start(telemetry.WithKey(context.Background(), "incoming/a.jpg#3"), "x")
	defer span.End()
	log.With("object", "a.jpg").WarnContext(ctx, "careful", "n", 1)
	log.InfoContext(context.Background(), "plain")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first, second map[string]any
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[1]), &second) != nil {
		t.Fatalf("log: %s", buf.String())
	}
	want := map[string]any{"severity": "WARNING", "message": "careful", "key": "incoming/a.jpg#3", "object": "a.jpg",
		telemetry.LogTrace:  "projects/acme-prod/traces/" + span.SpanContext().TraceID().String(),
		telemetry.LogSpanID: span.SpanContext().SpanID().String(), telemetry.LogTraceSampled: true}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, first[k], v, lines[0])
		}
	}
	if second["severity"] != "INFO" || second["key"] != nil || second[telemetry.LogTrace] != nil {
		t.Errorf("a line without context carries context fields: %s", lines[1])
	}
}

// Issue 28 #8: text logs are for people: no Cloud Logging trace fields and no Go
// struct dump of the request; JSON logs keep both for Cloud Logging.
func TestTextLogsForPeople(t *testing.T) {
	type req struct{ RequestMethod string }
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled}))
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log := telemetry.NewLogger(&buf, format, "p", slog.LevelInfo)
		log.InfoContext(ctx, "GET /healthz 200", slog.Any(telemetry.LogHTTPRequest, req{"GET"}))
		out := buf.String()
		cloud := strings.Contains(out, telemetry.LogTrace) && strings.Contains(out, "RequestMethod")
		if (format == "json") != cloud {
			t.Errorf("%s log: %s", format, out)
		}
		if format == "text" && !strings.Contains(out, "GET /healthz 200") {
			t.Errorf("text log lost its message: %s", out)
		}
	}
}
