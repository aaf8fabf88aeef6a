package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a project file, located where a person can find it.
type Problem struct {
	File    string // as given to Load
	Line    int    // 1-based; 0 when unknown
	Column  int
	Path    string // e.g. pipeline.analyses[1].model
	Message string // says what to do
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
	}
	if p.Path != "" {
		return fmt.Sprintf("%s: %s: %s", loc, p.Path, p.Message)
	}
	return fmt.Sprintf("%s: %s", loc, p.Message)
}

// Problems is every problem found; Load and Validate return it as their error.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// LoadFile reads, strictly decodes, defaults and validates a project file.
func LoadFile(path string) (*Project, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read project file: %w", err)
	}
	p, err := Load(path, data)
	if err == nil {
		p.Dir = filepath.Dir(path)
	}
	return p, err
}

// Load decodes data (named file in messages), applies defaults and validates.
// The error, when not nil, is a Problems listing everything found in one pass: unknown
// keys, wrong types, bad values and references, each with its line and key path.
func Load(file string, data []byte) (*Project, error) {
	p, root, err := Decode(file, data)
	var probs Problems
	if err != nil {
		if !errors.As(err, &probs) || p == nil {
			return nil, err
		}
	}
	p.ApplyDefaults()
	// A key with a wrong type or an unknown name is reported once, as that: the value
	// checks do not add a second problem for what could not be read.
	said := map[string]bool{}
	for _, pr := range probs {
		said[pr.Path] = true
	}
	for _, pr := range p.Validate() {
		if said[pr.Path] {
			continue
		}
		pr.File = file
		pr.Line, pr.Column = locate(root, pr.Path)
		probs = append(probs, pr)
	}
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
		return nil, probs
	}
	return p, nil
}

// Decode parses data strictly without defaults or validation: unknown and duplicate
// keys, wrong types and multiple documents are errors with line numbers.
func Decode(file string, data []byte) (*Project, *yaml.Node, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, Problems{{File: file, Message: "the file is empty: start from `visionstack new` or templates/project.yaml"}}
		}
		return nil, nil, Problems{yamlProblem(file, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, Problems{{File: file, Line: extra.Line, Column: extra.Column,
			Message: "a project file holds one YAML document: remove the second '---' and what follows"}}
	}
	// Every unknown key and every wrong type, not the first of them: the decode goes on
	// past both (unknown keys are not decoded; yaml.v3 collects type errors).
	probs := unknownKeys(file, &root, reflect.TypeFor[Project](), "")
	var p Project
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&p); err != nil {
		probs = append(probs, typeProblems(file, &root, err)...)
	}
	if len(probs) > 0 {
		return &p, &root, probs
	}
	return &p, &root, nil
}

// yamlProblem turns a syntax error into a Problem; yaml.v3 writes "yaml: line N: msg",
// where N is often where the enclosing block began (an indentation slip on line 25
// was reported at the "pipeline:" of line 8). The line the parser actually stops at
// is found by parsing ever longer starts of the file: the first that fails ends
// there.
func yamlProblem(file string, data []byte, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	lines := strings.SplitAfter(string(data), "\n")
	for k := max(line, 1); k <= len(lines); k++ {
		var n yaml.Node
		if yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &n) != nil {
			line = k
			break
		}
	}
	return Problem{File: file, Line: line, Column: 1, Message: "not valid YAML: " + msg + " (check this line's indentation and quoting, and the lines above it)"}
}

// typeProblems lists yaml.v3's type errors with their key paths and what to write.
func typeProblems(file string, root *yaml.Node, err error) Problems {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Problems{{File: file, Message: err.Error()}}
	}
	var out Problems
	for _, e := range te.Errors {
		var line int
		msg := e
		if n, _ := fmt.Sscanf(e, "line %d:", &line); n == 1 {
			msg = strings.TrimSpace(e[strings.Index(e, ":")+1:])
		}
		shown := ""
		if m := reCannot.FindStringSubmatch(msg); m != nil {
			shown = m[2]
		}
		path, col, value := pathAtLine(root, line, shown)
		out = append(out, Problem{File: file, Line: line, Column: col, Path: path, Message: friendlyType(msg, value)})
	}
	return out
}

var reCannot = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.+)$")

