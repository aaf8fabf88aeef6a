package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra/doc"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/cli from the command tree")

// cliDocs is each command's reference page, generated from the cobra command tree.
func cliDocs(t *testing.T) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
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
