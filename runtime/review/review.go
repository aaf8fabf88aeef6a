// Package review is a page for people who would rather look at images than read
// JSON: the recent images of a project with the original and the processed image
// side by side, the model's boxes drawn with labels and confidences, filters
// (quarantined, faces found, drifted window) and a chart of the prediction drift.
//
// It is plain server-rendered HTML with its CSS inline and no script: it needs no
// network resource beyond the service itself, and its Content-Security-Policy says so.
package review

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/telemetry/drift"
)

// Options configure the page.
type Options struct {
	Project *config.Project
	Meta    meta.Store
	// Buckets the jobs' images are read from (incoming, processed, quarantine), by Name.
	Buckets []blob.Bucket
	// Limit of images on a page (default 48).
	Limit  int
	Logger *slog.Logger
	// RawOriginals serves originals byte for byte (with their EXIF/GPS and unblurred
	// faces) and quarantined ones as downloads. Only for a page nobody else can reach
	// (serve on a loopback address); otherwise originals are served only as previews:
	// re-encoded, fitted, metadata stripped.
	RawOriginals bool
	// Admit, when set, takes room for a preview's decode (imaging.Header.Cost pixels)
	// from the service's admission budget before it decodes, as every decode does.
	Admit func(ctx context.Context, pixels int64) (release func(), err error)
}

// MaxLimit caps ?limit=, the images on one page.
const MaxLimit = 500

// PreviewSize is the long side of the pictures on the page.
const PreviewSize = 720

// Handler serves GET /review/ (the page) and GET /review/image (one image of a job).
type Handler struct {
	o       Options
	buckets map[string]blob.Bucket
	mux     *http.ServeMux
	blurred map[string]bool // analyses whose boxes a blur transform anonymizes
}