// friendlyType rewords yaml.v3's "cannot unmarshal !!str `five` into int" as what was
// found, what is wanted, and how to write it; value is the value as written (yaml.v3
// shortens it).
func friendlyType(msg, value string) string {
	m := reCannot.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	if value != "" {
		m[2] = value
	}
	found := map[string]string{"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
		"seq": "a list", "map": "a mapping", "null": "nothing"}[m[1]]
	if found == "" {
		found = m[1]
	}
	want, how := m[3], ""
	switch {
	case strings.HasPrefix(want, "[]"):
		want, how = "a list", fmt.Sprintf("write [%s] or one item a line starting with '- '", m[2])
	case strings.Contains(want, "int"):
		want, how = "a whole number", "write digits, e.g. 5"
	case strings.Contains(want, "float"):
		want, how = "a number", "write e.g. 0.5"
	case want == "bool":
		want, how = "true or false", "write true or false"
	case want == "string":
		want, how = "text", "quote it"
	case strings.HasPrefix(want, "config.") || strings.HasPrefix(want, "map["):
		want, how = "a mapping", "write key: value pairs under it, or {} for none"
	}
	out := fmt.Sprintf("%s is %s (%q); it must be %s", "the value", found, m[2], want)
	if how != "" {
		out += ": " + how
	}
	return out
}

// pathAtLine finds the key whose value is on line (its dotted path) and the value's
// column, walking the YAML tree. A line can hold several values (a flow mapping:
// {maxAttempts: five, minBackoff: 10s}); yaml.v3 names the line and the value, which
// it shortens past 7 characters ("ops@acm..."): the value written so picks the key.
func pathAtLine(n *yaml.Node, line int, shown string) (string, int, string) {
	type at struct {
		path, value string
		col         int
		scalar      bool
	}
	var on []at
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				if v.Line == line {
					on = append(on, at{p, v.Value, v.Column, v.Kind == yaml.ScalarNode})
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if c.Line == line && c.Kind == yaml.ScalarNode {
					on = append(on, at{p, c.Value, c.Column, true})
				}
				walk(c, p)
			}
		}
	}
	if n != nil {
		walk(n, "")
	}
	short, cut := strings.CutSuffix(shown, "...")
	for _, a := range on {
		if a.scalar && shown != "" && (a.value == shown || cut && strings.HasPrefix(a.value, short)) {
			return a.path, a.col, a.value
		}
	}
	// Not found by its value: the line's last scalar value, else its first value.
	for i := len(on) - 1; i >= 0; i-- {
		if on[i].scalar {
			return on[i].path, on[i].col, on[i].value
		}
	}
	if len(on) > 0 {
		return on[0].path, on[0].col, on[0].value
	}
	return "", 1, ""
}

// unknownKeys walks the YAML tree beside the Go type and reports every key the type
// does not have, with the keys it does have, so one run shows all typos.
func unknownKeys(file string, n *yaml.Node, t reflect.Type, path string) Problems {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return unknownKeys(file, n.Content[0], t, path)
	}
	if n.Kind == yaml.AliasNode {
		return nil
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return nil
	}
	var out Problems
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil
			}
			return Problems{{File: file, Line: n.Line, Column: n.Column, Path: path,
				Message: fmt.Sprintf("expected a mapping with keys %s", strings.Join(yamlKeys(t), ", "))}}
		}
		fields := map[string]reflect.StructField{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if f.IsExported() && name != "-" && name != "" {
				fields[name] = f
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				out = append(out, Problem{File: file, Line: k.Line, Column: k.Column, Path: path,
					Message: unknownKeyMessage(k.Value, yamlKeys(t))})
				continue
			}
			out = append(out, unknownKeys(file, v, f.Type, join(path, k.Value))...)
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				out = append(out, unknownKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				out = append(out, unknownKeys(file, n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
			}
		}
	}
	return out
}

func unknownKeyMessage(key string, known []string) string {
	msg := fmt.Sprintf("unknown key %q", key)
	if best := closest(key, known); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return msg + "; allowed here: " + strings.Join(known, ", ")
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// closest returns the known key within edit distance 2 of key, if any.
func closest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// locate finds the line of a path such as pipeline.analyses[1].model in the YAML tree;
// when the path is not written in the file (a missing key) it returns its parent's line.
func locate(root *yaml.Node, path string) (int, int) {
	n := root
	if n == nil {
		return 0, 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	line, col := n.Line, n.Column
	for _, part := range splitPath(path) {
		next := child(n, part)
		if next == nil {
			break
		}
		n = next
		line, col = n.Line, n.Column
	}
	return line, col
}

func splitPath(path string) []string {
	var parts []string
	for _, seg := range strings.Split(path, ".") {
		for seg != "" {
			i := strings.IndexByte(seg, '[')
			if i < 0 {
				parts = append(parts, seg)
				break
			}
			if i > 0 {
				parts = append(parts, seg[:i])
			}
			j := strings.IndexByte(seg, ']')
			if j < i {
				break
			}
			parts = append(parts, seg[i:j+1])
			seg = seg[j+1:]
		}
	}
	return parts
}

func child(n *yaml.Node, part string) *yaml.Node {
	if strings.HasPrefix(part, "[") {
		var i int
		if _, err := fmt.Sscanf(part, "[%d]", &i); err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
			return nil
		}
		return n.Content[i]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == part {
			return n.Content[i+1]
		}
	}
	return nil
}
