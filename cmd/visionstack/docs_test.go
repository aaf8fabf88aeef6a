package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/cli from the command tree")

// cliDocs is each command's reference page, generated from the cobra command tree.
func cliDocs(t *testing.T) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	// Defaults taken from the environment or the machine are shown as they are on a
	// machine with none of them set: the pages must not change with where they are made.
	for _, k := range []string{"K_SERVICE", "PORT", "VISIONSTACK_PROJECT", "VISIONSTACK_PUSH_AUDIENCE", "VISIONSTACK_PUSH_SERVICE_ACCOUNT", "AIP_HTTP_PORT", "AIP_PREDICT_ROUTE", "AIP_HEALTH_ROUTE", "AIP_MODE"} {
		t.Setenv(k, "")
	}
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	var machineDefaults func(c *cobra.Command)
	machineDefaults = func(c *cobra.Command) {
		if f := c.Flags().Lookup("workers"); f != nil {
			f.DefValue = "the number of CPUs"
		}
		for _, sub := range c.Commands() {
			machineDefaults(sub)
		}
	}
	machineDefaults(root)
	root.DisableAutoGenTag = true // no date: a page changes only when the command does
	if err := doc.GenMarkdownTree(root, dir); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// docs/cli holds what the command tree generates: a flag, a command or a help text
// changed without regenerating fails here.
func TestCLIDocsUpToDate(t *testing.T) {
	want := cliDocs(t)
	const dir = "../../docs/cli"
	if *updateDocs {
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	have, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	var stale []string
	for _, f := range have {
		b, _ := os.ReadFile(f)
		name := filepath.Base(f)
		if w, ok := want[name]; !ok || !bytes.Equal(w, b) {
			stale = append(stale, name)
		}
		delete(want, name)
	}
	for name := range want {
		stale = append(stale, name+" (missing)")
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Fatalf("docs/cli is stale (%s): run `make docs` and commit it", strings.Join(stale, ", "))
	}
}

// slug is the anchor GitHub gives a heading: lower case, punctuation dropped, spaces
// to hyphens.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(strings.TrimLeft(h, "#"))) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// Every link in README.md and docs/ resolves: a file that exists, an anchor that is a
// heading of its page.
func TestDocLinksResolve(t *testing.T) {
	files := []string{"../../README.md"}
	more, _ := filepath.Glob("../../docs/*.md")
	cli, _ := filepath.Glob("../../docs/cli/*.md")
	files = append(append(files, more...), cli...)
	anchors := map[string]map[string]bool{}
	headings := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		raw, _ := os.ReadFile(path)
		fence := false
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "```") {
				fence = !fence
			}
			if !fence && strings.HasPrefix(line, "#") {
				a[slug(line)] = true
			}
		}
		anchors[path] = a
		return a
	}
	links := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fence := false
		for i, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "```") {
				fence = !fence
			}
			if fence {
				continue
			}
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				links++
				file, anchor, _ := strings.Cut(target, "#")
				path := f
				if file != "" {
					path = filepath.Join(filepath.Dir(f), file)
					if _, err := os.Stat(path); err != nil {
						t.Errorf("%s:%d: link to %s: no such file", strings.TrimPrefix(f, "../../"), i+1, target)
						continue
					}
				}
				if anchor != "" && strings.HasSuffix(path, ".md") && !headings(path)[anchor] {
					t.Errorf("%s:%d: link to %s: no heading with that anchor", strings.TrimPrefix(f, "../../"), i+1, target)
				}
			}
		}
	}
	if links < 20 {
		t.Fatalf("only %d links checked", links)
	}
}

// README stays a front page: what visionstack is, the two commands, a tour and links.
func TestREADMEIsShort(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "\n"); n > 250 {
		t.Errorf("README.md has %d lines; keep it to 250 and move the rest to docs/", n)
	}
	for _, want := range []string{"make demo", "make test", "```mermaid"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
}
