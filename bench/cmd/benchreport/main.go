// Command benchreport runs the step benchmarks in bench/, each in its own process
// (so each peak RSS is its own) on one core, and writes bench/RESULTS.md with the
// numbers and the targets they are held to.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type result struct {
	name              string
	msPerImage, peak  float64
	bytesOp, allocsOp float64
	n                 int
	metrics           map[string]float64 // every unit the benchmark reported
}

var benches = []struct{ name, what, pkg string }{
	{"BenchmarkPrepare12MP", "Prepare: header check, the one decode of a 12 MP JPEG (shrink-on-load to 2048 px, for Transform too), 1024 px payload JPEG ≤ 1.5 MB base64", ""},
	{"BenchmarkBlazeFaceWindow", "Face detector alone: BlazeFace on one 256×256 window (ONNX Runtime, one thread)", "runtime/model/blazeface"},
	{"BenchmarkAnalyzeFaces", "Analyze: built-in face model (BlazeFace, whole-image window + dense run at full resolution) on the 1024 px payload", ""},
	{"BenchmarkTransform12MP", "Transform: from Prepare's 2048 px pixels, anonymize faces, strip metadata, JPEG q85 (no decode)", ""},
	{"BenchmarkStore", "Act/store: processed JPEG into the local bucket (create-if-absent)", ""},
	{"BenchmarkRecord", "Act/record: claim + final record in SQLite", ""},
	{"BenchmarkPipeline12MP", "Whole local job: claim, load, prepare, faces, blur, anonymization re-check, 2048 px out, store, publish, record", ""},
	{"BenchmarkPipeline12MPNoRecheck", "The same whole job with blur.verify off (what the re-check costs)", ""},
	{"BenchmarkSyncAnalyze1MP", "Service: POST /v1/images:analyze of a 1 MP JPEG over HTTP (prepare, faces, hand-off)", ""},
	{"BenchmarkInflight12MP", "Memory: 4 whole jobs on 12 MP JPEGs at once, no admission control (2 cores); MiB each in-flight image adds at peak", ""},
	{"BenchmarkConcurrent16x12MP", "Service: 16 whole jobs on 12 MP JPEGs at once, pixel budget of a 512 MiB instance (2 cores)", ""},
	{"BenchmarkTelemetryPerJob", "Telemetry of one job: 5 spans, step/model/outcome/bytes/pixels/in-flight metrics, drift observation (window 500) and gauges; per job", ""},
	{"BenchmarkReviewPage", "Review page over 2000 finished jobs: 48 cards, drift replayed over the last 1000 (SQLite); ms per page", ""},
	{"BenchmarkOwnModel", "Your own model: the defects example's ONNX file in-process (128×128 input), per image: PNG payload decoded, letterboxed, run, YOLOv8 output decoded, NMS", ""},
	{"BenchmarkOwnModelFirstPrediction", "Your own model, from the file's bytes to the first prediction: load into ONNX Runtime, inspect, first run (ms per start)", ""},
	{"BenchmarkPeerSampleMethod", "Peer: the whole local job vs Google's Cloud Run sample method (`convert - -blur 0x8 -` per image, ImageMagick) on the same 8 photos (six ≈2.7 MP, two 12 MP, 3–5 faces), two at a time (2 cores)", ""},
	{"BenchmarkPushPeerSampleMethod", "Peer on the push path: the emulators' chain (upload, notification, push, whole job) vs the sample method on the same 8 photos, two at a time (2 cores)", "runtime/cloudmode"},
	{"BenchmarkPushThroughput", "Push path on the emulators: fake GCS upload → notification → Pub/Sub emulator push → server → Firestore emulator; 512×600 photos, batches of 8 (2 cores)", "runtime/cloudmode"},
}

// cpus per benchmark: the step targets are per core; the concurrency ones use both.
var cpus = map[string]string{"BenchmarkConcurrent16x12MP": "2", "BenchmarkInflight12MP": "2", "BenchmarkPushThroughput": "2", "BenchmarkPeerSampleMethod": "2", "BenchmarkPushPeerSampleMethod": "2"}

