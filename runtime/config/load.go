package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
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
// The error, when not nil, is a Problems listing everything found.
func Load(file string, data []byte) (*Project, error) {
	p, root, err := Decode(file, data)
	if err != nil {
		return nil, err
	}
	p.ApplyDefaults()
	if probs := p.Validate(); len(probs) > 0 {
		for i := range probs {
			probs[i].File = file
			probs[i].Line, probs[i].Column = locate(root, probs[i].Path)
		}
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
		return nil, nil, Problems{yamlProblem(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, Problems{{File: file, Line: extra.Line, Column: extra.Column,
			Message: "a project file holds one YAML document: remove the second '---' and what follows"}}
	}
	if probs := unknownKeys(file, &root, reflect.TypeFor[Project](), ""); len(probs) > 0 {
		return nil, nil, probs
	}
	var p Project
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&p); err != nil {
		return nil, nil, typeProblems(file, err)
	}
	return &p, &root, nil
}

// yamlProblem turns a syntax error into a Problem; yaml.v3 writes "yaml: line N: msg".
func yamlProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return Problem{File: file, Line: line, Column: 1, Message: "not valid YAML: " + msg}
}

func typeProblems(file string, err error) Problems {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Problems{yamlProblem(file, err)}
	}
	var out Problems
	for _, e := range te.Errors {
		var line int
		msg := e
		if n, _ := fmt.Sscanf(e, "line %d:", &line); n == 1 {
			msg = strings.TrimSpace(e[strings.Index(e, ":")+1:])
		}
		out = append(out, Problem{File: file, Line: line, Column: 1, Message: msg})
	}
	return out
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
