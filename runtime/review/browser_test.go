package review_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/visionstack/visionstack/runtime/meta"
)

// chromium finds Debian's headless browser ($CHROMIUM overrides).
func chromium(t *testing.T) string {
	// Debian's /usr/bin/chromium is a shell wrapper that loses the DevTools pipe: run the binary.
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("VISIONSTACK_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium not found and VISIONSTACK_REQUIRE_BROWSER is set: scripts/install-deps.sh installs it")
	}
	t.Skip("SKIP: chromium not installed (scripts/install-deps.sh installs it; .ci/run requires it)")
	return ""
}

// layout is what the browser rendered, measured by the page's own DOM.
type layout struct {
	Cards       int `json:"cards"`
	DoneCards   int `json:"doneCards"`
	LoadedPairs int `json:"loadedPairs"` // done cards whose original and processed images both decoded
	Boxes       int `json:"boxes"`
	BoxesInside int `json:"boxesInside"` // boxes drawn within their image's rectangle, with a visible size
	Labels      int `json:"labels"`      // boxes whose label shows a confidence
	// LabelOverlaps: pairs of labels in one picture that cover each other, and
	// labels that cover another box's face (issue 28: neighbours' labels overlapped).
	LabelOverlaps int    `json:"labelOverlaps"`
	Overlapping   string `json:"overlapping"`
	Chart         bool   `json:"chart"`
}

const measure = `(() => {
  const cards = [...document.querySelectorAll("article")];
  const done = cards.filter(c => c.classList.contains("done"));
  const ok = img => img && img.complete && img.naturalWidth > 0;
  let boxes = 0, inside = 0, labels = 0;
  for (const b of document.querySelectorAll(".frame .box")) {
    boxes++;
    const img = b.parentElement.querySelector("img").getBoundingClientRect(), r = b.getBoundingClientRect();
    if (r.width >= 3 && r.height >= 3 && r.left >= img.left - 3 && r.top >= img.top - 3 && r.right <= img.right + 3 && r.bottom <= img.bottom + 3) inside++;
    if (/\d\.\d\d$/.test(b.textContent.trim())) labels++;
  }
  let overlaps = 0, which = [];
  const cover = (a, b) => Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left)) * Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top)) > 1;
  for (const frame of document.querySelectorAll(".frame")) {
    const bs = [...frame.querySelectorAll(".box")];
    const ls = bs.map(b => b.querySelector("span").getBoundingClientRect());
    for (let i = 0; i < bs.length; i++) {
      for (let j = 0; j < bs.length; j++) {
        if (i === j) continue;
        // Another label, or the inside of another box (its face).
        const inner = bs[j].getBoundingClientRect();
        if ((j > i && cover(ls[i], ls[j])) || cover(ls[i], {left: inner.left + 2, right: inner.right - 2, top: inner.top + 2, bottom: inner.bottom - 2})) {
          overlaps++;
          which.push(frame.querySelector("img").alt + " #" + i + "/#" + j);
        }
      }
    }
  }
  return {cards: cards.length, doneCards: done.length,
    loadedPairs: done.filter(c => ok(c.querySelector("img.original")) && ok(c.querySelector("img.processed"))).length,
    boxes, boxesInside: inside, labels, labelOverlaps: overlaps, overlapping: which.join(", "), chart: !!document.querySelector("svg.chart polyline")};
})()`

// TestReviewPageInBrowser opens the review page of a run in headless Chromium and
// checks what a person would see: every image's original and processed pictures
// decoded, every box drawn inside its picture with its label and confidence, the
// drift chart. It saves screenshots under the test's artifacts
// (go test -artifacts -outputdir DIR keeps them).
func TestReviewPageInBrowser(t *testing.T) {
	bin := chromium(t)
	r := runSamples(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Flags: no sandbox as root in CI, and none of Chromium's background network
	// calls, which a closed network refuses.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1100),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelB()

	if err := chromedp.Do(bctx, chromedp.Navigate(r.srv.URL+"/review/")); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`[...document.images].every(i => i.complete)`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("images never finished loading: %v", err)
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[layout](measure))
	if err != nil {
		t.Fatalf("measure: %v", err)
	}
	shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	full, err := chromedp.Run(bctx, chromedp.FullScreenshot(85))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rendered: %+v", got)

	done := 0
	for _, j := range r.jobs {
		if j.State == meta.StateDone {
			done++
		}
	}
	want := 2 * boxesOf(r.jobs)
	switch {
	case got.Cards != len(r.jobs) || got.DoneCards != done:
		t.Errorf("%d cards (%d done), want %d (%d done)", got.Cards, got.DoneCards, len(r.jobs), done)
	case got.LoadedPairs != done:
		t.Errorf("original and processed pictures decoded for %d of %d done images", got.LoadedPairs, done)
	case got.Boxes != want || got.BoxesInside != want || got.Labels != want:
		t.Errorf("boxes: %d drawn, %d inside their picture, %d labelled; want %d each", got.Boxes, got.BoxesInside, got.Labels, want)
	case !got.Chart:
		t.Error("no drift chart")
	case got.LabelOverlaps > 0:
		t.Errorf("%d box labels cover another label or another box's face: %s", got.LabelOverlaps, got.Overlapping)
	}

	// The faces filter, for the README.
	if err := chromedp.Do(bctx, chromedp.Navigate(r.srv.URL+"/review/?filter=faces")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`[...document.images].every(i => i.complete)`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatal(err)
	}
	faces, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.ArtifactDir()
	for name, data := range map[string][]byte{"review.png": shot, "review-full.jpg": full, "review-faces.png": faces} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)
}
