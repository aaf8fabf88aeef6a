package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/visionstack/visionstack/internal/testimg"
	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/meta/sqlite"
	"github.com/visionstack/visionstack/testdata/photos"
)

// TestRunSamplesEndToEnd runs `visionstack run` on the sample photos plus three bad
// files, then checks what a user relies on: every face box found is anonymized,
// outputs carry no EXIF, every image has its record, bad files are quarantined with
// a reason, and a second run does no work.
func TestRunSamplesEndToEnd(t *testing.T) {
	in := t.TempDir()
	copyDir(t, photos.Dir(), filepath.Join(in, "photos"))
	bad := filepath.Join(in, "bad")
	must(t, os.MkdirAll(bad, 0o755))
	must(t, os.WriteFile(filepath.Join(bad, "empty.jpg"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(bad, "truncated.jpg"), testimg.Truncated(testimg.JPEG(640, 480), 0.5), 0o644))
	must(t, os.WriteFile(filepath.Join(bad, "bomb.png"), testimg.PNGBomb(50000, 50000), 0o644))
	out := filepath.Join(t.TempDir(), "out")

	stdout, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stdout)
	}
	t.Log("\n" + stdout)
	if !strings.Contains(stdout, "14 images: 11 processed, 0 skipped (done before), 3 quarantined, 0 failed") {
		t.Fatalf("summary line wrong:\n%s", stdout)
	}
	// docs/usage.md shows this run's summary and model version: they must not go
	// stale (issue 28: README's example answer was).
	usage, err := os.ReadFile("../../docs/usage.md")
	must(t, err)
	for _, line := range []string{summaryLine(stdout), modelLine(stdout)} {
		if line == "" || !strings.Contains(string(usage), line) {
			t.Errorf("docs/usage.md's example of this run does not say %q", line)
		}
	}

	store, err := sqlite.Open(filepath.Join(out, "visionstack.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	jobs, err := store.List(context.Background(), meta.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 14 {
		t.Fatalf("%d job records, want 14", len(jobs))
	}
	boxes := 0
	for _, j := range jobs {
		switch {
		case strings.Contains(j.Source.Object, "/bad/"):
			checkQuarantined(t, out, j)
		default:
			if j.State != meta.StateDone || len(j.Results) != 1 || j.Width == 0 || j.Format == "" {
				t.Errorf("%s: record %+v", j.Source.Object, j)
				continue
			}
			boxes += checkProcessed(t, filepath.Dir(in), out, j)
		}
	}
	if boxes < 20 {
		t.Fatalf("only %d face boxes checked across the samples", boxes)
	}

	// A second run does no work: nothing processed, no output rewritten.
	before := mtimes(t, filepath.Join(out, "processed"))
	stdout, err = runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, stdout)
	}
	// The summary's counts match the table: the three bad files are quarantined still.
	if !strings.Contains(stdout, "14 images: 0 processed, 11 skipped (done before), 3 quarantined (3 before this run), 0 failed") {
		t.Fatalf("second run did work:\n%s", stdout)
	}
	after := mtimes(t, filepath.Join(out, "processed"))
	if len(before) != 11 || len(after) != len(before) {
		t.Fatalf("processed outputs: %d before, %d after, want 11", len(before), len(after))
	}
	for f, m := range before {
		if !after[f].Equal(m) {
			t.Errorf("second run rewrote %s", f)
		}
	}
}

// checkProcessed compares each face box of the processed image with the same box of
// the original at the same size: edge energy (detail) must drop well below. Pixel
// variance is not held: the default mosaic keeps the blocks' colours by design, in
// an order of their own (what is left of a face's layout is judged by OpenCV and
// SSIM in runtime/pipeline's TestSamplesJudgedByOpenCV, on these photos).
func checkProcessed(t *testing.T, in, out string, j meta.Job) int {
	t.Helper()
	if len(j.Outputs) != 1 {
		t.Errorf("%s: outputs %+v", j.Source.Object, j.Outputs)
		return 0
	}
	procBytes, err := os.ReadFile(filepath.Join(out, j.Outputs[0].Bucket, j.Outputs[0].Object))
	must(t, err)
	if seg := jpegMetadataSegment(procBytes); seg != "" {
		t.Errorf("%s: processed image still carries %s", j.Outputs[0].Object, seg)
	}
	orig, err := os.ReadFile(filepath.Join(in, j.Source.Object))
	must(t, err)
	proc, _, err := imaging.Limits{}.Thumbnail(procBytes, imaging.MaxSide, imaging.CropNone, false)
	must(t, err)
	pp, w, h, err := proc.Gray()
	proc.Close()
	must(t, err)
	ref, _, err := imaging.Limits{}.Thumbnail(orig, max(w, h), imaging.CropNone, true)
	must(t, err)
	rp, rw, rh, err := ref.Gray()
	ref.Close()
	must(t, err)
	if rw != w || rh != h {
		t.Fatalf("%s: processed %dx%d, original at that size %dx%d", j.Source.Object, w, h, rw, rh)
	}
	n := 0
	for _, d := range j.Results[0].Detections {
		if d.Box == nil {
			continue
		}
		x0, x1 := int(d.Box.XMin*float64(w)), int(d.Box.XMax*float64(w))
		y0, y1 := int(d.Box.YMin*float64(h)), int(d.Box.YMax*float64(h))
		vo, eo := stats(rp, w, x0, y0, x1, y1)
		vp, ep := stats(pp, w, x0, y0, x1, y1)
		t.Logf("%s box %v: variance %.0f → %.0f, edge energy %.0f → %.0f", j.Source.Object, []int{x0, y0, x1 - x0, y1 - y0}, vo, vp, eo, ep)
		if ep > 0.5*eo {
			t.Errorf("%s: box %v edge energy %.0f → %.0f: detail left", j.Source.Object, []int{x0, y0, x1, y1}, eo, ep)
		}
		n++
	}
	return n
}

