package config

import (
	_ "embed"
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id written into the generated schema.
const SchemaID = "https://visionstack.dev/schemas/project.schema.json"

//go:embed project.schema.json
var schemaJSON []byte

// SchemaJSON is the committed JSON Schema of project files, for editors and `visionstack schema`.
// TestSchemaUpToDate fails when it no longer matches the Go types.
func SchemaJSON() []byte { return schemaJSON }

// GenerateSchema reflects the Go types into a JSON Schema. commentsDir, when not
// empty, is this package's source directory: its doc comments become descriptions.
func GenerateSchema(commentsDir string) ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
	}
	if commentsDir != "" {
		if err := r.AddGoComments("github.com/visionstack/visionstack/runtime/config", commentsDir); err != nil {
			return nil, err
		}
	}
	s := r.Reflect(&Project{})
	s.ID = SchemaID
	s.Title = "visionstack project"
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