func main() {
	out := flag.String("out", "bench/RESULTS.md", "report file")
	count := flag.Int("n", 10, "iterations per benchmark")
	baseline := flag.String("baseline", "bench/baseline.txt", "go test -bench output of an earlier version to compare with (empty: none)")
	flag.Parse()
	var base map[string]result
	if *baseline != "" {
		raw, err := os.ReadFile(*baseline)
		if err != nil {
			fail(err)
		}
		base = map[string]result{}
		for _, b := range benches {
			if r, err := parse(b.name, raw); err == nil {
				base[b.name] = r
			}
		}
	}
	var rs []result
	bins := map[string]string{}
	for _, b := range benches {
		pkg := b.pkg
		if pkg == "" {
			pkg = "bench"
		}
		bin, ok := bins[pkg]
		if !ok {
			bin = filepath.Join(os.TempDir(), "visionstack-"+strings.ReplaceAll(pkg, "/", "-")+".test")
			if err := run("go", "test", "-c", "-o", bin, "./"+pkg); err != nil {
				fail(err)
			}
			bins[pkg] = bin
		}
		n := *count
		if b.pkg != "" || b.name == "BenchmarkPeerSampleMethod" {
			n = 3 // batches of 8: 24 images
		}
		cmd := exec.Command(bin, "-test.run", "^$", "-test.bench", "^"+b.name+"$", "-test.benchmem",
			"-test.cpu", cpuFor(b.name), "-test.benchtime", fmt.Sprintf("%dx", n))
		cmd.Dir = pkg
		cmd.Stderr = os.Stderr
		raw, err := cmd.Output()
		if err != nil {
			fail(fmt.Errorf("%s: %w\n%s", b.name, err, raw))
		}
		r, err := parse(b.name, raw)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%-24s %8.1f ms/image %8.1f MB peak RSS %8.0f allocs/op\n", b.name, r.msPerImage, r.peak, r.allocsOp)
		rs = append(rs, r)
	}
	if err := os.WriteFile(*out, []byte(render(rs, *count)+compare(rs, base, *baseline)), 0o644); err != nil {
		fail(err)
	}
	fmt.Println("wrote", *out)
}

// cpuModel names the processor and its vector extensions: figures from another CPU
// are not these.
func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	var name string
	var flags []string
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case "model name":
			if name == "" {
				name = strings.TrimSpace(v)
			}
		case "flags":
			if flags == nil {
				for _, f := range strings.Fields(v) {
					if strings.HasPrefix(f, "avx") || f == "fma" || f == "f16c" {
						flags = append(flags, f)
					}
				}
			}
		}
	}
	return fmt.Sprintf("%s; %s", name, strings.Join(flags, " "))
}

func cpuFor(name string) string {
	if c, ok := cpus[name]; ok {
		return c
	}
	return "1"
}

func parse(name string, raw []byte) (result, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || !strings.HasPrefix(f[0], name) {
			continue
		}
		r := result{name: name, metrics: map[string]float64{}}
		r.n, _ = strconv.Atoi(f[1])
		for i := 2; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i], 64)
			r.metrics[f[i+1]] = v
			switch f[i+1] {
			case "ms/image":
				r.msPerImage = v
			case "peak-RSS-MB":
				r.peak = v
			case "B/op":
				r.bytesOp = v
			case "allocs/op":
				r.allocsOp = v
			}
		}
		return r, nil
	}
	return result{}, fmt.Errorf("%s: no result line in:\n%s", name, raw)
}

