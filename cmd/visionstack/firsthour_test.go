package main

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 28: what a newcomer's first runs say. A folder of one bad image and a text
// file: the text file is said to be left out, the bad image quarantined, the run exits
// 4 (nothing was processed); run again, the summary's counts still match the table
// (quarantined before this run, not "skipped"); with a good photo beside it, status 0
// unless --fail-on-quarantine.
func TestRunSummaryAndExitStatus(t *testing.T) {
	in := t.TempDir()
	must(t, os.WriteFile(filepath.Join(in, "broken.jpg"), []byte("not a jpeg at all"), 0o644))
	must(t, os.WriteFile(filepath.Join(in, "notes.txt"), []byte("shot on Tuesday"), 0o644))
	out := t.TempDir()
	for round := 1; round <= 2; round++ {
		text, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != ExitQuarantined {
			t.Fatalf("round %d: %v, want exit status %d\n%s", round, err, ExitQuarantined, text)
		}
		if !strings.Contains(text, "left out 1 files whose names are not images'") || !strings.Contains(text, "notes.txt") {
			t.Errorf("round %d: the text file was left out without a word:\n%s", round, text)
		}
		rows := strings.Count(text, "  quarantined  ")
		want := "1 quarantined"
		if round == 2 {
			want = "1 quarantined (1 before this run)"
		}
		if rows != 1 || !strings.Contains(text, want) || strings.Contains(text, "1 skipped") {
			t.Errorf("round %d: %d quarantined rows; the summary should say %q:\n%s", round, rows, want, text)
		}
	}
	good, err := os.ReadFile("../../testdata/photos/faces/grace_hopper.jpg")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(in, "grace.jpg"), good, 0o644))
	if text, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in); err != nil {
		t.Fatalf("a good photo beside the bad one: %v\n%s", err, text)
	}
	_, err = runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", "--fail-on-quarantine", in)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != ExitQuarantined {
		t.Fatalf("--fail-on-quarantine: %v, want exit status %d", err, ExitQuarantined)
	}
}

// visionstack version (and --version) says what a bug report needs.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := runCLI(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"visionstack ", "commit ", "go          go1.", "libvips     8.", "onnxruntime "} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: no %q in\n%s", args, want, out)
			}
		}
	}
}

// Without credentials, the Google client's own words ("could not find default
// credentials") come with what to do.
func TestCredentialsErrorSaysWhatToDo(t *testing.T) {
	got := withHint(errors.New("status: firestore client: credentials: could not find default credentials. See https://cloud.google.com/docs/authentication/external/set-up-adc for more information"))
	if !strings.Contains(got, "gcloud auth application-default login") || !strings.Contains(got, "--backend local") {
		t.Errorf("%s", got)
	}
}

// new names every file it writes, in its output and its help.
func TestNewSaysEveryFile(t *testing.T) {
	root := t.TempDir()
	out, err := runCLI(t, "--root", root, "new", "acme-qa", "--gcp-project", "acme-prod")
	if err != nil {
		t.Fatal(err)
	}
	help, _ := runCLI(t, "new", "--help")
	for _, f := range []string{"projects/acme-qa/project.yaml", "projects/acme-qa/README.md", "projects/acme-qa/cloudbuild.yaml", ".github/workflows/deploy-acme-qa.yaml", "Pulumi.acme-qa.yaml"} {
		if !strings.Contains(out, "created "+f) {
			t.Errorf("new did not say it created %s:\n%s", f, out)
		}
		generic := strings.ReplaceAll(f, "acme-qa", "NAME")
		if !strings.Contains(strings.Join(strings.Fields(help), " "), generic) {
			t.Errorf("new --help does not name %s", generic)
		}
	}
	if !strings.Contains(out, "make install") {
		t.Errorf("the Next: hints use a bare visionstack without saying how to get it:\n%s", out)
	}
}

// rgbaPNG is a PNG of a photo's colours with the alpha alpha(x, y) gives.
func rgbaPNG(t *testing.T, photo string, alpha func(x, y int) uint8) []byte {
	t.Helper()
	f, err := os.Open(photo)
	must(t, err)
	defer f.Close()
	src, _, err := image.Decode(f)
	must(t, err)
	b := src.Bounds()
	img := image.NewNRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := src.At(x, y).RGBA()
			img.SetNRGBA(x, y, color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), alpha(x, y)})
		}
	}
	var buf bytes.Buffer
	must(t, png.Encode(&buf, img))
	return buf.Bytes()
}

