package telemetry

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Cloud Logging's structured-log fields
// (https://cloud.google.com/logging/docs/structured-logging).
const (
	LogTrace        = "logging.googleapis.com/trace"
	LogSpanID       = "logging.googleapis.com/spanId"
	LogTraceSampled = "logging.googleapis.com/trace_sampled"
	LogHTTPRequest  = "httpRequest"
)

// NewLogger is the runtime's logger: JSON with Cloud Logging's field names
// (severity, message, trace, spanId, httpRequest) or text for people; either way
// every line written with a context carries its trace, span and image key.
func NewLogger(w io.Writer, format, gcpProject string, level slog.Leveler) *slog.Logger {
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: cloudLoggingNames})
	} else {
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: forPeople})
	}
	return slog.New(&ctxHandler{Handler: h, project: gcpProject, text: format != "json"})
}

// forPeople drops from text logs what only Cloud Logging reads: the request's
// structured record (the message already says method, path and status; a Go struct
// dump said it again) and the trace fields (ctxHandler leaves those out of text).
func forPeople(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == LogHTTPRequest {
		return slog.Attr{}
	}
	return a
}

// cloudLoggingNames renames slog's level and message to Cloud Logging's severity
// (with its level names) and message.
func cloudLoggingNames(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		a.Key = "severity"
		lvl, _ := a.Value.Any().(slog.Level)
		switch {
		case lvl >= slog.LevelError:
			a.Value = slog.StringValue("ERROR")
		case lvl >= slog.LevelWarn:
			a.Value = slog.StringValue("WARNING")
		case lvl >= slog.LevelInfo:
			a.Value = slog.StringValue("INFO")
		default:
			a.Value = slog.StringValue("DEBUG")
		}
	case slog.MessageKey:
		a.Key = "message"
	case slog.TimeKey:
		a.Key = "time"
	}
	return a
}

// ctxHandler adds what the context knows to every record.
type ctxHandler struct {
	slog.Handler
	project string
	text    bool // for people: no trace fields
}

func (h *ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if key := KeyFrom(ctx); key != "" {
		r.AddAttrs(slog.String("key", key))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !h.text {
		tr := sc.TraceID().String()
		if h.project != "" {
			tr = "projects/" + h.project + "/traces/" + tr
		}
		r.AddAttrs(slog.String(LogTrace, tr), slog.String(LogSpanID, sc.SpanID().String()), slog.Bool(LogTraceSampled, sc.IsSampled()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ctxHandler{Handler: h.Handler.WithAttrs(as), project: h.project, text: h.text}
}

func (h *ctxHandler) WithGroup(name string) slog.Handler {
	return &ctxHandler{Handler: h.Handler.WithGroup(name), project: h.project, text: h.text}
}