func render(rs []result, n int) string {
	by := map[string]result{}
	for _, r := range rs {
		by[r.name] = r
	}
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Benchmark results\n\nWritten by `make bench` (bench/cmd/benchreport) on %s, %s, %s/%s, %d CPUs available, host %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), host)
	fmt.Fprintf(&b, "CPU: %s\n\n", cpuModel())
	b.WriteString("Each benchmark ran in its own process on one core (GOMAXPROCS=1, one libvips thread; the concurrent ones on both cores), ")
	fmt.Fprintf(&b, "%d iterations, on a 4240×2827 (12.0 MP) JPEG made by upscaling testdata/photos/faces/faceapi_sample1.jpg (3 real faces).\n\n", n)
	b.WriteString("| benchmark | what it does | ms/image | user ms/image | system ms/image | system share | minor faults/image | peak RSS (MB) | bytes/op | allocs/op |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, bench := range benches {
		r := by[bench.name]
		cpu := "— | — | — | —" // not measured by this benchmark
		if _, ok := r.metrics["user-ms/image"]; ok {
			cpu = fmt.Sprintf("%.1f | %.1f | %.0f%% | %.0f", r.metrics["user-ms/image"], r.metrics["sys-ms/image"], r.metrics["sys-%"], r.metrics["minflt/image"])
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f | %s | %.1f | %.0f | %.0f |\n", bench.name, bench.what, r.msPerImage, cpu, r.peak, r.bytesOp, r.allocsOp)
	}
	prep := by["BenchmarkPrepare12MP"].msPerImage
	sum := 0.0
	for _, name := range []string{"BenchmarkPrepare12MP", "BenchmarkAnalyzeFaces", "BenchmarkTransform12MP", "BenchmarkStore", "BenchmarkRecord"} {
		sum += by[name].msPerImage
	}
	whole := by["BenchmarkPipeline12MP"].msPerImage
	whole12 := by["BenchmarkPipeline12MP"].metrics
	fmt.Fprintf(&b, "\nThe whole 12 MP job's CPU: %.0f ms user and %.0f ms system per image (the kernel %.0f%%), %.0f minor page faults per image.\n",
		whole12["user-ms/image"], whole12["sys-ms/image"], whole12["sys-%"], whole12["minflt/image"])
	b.WriteString("\n## Targets\n\n| target | measured | verdict |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| Prepare 12 MP → 1024 px ≤ 100 ms on one core (Prepare now holds the job's one decode, at 2048 px, for Transform too) | %.1f ms; Prepare + Transform %.1f ms | %s |\n",
		prep, prep+by["BenchmarkTransform12MP"].msPerImage, verdict(prep <= 100))
	fmt.Fprintf(&b, "| Whole 12 MP job ≤ 300 ms on one core, current face model | %.1f ms with the anonymization re-check (%.1f ms without), of which the face model %.1f ms per pass | %s |\n",
		whole, by["BenchmarkPipeline12MPNoRecheck"].msPerImage, by["BenchmarkAnalyzeFaces"].msPerImage, verdict(whole <= 300))
	win := by["BenchmarkBlazeFaceWindow"].msPerImage
	fmt.Fprintf(&b, "| Face detector ≤ 30 ms per image on one core at its input size (256×256) | %.1f ms per window; a 1024 px payload (whole-image window + dense run) %.1f ms | %s per window |\n",
		win, by["BenchmarkAnalyzeFaces"].msPerImage, verdict(win > 0 && win <= 30))
	per := by["BenchmarkInflight12MP"].metrics["MiB/inflight-image"]
	fmt.Fprintf(&b, "| ≤ 64 MiB per in-flight 12 MP image | %.1f MiB | %s |\n", per, verdict(per > 0 && per <= 64))
	bare := by["BenchmarkPipeline12MPNoRecheck"].msPerImage // the parts measured do not include the re-check
	fmt.Fprintf(&b, "| Whole local pipeline ≤ 1.25 × sum of its parts (without the re-check, which no part measures) | %.1f ms vs %.1f ms (%.2f×) | %s |\n", bare, sum, bare/sum, verdict(bare <= 1.25*sum))
	sync := by["BenchmarkSyncAnalyze1MP"].metrics
	conc := by["BenchmarkConcurrent16x12MP"]
	fmt.Fprintf(&b, "| Sync analyze overhead beyond the model ≤ 5 ms p99 (1 MP) | HTTP + JSON %.2f ms; with the durable hand-off (store original, queue task) %.1f ms; with Prepare too %.1f ms | %s for HTTP + JSON; %s counting the hand-off |\n",
		sync["p99-http-json-ms"], sync["p99-beyond-model+prepare-ms"], sync["p99-beyond-model-ms"],
		verdict(sync["p99-http-json-ms"] <= 5), verdict(sync["p99-beyond-model+prepare-ms"] <= 5))
	fmt.Fprintf(&b, "| No out-of-memory at a 512 MiB limit with 16 concurrent 12 MP images | peak RSS %.1f MiB (pixel budget %.1f MP) | %s |\n",
		conc.peak, conc.metrics["budget-MP"], verdict(conc.peak < 512))
	tel, page := by["BenchmarkTelemetryPerJob"].metrics["us/job"], by["BenchmarkReviewPage"].metrics["ms/page"]
	fmt.Fprintf(&b, "| Telemetry ≤ 1%% of a whole 12 MP job | %.1f µs per job (%.4f%% of %.1f ms) | %s |\n", tel, tel/10/whole, whole, verdict(tel/1000 <= 0.01*whole))
	fmt.Fprintf(&b, "| Review page ≤ 250 ms over 2000 jobs (one core) | %.1f ms | %s |\n", page, verdict(page <= 250))
	peer := by["BenchmarkPeerSampleMethod"].metrics
	sysShare := max(whole12["sys-%"], peer["sys-%"])
	fmt.Fprintf(&b, "| System CPU ≤ 10%% of the whole job's CPU (issue 26) | the 12 MP job %.1f%% (%.0f of %.0f ms); the 8 peer photos two at a time %.1f%% (%.0f of %.0f ms an image), %.0f minor faults an image | %s |\n",
		whole12["sys-%"], whole12["sys-ms/image"], whole12["user-ms/image"]+whole12["sys-ms/image"],
		peer["sys-%"], peer["sys-ms/image"], peer["user-ms/image"]+peer["sys-ms/image"], peer["minflt/image"], verdict(sysShare > 0 && sysShare <= 10))
	fmt.Fprintf(&b, "| Whole 12 MP job with the re-check ≤ 1.15× the same job without it (issue 26) | %.1f ms vs %.1f ms: %.2f× | %s |\n",
		whole, bare, whole/bare, verdict(whole <= 1.15*bare))
	fmt.Fprintf(&b, "| Whole local job ≥ 4× the sample method's throughput (issue 26; the first aim was 10×) (same 8 photos, 2 at a time, 2 cores) | %.2f images/s vs %.2f images/s: %.2f× (with the anonymization re-check on) | %s |\n",
		peer["ours-images/s"], peer["peer-images/s"], peer["ratio"], verdict(peer["ratio"] >= 4))
	pp := by["BenchmarkPushPeerSampleMethod"].metrics
	fmt.Fprintf(&b, "| Push path on the emulators ≥ 3.5× the sample method's throughput (issue 26; the first aim was 10×) (same 8 photos, 2 at a time) | %.2f images/s vs %.2f images/s: %.2f× (with the re-check on) | %s |\n",
		pp["ours-images/s"], pp["peer-images/s"], pp["ratio"], verdict(pp["ratio"] >= 3.5))
	b.WriteString(floor(by))
	fmt.Fprintf(&b, "\nSync analyze latency at 1 MP: p50 %.1f ms, p99 %.1f ms; the built-in face model is most of it.\n", sync["p50-ms"], sync["p99-ms"])
	push := by["BenchmarkPushThroughput"].metrics
	fmt.Fprintf(&b, "Push-path throughput on the emulators: %.2f images/s (%.0f ms/image) on 2 cores, most of it the built-in model; the emulators and fake GCS share the machine.\n",
		push["images/s"], push["ms/image"])
	b.WriteString("\nRerun: `make bench` (about five minutes). Peak RSS is the process's VmHWM after the benchmark, setup included.\n")
	return b.String()
}

