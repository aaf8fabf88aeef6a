package config

import (
	"encoding/json"
	"fmt"
	"strings"
)

// referenceProject is a small complete project: its defaults fill the reference's
// default column (an array's items take the defaults of their first item).
const referenceProject = `apiVersion: visionstack/v1
kind: Project
name: example
gcp: {project: example-prod, region: europe-west3}
pipeline:
  analyses:
    - {name: faces, model: "builtin:faces"}
    - {name: parts, model: "onnx:model.onnx", onnx: {}}
  transforms: [{blur: {analysis: faces}}, {stripMetadata: {}}, {downscale: {}}]
  actions: [{store: {}}, {record: {}}, {publish: {}}]
monitoring: {drift: {analysis: faces}}
model: {image: "example.invalid/visionstack@sha256:0"}
`

// Reference is the config reference page: every key of a project file, its type, its
// default and its meaning, from the JSON Schema (itself from the Go types and their
// doc comments) and the defaults in this package. docs/config-reference.md is it;
// a test fails when it is stale.
func Reference() (string, error) {
	var schema struct {
		Defs map[string]node `json:"$defs"`
	}
	if err := json.Unmarshal(SchemaJSON(), &schema); err != nil {
		return "", err
	}
	p, err := Load("reference.yaml", []byte(referenceProject))
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	var defaults any
	if err := json.Unmarshal(raw, &defaults); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# Config reference\n\n<!-- Generated from runtime/config (the Go types, their comments and defaults): `make docs`. Do not edit. -->\n\n")
	b.WriteString("Every key of `projects/NAME/project.yaml`. Unknown keys, wrong types and values out of range are errors with their line; `visionstack validate` lists them all. Sizes are written `1048576`, `512KiB`, `20MiB` or `1.5MB`; counts `50000000` or `50M`; durations `30s`, `5m`. A guide with examples: [config.md](config.md).\n\n")
	b.WriteString("| key | type | default | meaning |\n|---|---|---|---|\n")
	walk(&b, schema.Defs, schema.Defs["Project"], "", defaults, map[string]bool{})
	return b.String(), nil
}

type node struct {
	Ref         string          `json:"$ref"`
	Type        string          `json:"type"`
	Enum        []any           `json:"enum"`
	Items       *node           `json:"items"`
	Properties  json.RawMessage `json:"properties"`
	Description string          `json:"description"`
	Required    []string        `json:"required"`
}

// props are a node's properties in file order.
func (n node) props() ([]string, map[string]node) {
	var m map[string]node
	_ = json.Unmarshal(n.Properties, &m)
	var order []string
	dec := json.NewDecoder(strings.NewReader(string(n.Properties)))
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			if depth == 1 {
				if _, ok := m[t]; ok && !contains(order, t) {
					order = append(order, t)
				}
			}
		}
	}
	return order, m
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func walk(b *strings.Builder, defs map[string]node, n node, path string, def any, seen map[string]bool) {
	order, props := n.props()
	for _, k := range order {
		p := props[k]
		key := k
		if path != "" {
			key = path + "." + k
		}
		target, typ := p, p.Type
		if p.Ref != "" {
			name := strings.TrimPrefix(p.Ref, "#/$defs/")
			target, typ = defs[name], "object"
			if target.Properties == nil {
				typ = map[string]string{"ByteSize": "size", "Count": "count", "Duration": "duration"}[name]
				if typ == "" {
					typ = target.Type
				}
			}
		}
		var sub any
		if m, ok := def.(map[string]any); ok {
			sub = m[k]
		}
		if typ == "array" && p.Items != nil {
			item := *p.Items
			if item.Ref != "" {
				item = defs[strings.TrimPrefix(item.Ref, "#/$defs/")]
				typ = "list of objects"
			} else {
				typ = "list of " + item.Type
			}
			fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", key, typ, value(sub, item.Properties != nil), text(p, target, contains(n.Required, k)))
			if item.Properties != nil && !seen[key] {
				seen[key] = true
				var first any
				if l, ok := sub.([]any); ok && len(l) > 0 {
					first = l[0]
				}
				walk(b, defs, item, key+"[]", first, seen)
			}
			continue
		}
		if len(p.Enum) > 0 || len(target.Enum) > 0 {
			e := p.Enum
			if len(e) == 0 {
				e = target.Enum
			}
			var vs []string
			for _, v := range e {
				vs = append(vs, fmt.Sprint(v))
			}
			typ = "one of " + strings.Join(vs, ", ")
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", key, typ, value(sub, target.Properties != nil), text(p, target, contains(n.Required, k)))
		if target.Properties != nil && !seen[key] {
			seen[key] = true
			walk(b, defs, target, key, sub, seen)
		}
	}
}

// value is a default as it would be written, or — for objects (their keys say it)
// and for nothing set.
func value(v any, object bool) string {
	switch x := v.(type) {
	case nil:
		return "—"
	case map[string]any:
		return "—"
	case []any:
		if object || len(x) == 0 {
			return "—"
		}
	case string:
		if x == "" {
			return "—"
		}
	}
	raw, _ := json.Marshal(v)
	return "`" + strings.ReplaceAll(string(raw), "|", "\\|") + "`"
}

func text(p, target node, required bool) string {
	d := p.Description
	if d == "" {
		d = target.Description
	}
	d = strings.Join(strings.Fields(d), " ")
	d = strings.ReplaceAll(d, "|", "\\|")
	if required {
		d = "**Required.** " + d
	}
	return d
}
