package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// ByteSize is a byte count written as 1048576, "512KiB", "20MiB", "1.5MB" or "2GB".
type ByteSize int64

// Count is a plain count written as 50000000, "50M", "12.5M" or "2G" (decimal).
type Count int64

type unit struct {
	suffix string
	mult   float64
}

// Longest suffixes first so "MiB" is not read as "B".
var byteUnits = []unit{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

var countUnits = []unit{{"K", 1e3}, {"M", 1e6}, {"G", 1e9}}

// ParseByteSize reads "20MiB", "1.5MB" or a plain number of bytes.
func ParseByteSize(s string) (ByteSize, error) {
	v, err := parseUnits(s, byteUnits, "a size: write bytes as 1048576, 512KiB, 20MiB or 1.5MB")
	return ByteSize(v), err
}

// ParseCount reads "50M", "12.5M" or a plain number.
func ParseCount(s string) (Count, error) {
	v, err := parseUnits(s, countUnits, "a count: write 50000000, 50M or 12.5M")
	return Count(v), err
}

func parseUnits(s string, units []unit, what string) (int64, error) {
	s = strings.TrimSpace(s)
	num, mult := s, 1.0
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	v, err := scaled(num, mult)
	if err != nil {
		return 0, fmt.Errorf("%q is not %s", s, what)
	}
	return v, nil
}

func scaled(num string, mult float64) (int64, error) {
	num = strings.TrimSpace(num)
	if i, err := strconv.ParseInt(num, 10, 64); err == nil && mult == 1 {
		if i < 0 {
			return 0, fmt.Errorf("%q is negative", num)
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a number", num)
	}
	v := f * mult
	if v < 0 || v > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is out of range", num)
	}
	return int64(math.Round(v)), nil
}

func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b >= ByteSize(u.m) && int64(b)%u.m == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.m, u.s)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

func (c Count) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"G", 1e9}, {"M", 1e6}, {"K", 1e3}} {
		if c >= Count(u.m) && int64(c)%u.m == 0 {
			return fmt.Sprintf("%d%s", int64(c)/u.m, u.s)
		}
	}
	return strconv.FormatInt(int64(c), 10)
}

// UnmarshalYAML accepts a number or a string with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return nodeError(n, err)
	}
	*b = v
	return nil
}

// UnmarshalYAML accepts a number or a string with a unit.
func (c *Count) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseCount(n.Value)
	if err != nil {
		return nodeError(n, err)
	}
	*c = v
	return nil
}

// UnmarshalYAML reads "30s", "5m", "1h30m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return nodeError(n, fmt.Errorf("%q is not a duration: write 30s, 5m or 1h30m", n.Value))
	}
	*d = Duration{v}
	return nil
}

// MarshalYAML writes sizes, counts and durations the way people write them.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalYAML writes sizes, counts and durations the way people write them.
func (c Count) MarshalYAML() (any, error) { return c.String(), nil }

// MarshalYAML writes sizes, counts and durations the way people write them.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText keeps JSON output readable too.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// JSONSchema describes the accepted spellings to editors.
func (ByteSize) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "integer", Minimum: "0"},
		{Type: "string", Pattern: `^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)?$`},
	}, Description: "bytes: 1048576, 512KiB, 20MiB or 1.5MB"}
}

// JSONSchema describes the accepted spellings to editors.
func (Count) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "integer", Minimum: "0"},
		{Type: "string", Pattern: `^[0-9]+(\.[0-9]+)?\s*(K|M|G)?$`},
	}, Description: "a count: 50000000, 50M or 12.5M"}
}

// JSONSchema describes the accepted spellings to editors.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`,
		Description: "a duration: 30s, 5m, 1h30m"}
}

// nodeError reports a bad value as a yaml TypeError so that decoding goes on and the
// error carries the line, like yaml's own type errors.
func nodeError(n *yaml.Node, err error) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
}
