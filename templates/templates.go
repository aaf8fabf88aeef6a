// Package templates holds what `visionstack new` stamps into projects/<name>/.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

// Params fill the templates.
type Params struct {
	Name       string
	GCPProject string
	Region     string
}

// File is one rendered file, its path relative to the repository root.
type File struct {
	Path string
	Data []byte
}

// Render returns the files of a new project, paths relative to the repository root.
func Render(p Params) ([]File, error) {
	targets := []struct{ tmpl, path string }{
		{"project.yaml.tmpl", "projects/" + p.Name + "/project.yaml"},
		{"README.md.tmpl", "projects/" + p.Name + "/README.md"},
		{"Pulumi.stack.yaml.tmpl", "Pulumi." + p.Name + ".yaml"},
		{"github-workflow.yaml.tmpl", ".github/workflows/deploy-" + p.Name + ".yaml"},
		{"cloudbuild.yaml.tmpl", "projects/" + p.Name + "/cloudbuild.yaml"},
	}
	out := make([]File, 0, len(targets))
	for _, t := range targets {
		tpl, err := template.New(t.tmpl).Option("missingkey=error").ParseFS(files, t.tmpl)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", t.tmpl, err)
		}
		var buf bytes.Buffer
		if err := tpl.Execute(&buf, p); err != nil {
			return nil, fmt.Errorf("template %s: %w", t.tmpl, err)
		}
		out = append(out, File{Path: t.path, Data: buf.Bytes()})
	}
	return out, nil
}