// Issue 28 #2: a PNG whose transparent pixels hide a face photo comes out with
// nothing of that photo in it: every step sees the image as stored (over white), so
// the detector finds no face there and the output is white where the file is
// transparent; a half-transparent photo is anonymized on what is shown.
func TestTransparentPixelsNeverReachAnOutput(t *testing.T) {
	text, got := runOnFadedPortrait(t, "hidden.png", 0)
	if !strings.Contains(text, "hidden.png  done   0 ") {
		t.Errorf("a face was found in a fully transparent image:\n%s", text)
	}
	worst := 0
	b := got.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := got.At(x, y).RGBA()
			worst = max(worst, 255-int(r>>8), 255-int(g>>8), 255-int(bl>>8))
		}
	}
	if worst > 8 { // JPEG's rounding of white
		t.Errorf("the output of a fully transparent PNG is %d levels off white somewhere: the hidden photo reached it", worst)
	}
}

// A faded portrait (alpha 128 over the whole photo) is anonymized on what it shows:
// composed over white, no pixel of it is darker than 127, so no pixel of its output
// may be darker either (by luminance; the old output had dark opaque patches where the boxes were, pixelated from
// the full colours under the transparency).
func TestHalfTransparentPhotoAnonymizedAsShown(t *testing.T) {
	text, img := runOnFadedPortrait(t, "faded.png", 128)
	if !strings.Contains(text, "faded.png  done   1 ") {
		t.Fatalf("the faded face was not found and anonymized:\n%s", text)
	}
	darkest, dx, dy := 255, 0, 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if v := (299*int(r>>8) + 587*int(g>>8) + 114*int(b>>8)) / 1000; v < darkest { // luminance: JPEG keeps it finer than colour
				darkest, dx, dy = v, x, y
			}
		}
	}
	if darkest < 127-16 { // JPEG's ringing at sharp edges
		t.Errorf("the output has a pixel of %d at %d,%d, darker than anything the file shows (127): colours under the transparency reached it", darkest, dx, dy)
	}
}

func abs(v int) int { return max(v, -v) }

// status without a name shows the project just created, not demo, and says which.
func TestStatusWithoutANameTakesTheNewestProject(t *testing.T) {
	root := t.TempDir()
	_, err := runCLI(t, "--root", root, "new", "older", "--gcp-project", "acme-prod")
	must(t, err)
	past := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(filepath.Join(root, "projects", "older", "project.yaml"), past, past))
	_, err = runCLI(t, "--root", root, "new", "acme-qa", "--gcp-project", "acme-prod")
	must(t, err)
	if got := defaultProject(root); got != "acme-qa" {
		t.Errorf("default project %q, want acme-qa (the newest)", got)
	}
	out, _ := runCLI(t, "--root", root, "status", "--data", t.TempDir())
	if !strings.Contains(out, "project acme-qa: the most recently changed") {
		t.Errorf("status did not say which project it shows:\n%s", out)
	}
	if got := defaultProject(t.TempDir()); got != "demo" {
		t.Errorf("no projects: %q, want demo", got)
	}
}

// runOnFadedPortrait runs the demo project on a portrait saved as the PNG name with
// every pixel at alpha, and returns the run's report and its one processed output.
func runOnFadedPortrait(t *testing.T, name string, alpha uint8) (string, image.Image) {
	t.Helper()
	in := t.TempDir()
	data := rgbaPNG(t, "../../testdata/photos/faces/grace_hopper.jpg", func(int, int) uint8 { return alpha })
	must(t, os.WriteFile(filepath.Join(in, name), data, 0o644))
	out := t.TempDir()
	text, err := runCLI(t, "--root", "../..", "run", "--project", "demo", "--out", out, "--no-progress", in)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	processed, err := filepath.Glob(filepath.Join(out, "processed", "*", name+".jpg"))
	must(t, err)
	if len(processed) != 1 {
		t.Fatalf("outputs %v\n%s", processed, text)
	}
	f, err := os.Open(processed[0])
	must(t, err)
	defer f.Close()
	img, err := jpeg.Decode(f)
	must(t, err)
	return text, img
}