// stats returns the pixel variance and the mean squared difference between
// horizontally and vertically adjacent pixels (edge energy) inside a rectangle.
func stats(pix []uint8, stride, x0, y0, x1, y1 int) (variance, edges float64) {
	var sum, sq, e float64
	var n, ne int
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			v := float64(pix[y*stride+x])
			sum += v
			sq += v * v
			n++
			if x+1 < x1 && y+1 < y1 {
				dx := v - float64(pix[y*stride+x+1])
				dy := v - float64(pix[(y+1)*stride+x])
				e += dx*dx + dy*dy
				ne++
			}
		}
	}
	mean := sum / float64(n)
	return sq/float64(n) - mean*mean, e / float64(max(ne, 1))
}

func checkQuarantined(t *testing.T, out string, j meta.Job) {
	t.Helper()
	want := map[string]string{
		"empty.jpg": "empty file", "truncated.jpg": "corrupt or truncated", "bomb.png": "exceed the limits",
	}[filepath.Base(j.Source.Object)]
	if j.State != meta.StateQuarantined || !strings.Contains(j.Reason, want) {
		t.Errorf("%s: state %s reason %q, want quarantined for %q", j.Source.Object, j.State, j.Reason, want)
	}
	if _, err := os.Stat(filepath.Join(out, "quarantine", j.Source.Object)); err != nil {
		t.Errorf("%s: original not in quarantine: %v", j.Source.Object, err)
	}
}

// jpegMetadataSegment names the first EXIF, XMP or IPTC segment of a JPEG, if any.
func jpegMetadataSegment(b []byte) string {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return "no JPEG header"
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return ""
		}
		marker := b[i+1]
		if marker == 0xDA || marker == 0xD9 { // start of scan: no more headers
			return ""
		}
		size := int(binary.BigEndian.Uint16(b[i+2:]))
		seg := b[i+4 : min(i+2+size, len(b))]
		switch {
		case marker == 0xE1 && bytes.HasPrefix(seg, []byte("Exif\x00")):
			return "EXIF"
		case marker == 0xE1 && bytes.HasPrefix(seg, []byte("http://ns.adobe.com/xap")):
			return "XMP"
		case marker == 0xED:
			return "IPTC"
		}
		i += 2 + size
	}
	return ""
}

func TestJPEGMetadataSegmentFindsEXIF(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join(photos.Dir(), "faces", "faceapi_sample1.jpg"))
	must(t, err)
	if got := jpegMetadataSegment(orig); got != "EXIF" {
		t.Fatalf("sample with EXIF/GPS read as %q: the checker is blind", got)
	}
}

func mtimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, ".visionstack-") {
			return err
		}
		st, err := d.Info()
		if err == nil {
			out[p] = st.ModTime()
		}
		return err
	}))
	return out
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	must(t, filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !strings.HasSuffix(p, ".jpg") && !strings.HasSuffix(p, ".png") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		o, err := os.Create(target)
		if err != nil {
			return err
		}
		defer o.Close()
		_, err = io.Copy(o, f)
		return err
	}))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// summaryLine is run's summary line without its duration ("…; 26 faces").
func summaryLine(stdout string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, " images: ") && strings.Contains(l, " faces; ") {
			return l[:strings.LastIndex(l, "; ")]
		}
	}
	return ""
}

// modelLine is the drift line's "model version …" part.
func modelLine(stdout string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if i := strings.Index(l, "model version "); i >= 0 {
			if j := strings.Index(l[i:], " ("); j > 0 {
				return l[i : i+j]
			}
		}
	}
	return ""
}