// floor says what the face network alone costs a job, from the pixels it ran per
// image (net-MP/image) at one window's cost per pixel: a bound no work outside the
// network can beat, set against the speed targets.
func floor(by map[string]result) string {
	win := by["BenchmarkBlazeFaceWindow"].msPerImage
	whole := by["BenchmarkPipeline12MP"].metrics["net-MP/image"]
	peer := by["BenchmarkPeerSampleMethod"].metrics
	if win <= 0 || whole <= 0 || peer["net-MP/image"] <= 0 || peer["peer-images/s"] <= 0 {
		return ""
	}
	perMP := win / (256 * 256 / 1e6) // ms per megapixel of network input
	// Two cores: the sample method's CPU time per image is 2 / its images a second.
	budget := 2 / peer["peer-images/s"] * 1000 / 10
	net := peer["net-MP/image"] * perMP
	verdict := "The network alone exceeds both: neither target can be met with it at the resolution the dev-set recall needs; see docs/benchmarks.md."
	if whole*perMP <= 300 || net <= budget {
		verdict = "The network alone leaves room under at least one of them in this run."
	}
	return fmt.Sprintf("\nThe face network's own floor (%.1f ms per 256×256 window in this run, %.0f ms per megapixel of its input): "+
		"the whole 12 MP job runs it over %.2f MP (analysis and re-check), %.0f ms on one core before any other step, against the 300 ms target; "+
		"on the 8 peer photos %.2f MP an image, %.0f ms of one core, where 10× the sample method leaves %.0f ms of one core for the whole job (%.1f× that). %s\n",
		win, perMP, whole, whole*perMP, peer["net-MP/image"], net, budget, net/budget, verdict)
}

// compare renders the benchmarks that also ran in the baseline, side by side.
func compare(rs []result, base map[string]result, file string) string {
	if len(base) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Against the baseline\n\nFrom `%s` (how it was taken is in its first lines).\n\n", file)
	b.WriteString("| benchmark | ms/image then | ms/image now | change | peak RSS then (MB) | now (MB) | MiB per in-flight image then | now |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		o, ok := base[r.name]
		if !ok {
			continue
		}
		per := func(x result) string {
			if v, ok := x.metrics["MiB/inflight-image"]; ok {
				return fmt.Sprintf("%.1f", v)
			}
			return ""
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %+.0f%% | %.1f | %.1f | %s | %s |\n", r.name, o.msPerImage, r.msPerImage,
			100*(r.msPerImage/o.msPerImage-1), o.peak, r.peak, per(o), per(r))
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}