// New builds the handler.
func New(o Options) *Handler {
	if o.Limit <= 0 {
		o.Limit = 48
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h := &Handler{o: o, buckets: map[string]blob.Bucket{}, mux: http.NewServeMux(), blurred: map[string]bool{}}
	for _, b := range o.Buckets {
		h.buckets[b.Name()] = b
	}
	for _, t := range o.Project.Pipeline.Transforms {
		if t.Blur != nil {
			h.blurred[t.Blur.Analysis] = true
		}
	}
	h.mux.HandleFunc("GET /review/{$}", h.page)
	h.mux.HandleFunc("GET /review/image", h.image)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Filters of the page.
const (
	FilterAll         = ""
	FilterQuarantined = "quarantined"
	FilterFaces       = "faces"
	FilterDrifted     = "drifted"
)

// box is a detection drawn over an image, in percent of its size.
type box struct {
	Left, Top, Width, Height float64
	Label                    string
	Confidence               float64
	Analysis                 string
	Place                    string // where its label goes (placeLabels): CSS classes
}

// card is one image on the page.
type card struct {
	Key, Object, State, Reason string
	Name                       string // the uploader's file name (meta.Job.Name)
	Updated                    time.Time
	Width, Height              int
	Original, Processed        string // image URLs ("" when there is none)
	Download                   string // a quarantined original, as a file: never rendered
	Boxes                      []box
	Detections                 int
	Rechecked                  int      // faces the anonymization re-check added
	Versions                   []string // model versions that produced the results
	Faces                      int
	Drifted                    bool
	PSI                        float64
}

type filterLink struct {
	Name, Label, URL string
	Active           bool
}

type chart struct {
	Width, Height  int
	Points         string // polyline of PSI
	ThresholdY     float64
	Max            float64
	Threshold      float64
	DriftedMarkers []marker
	N              int
}

type marker struct{ X, Y float64 }

type page struct {
	Project   string
	Filter    string
	Version   string // ?version=: only images a model version produced results for
	Filters   []filterLink
	Cards     []card
	Counts    map[string]int
	Drifts    []*driftView // one per watched analysis
	Generated time.Time
	More      string // link to a longer page, when this one is full
}

type driftView struct {
	Analysis   string
	Collecting bool
	Baseline   string
	Last       drift.Report
	Threshold  float64
	Chart      chart
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	filter := r.URL.Query().Get("filter")
	switch filter {
	case FilterAll, FilterQuarantined, FilterFaces, FilterDrifted:
	default:
		http.Error(w, "unknown filter: use quarantined, faces or drifted", http.StatusBadRequest)
		return
	}
	limit := h.o.Limit
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxLimit {
			http.Error(w, fmt.Sprintf("limit: 1-%d images", MaxLimit), http.StatusBadRequest)
			return
		}
		limit = n
	}
	version := r.URL.Query().Get("version")
	p, err := h.build(ctx, filter, version, limit)
	if err != nil {
		h.o.Logger.ErrorContext(ctx, "review page", "err", err)
		http.Error(w, "review page: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Nothing but this service: no script, no external style, font or image.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) build(ctx context.Context, filter, version string, limit int) (*page, error) {
	p := &page{Project: h.o.Project.Name, Filter: filter, Version: version, Counts: map[string]int{}, Generated: time.Now().UTC()}
	for _, f := range []struct{ name, label string }{{FilterAll, "all"}, {FilterQuarantined, "quarantined"}, {FilterFaces, "faces found"}, {FilterDrifted, "drifted window"}} {
		u := "/review/"
		if f.name != "" {
			u += "?filter=" + f.name
		}
		p.Filters = append(p.Filters, filterLink{Name: f.name, Label: f.label, URL: u, Active: f.name == filter})
	}
	drifted := map[string]drift.Point{}
	for _, dc := range h.o.Project.Monitoring.Drift.Each() {
		hist, err := drift.Load(ctx, h.o.Meta, dc, min(2*dc.Window, 2000))
		if err != nil {
			return nil, err
		}
		p.Drifts = append(p.Drifts, driftOf(hist))
		for _, pt := range hist.Points {
			if old, seen := drifted[pt.Key]; !seen || (pt.Drifted && !old.Drifted) || (pt.Drifted == old.Drifted && pt.PSI > old.PSI) {
				drifted[pt.Key] = pt // an image is in a drifted window if any analysis' is
			}
		}
	}
	f := meta.Filter{Limit: limit}
	switch filter {
	case FilterQuarantined:
		f.State = meta.StateQuarantined
	case FilterFaces, FilterDrifted:
		f.Limit = 20 * limit // filtered here: read a margin
	}
	if version != "" {
		f.Limit = 20 * limit
	}
	jobs, err := h.o.Meta.List(ctx, f)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		c := h.card(j)
		if pt, ok := drifted[j.Key]; ok {
			c.Drifted, c.PSI = pt.Drifted, pt.PSI
		}
		p.Counts[c.State]++
		if (filter == FilterFaces && c.Faces == 0) || (filter == FilterDrifted && !c.Drifted) || len(p.Cards) >= limit ||
			(version != "" && !slices.Contains(c.Versions, version)) {
			continue
		}
		p.Cards = append(p.Cards, c)
	}
	if len(p.Cards) >= limit && limit < MaxLimit {
		q := url.Values{"limit": {strconv.Itoa(min(4*limit, MaxLimit))}}
		if filter != "" {
			q.Set("filter", filter)
		}
		if version != "" {
			q.Set("version", version)
		}
		p.More = "/review/?" + q.Encode()
	}
	return p, nil
}

func (h *Handler) card(j meta.Job) card {
	c := card{Key: j.Key, Object: j.Source.Object, Name: j.Name, State: string(j.State), Reason: j.Reason, Updated: j.Updated, Width: j.Width, Height: j.Height,
		Rechecked: j.Rechecked}
	for _, r := range j.Results {
		if r.ModelVersion != "" && !slices.Contains(c.Versions, r.ModelVersion) {
			c.Versions = append(c.Versions, r.ModelVersion)
		}
	}
	img := func(kind string) string {
		return "/review/image?" + url.Values{"key": {j.Key}, "kind": {kind}, "w": {strconv.Itoa(PreviewSize)}}.Encode()
	}
	if len(h.originals(j)) > 0 {
		if j.State == meta.StateQuarantined {
			// Could be anything, a decompression bomb among others: offered as a
			// download, never decoded by the browser.
			c.Download = "/review/image?" + url.Values{"key": {j.Key}, "kind": {"original"}, "download": {"1"}}.Encode()
		} else {
			c.Original = img("original")
		}
	}
	if _, ok := h.output(j, h.processedBucket()); ok {
		c.Processed = img("processed")
	}
	for _, r := range j.Results {
		for _, d := range r.Detections {
			c.Detections++
			if d.Label == "face" || h.blurred[r.Analysis] {
				c.Faces++
			}
			if b := d.Box; b != nil {
				c.Boxes = append(c.Boxes, box{Left: pct(b.XMin), Top: pct(b.YMin), Width: pct(b.XMax - b.XMin), Height: pct(b.YMax - b.YMin),
					Label: d.Label, Confidence: d.Confidence, Analysis: r.Analysis})
			}
		}
	}
	placeLabels(c.Boxes, j.Width, j.Height)
	return c
}

// Label geometry, in CSS pixels (page.html.tmpl: 11 px text, 16 px lines, 4 px
// padding), and the narrowest a picture is drawn: half of a card's 536 px inside,
// less the gap between the two pictures.
const (
	labelHeight   = 16
	labelCharW    = 6.5 // wider than the average character of 11 px sans-serif
	labelPad      = 8
	narrowestShow = 264
)

// labelPlaces are where a label may go, in order of preference: above the box's
// left corner (the default), below it, above and below its right corner, inside its
// top left corner.
var labelPlaces = []string{"", "below", "right", "below right", "inside"}

// placeLabels chooses each box's label place so that no label covers another
// label or another box's inside (the face), with the picture at its narrowest
// (w×h: the original's size; a picture is never drawn wider than it): the boxes
// scale with the picture and the labels do not, so a layout without overlaps there
// has none when it is drawn wider. A label that fits nowhere keeps the default.
// The page has no script (its Content-Security-Policy), so this is decided here.
func placeLabels(boxes []box, w, h int) {
	if w <= 0 || h <= 0 || len(boxes) < 2 {
		return
	}
	sw := math.Min(float64(w), narrowestShow)
	sh := sw * float64(h) / float64(w)
	type rect struct{ x0, y0, x1, y1 float64 }
	px := func(b box) rect {
		return rect{b.Left / 100 * sw, b.Top / 100 * sh, (b.Left + b.Width) / 100 * sw, (b.Top + b.Height) / 100 * sh}
	}
	cover := func(a, b rect) bool {
		return math.Min(a.x1, b.x1)-math.Max(a.x0, b.x0) > 0.5 && math.Min(a.y1, b.y1)-math.Max(a.y0, b.y0) > 0.5
	}
	label := func(r rect, lw float64, place string) rect {
		x, y := r.x0-2, r.y0-labelHeight-2
		switch {
		case place == "inside":
			x, y = r.x0+2, r.y0+2
		case strings.Contains(place, "right"):
			x = r.x1 + 2 - lw
		}
		if strings.HasPrefix(place, "below") {
			y = r.y1 + 2
		}
		return rect{x, y, x + lw, y + labelHeight}
	}
	order := make([]int, len(boxes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return boxes[order[a]].Top < boxes[order[b]].Top })
	var placed []rect
	for _, i := range order {
		r := px(boxes[i])
		lw := float64(len(fmt.Sprintf("%s %.2f", boxes[i].Label, boxes[i].Confidence)))*labelCharW + labelPad
		free := func(l rect) bool {
			for _, p := range placed {
				if cover(l, p) {
					return false
				}
			}
			for j, o := range boxes {
				if r := px(o); j != i && cover(l, rect{r.x0 + 2, r.y0 + 2, r.x1 - 2, r.y1 - 2}) {
					return false
				}
			}
			return true
		}
		boxes[i].Place = ""
		for _, place := range labelPlaces {
			if free(label(r, lw, place)) {
				boxes[i].Place = place
				break
			}
		}
		placed = append(placed, label(r, lw, boxes[i].Place))
	}
}

func pct(x float64) float64 { return float64(int(max(0, min(1, x))*100000+0.5)) / 1000 }

func (h *Handler) processedBucket() string { return h.bucketName(1) }

// bucketName is the i-th bucket given (incoming, processed, quarantine).
func (h *Handler) bucketName(i int) string {
	if i < len(h.o.Buckets) {
		return h.o.Buckets[i].Name()
	}
	return ""
}

// originals are where a job's original may be, in order: its source, then its copy
// in quarantine (the source may be gone, e.g. by the incoming bucket's lifecycle).
func (h *Handler) originals(j meta.Job) []meta.Output {
	var out []meta.Output
	if _, ok := h.buckets[j.Source.Bucket]; ok && j.Source.Object != "" {
		out = append(out, meta.Output{Bucket: j.Source.Bucket, Object: j.Source.Object, Generation: j.Source.Generation})
	}
	if o, ok := h.output(j, h.bucketName(2)); ok {
		out = append(out, o)
	}
	return out
}

func (h *Handler) output(j meta.Job, bucket string) (meta.Output, bool) {
	for _, o := range j.Outputs {
		if o.Bucket == bucket && bucket != "" {
			return o, true
		}
	}
	return meta.Output{}, false
}

// image serves one image of a job: only objects a job names, only image types.
func (h *Handler) image(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	key, kind := r.URL.Query().Get("key"), r.URL.Query().Get("kind")
	j, err := h.o.Meta.Get(ctx, key)
	if errors.Is(err, meta.ErrNotFound) {
		http.Error(w, "no such job", http.StatusNotFound)
		return
	} else if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var candidates []meta.Output
	switch kind {
	case "original":
		candidates = h.originals(j)
	case "processed":
		if o, ok := h.output(j, h.processedBucket()); ok {
			candidates = append(candidates, o)
		}
	default:
		http.Error(w, "kind: original or processed", http.StatusBadRequest)
		return
	}
	if len(candidates) == 0 {
		http.Error(w, "this job has no "+kind+" image", http.StatusNotFound)
		return
	}
	download, preview := r.URL.Query().Get("download") == "1", r.URL.Query().Get("w") != ""
	// What is larger than the page's own pictures is not a preview: an original at
	// 4096 px is its unblurred faces at full size.
	maxPreview := 4096
	if kind == "original" {
		maxPreview = PreviewSize
	}
	switch {
	case download && preview:
		http.Error(w, "download=1 sends the stored file; w= asks for a preview: one or the other", http.StatusBadRequest)
		return
	case kind == "original" && download && !h.o.RawOriginals:
		http.Error(w, "originals are downloaded byte for byte only where nobody else can reach this page (serve on a loopback address); read the bucket", http.StatusForbidden)
		return
	case kind == "original" && j.State == meta.StateQuarantined && !download:
		// Whatever made it quarantined, it is never decoded, not even for a preview.
		http.Error(w, "a quarantined original is offered only as a download", http.StatusForbidden)
		return
	case kind == "original" && !preview && !h.o.RawOriginals:
		http.Error(w, "originals are served byte for byte only where nobody else can reach this page (serve on a loopback address); ask for a preview (w=) or read the bucket", http.StatusForbidden)
		return
	}
	var data []byte
	var o meta.Output
	for _, o = range candidates { // the first that can be read
		if data, _, err = blob.ReadAll(ctx, h.buckets[o.Bucket], o.Object, int64(h.o.Project.Pipeline.Prepare.MaxBytes)); err == nil {
			break
		}
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("%s %s: %v", kind, o.Object, err), http.StatusNotFound)
		return
	}
	ct := http.DetectContentType(data)
	if download {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", path.Base(o.Object)))
		ct = "application/octet-stream"
	} else if !strings.HasPrefix(ct, "image/") {
		// A quarantined upload may be anything: never hand it to a browser as such.
		http.Error(w, "not an image ("+ct+")", http.StatusUnsupportedMediaType)
		return
	}
	if ws := r.URL.Query().Get("w"); preview && ct != "application/octet-stream" {
		// A preview: originals can be 50 MP; the page needs a few hundred pixels.
		// Oriented like the boxes, metadata stripped.
		size, err := strconv.Atoi(ws)
		if err != nil || size < 16 || size > maxPreview {
			http.Error(w, fmt.Sprintf("w: a width of 16-%d pixels", maxPreview), http.StatusBadRequest)
			return
		}
		lim := imaging.LimitsFor(h.o.Project.Pipeline.Prepare)
		hd, err := lim.Check(data)
		if err != nil {
			http.Error(w, "preview: "+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		if h.o.Admit != nil {
			release, err := h.o.Admit(ctx, hd.Cost())
			if err != nil {
				w.Header().Set("Retry-After", "2")
				http.Error(w, "preview: busy, try again: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			defer release()
		}
		thumb, _, err := lim.Thumbnail(data, size, imaging.CropNone, true)
		if err != nil {
			http.Error(w, "preview: "+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		data, err = thumb.JPEG(82, true)
		thumb.Close()
		if err != nil {
			http.Error(w, "preview: "+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		ct = "image/jpeg"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.Header().Set("Cache-Control", "private, max-age=300")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

func driftOf(hst *drift.History) *driftView {
	v := &driftView{Analysis: hst.Analysis, Collecting: hst.Baseline == nil, Last: hst.Last(), Threshold: hst.Threshold}
	if b := hst.Baseline; b != nil {
		v.Baseline = b.Source
		if b.Source == "" {
			v.Baseline = fmt.Sprintf("%d images", b.Images)
		}
	}
	const w, ht = 640, 120
	var settled []drift.Point // the first images of a window say little: not plotted
	for _, p := range hst.Points {
		if p.Settled(hst.Window) {
			settled = append(settled, p)
		}
	}
	c := chart{Width: w, Height: ht, Threshold: hst.Threshold, N: len(settled)}
	c.Max = hst.Threshold * 1.5
	for _, p := range settled {
		c.Max = max(c.Max, p.PSI)
	}
	y := func(v float64) float64 { return float64(ht) - v/c.Max*float64(ht-10) }
	var pts []string
	for i, p := range settled {
		x := float64(w)
		if len(settled) > 1 {
			x = float64(i) / float64(len(settled)-1) * float64(w)
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y(p.PSI)))
		if p.Drifted && (i == 0 || !settled[i-1].Drifted) {
			c.DriftedMarkers = append(c.DriftedMarkers, marker{X: x, Y: y(p.PSI)})
		}
	}
	c.Points = strings.Join(pts, " ")
	c.ThresholdY = y(hst.Threshold)
	v.Chart = c
	return v
}

//go:embed page.html.tmpl
var pageSrc string

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct":  func(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) + "%" },
	"f2":   func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
	"f3":   func(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) },
	"time": func(t time.Time) string { return t.Format("2006-01-02 15:04:05Z") },
}).Parse(pageSrc))
