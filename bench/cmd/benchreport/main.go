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
}

var benches = []struct{ name, what string }{
	{"BenchmarkPrepare12MP", "Prepare: header check, 12 MP JPEG → 1024 px, payload JPEG ≤ 1.5 MB base64"},
	{"BenchmarkAnalyzeFaces", "Analyze: built-in face model on the 1024 px payload"},
	{"BenchmarkTransform12MP", "Transform: 12 MP → 2048 px, anonymize faces, strip metadata, JPEG q85"},
	{"BenchmarkStore", "Act/store: processed JPEG into the local bucket (create-if-absent)"},
	{"BenchmarkRecord", "Act/record: claim + final record in SQLite"},
	{"BenchmarkPipeline12MP", "Whole local job: claim, load, prepare, faces, blur, 2048 px out, store, publish, record"},
}

func main() {
	out := flag.String("out", "bench/RESULTS.md", "report file")
	count := flag.Int("n", 10, "iterations per benchmark")
	flag.Parse()
	bin := filepath.Join(os.TempDir(), "visionstack-bench.test")
	if err := run("go", "test", "-c", "-o", bin, "./bench"); err != nil {
		fail(err)
	}
	var rs []result
	for _, b := range benches {
		cmd := exec.Command(bin, "-test.run", "^$", "-test.bench", "^"+b.name+"$", "-test.benchmem",
			"-test.cpu", "1", "-test.benchtime", fmt.Sprintf("%dx", *count))
		cmd.Dir = "bench"
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
	if err := os.WriteFile(*out, []byte(render(rs, *count)), 0o644); err != nil {
		fail(err)
	}
	fmt.Println("wrote", *out)
}

func parse(name string, raw []byte) (result, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || !strings.HasPrefix(f[0], name) {
			continue
		}
		r := result{name: name}
		r.n, _ = strconv.Atoi(f[1])
		for i := 2; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i], 64)
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
	b.WriteString("Each benchmark ran in its own process on one core (GOMAXPROCS=1, one libvips thread), ")
	fmt.Fprintf(&b, "%d iterations, on a 4240×2827 (12.0 MP) JPEG made by upscaling testdata/photos/faces/faceapi_sample1.jpg (3 real faces).\n\n", n)
	b.WriteString("| benchmark | what it does | ms/image | peak RSS (MB) | bytes/op | allocs/op |\n|---|---|---:|---:|---:|---:|\n")
	for _, bench := range benches {
		r := by[bench.name]
		fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f | %.0f | %.0f |\n", bench.name, bench.what, r.msPerImage, r.peak, r.bytesOp, r.allocsOp)
	}
	prep := by["BenchmarkPrepare12MP"].msPerImage
	sum := 0.0
	for _, name := range []string{"BenchmarkPrepare12MP", "BenchmarkAnalyzeFaces", "BenchmarkTransform12MP", "BenchmarkStore", "BenchmarkRecord"} {
		sum += by[name].msPerImage
	}
	whole := by["BenchmarkPipeline12MP"].msPerImage
	b.WriteString("\n## Targets\n\n| target | measured | verdict |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| Prepare 12 MP → 1024 px ≤ 100 ms on one core | %.1f ms | %s |\n", prep, verdict(prep <= 100))
	fmt.Fprintf(&b, "| Whole local pipeline ≤ 1.25 × sum of its parts | %.1f ms vs %.1f ms (%.2f×) | %s |\n", whole, sum, whole/sum, verdict(whole <= 1.25*sum))
	b.WriteString("\nRerun: `make bench` (about a minute). Peak RSS is the process's VmHWM after the benchmark, setup included.\n")
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
