package pipeline_test

import (
	"strings"
	"testing"

	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
)

// A backfill's task names the image and the model version; the key must still name
// its own source, and nothing else passes as a version.
func TestCheckTaskVersionedKeys(t *testing.T) {
	src := func(object string) meta.Source { return meta.Source{Bucket: "in", Object: object, Generation: 7} }
	for _, c := range []struct {
		name, key, object string
		ok                bool
	}{
		{"image's own key", "in/a.jpg#7", "a.jpg", true},
		{"versioned", "in/a.jpg#7@v=blazeface-back/1-tiles512", "a.jpg", true},
		{"object named with the separator", "in/x@v=1.jpg#7", "x@v=1.jpg", true},
		{"that object, versioned", "in/x@v=1.jpg#7@v=2", "x@v=1.jpg", true},
		{"another object's key, versioned", "in/b.jpg#7@v=2", "a.jpg", false},
		{"another generation, versioned", "in/a.jpg#6@v=2", "a.jpg", false},
		{"bad version", "in/a.jpg#7@v=a b", "a.jpg", false},
		{"empty version", "in/a.jpg#7@v=", "a.jpg", false},
		{"long version", "in/a.jpg#7@v=" + strings.Repeat("x", 129), "a.jpg", false},
	} {
		err := pipeline.CheckTask(pipeline.Task{Key: c.key, Source: src(c.object)}, "in")
		if (err == nil) != c.ok {
			t.Errorf("%s: CheckTask(%q) = %v, want ok=%v", c.name, c.key, err, c.ok)
		}
	}
	if got := pipeline.BaseKey("in/x@v=1.jpg#7"); got != "in/x@v=1.jpg#7" {
		t.Errorf("BaseKey of an unversioned key with the separator in its name = %q", got)
	}
	if got := pipeline.VersionedKey("in/a.jpg#7@v=1", "2"); got != "in/a.jpg#7@v=2" {
		t.Errorf("VersionedKey of a versioned key = %q, want the image's key with the new version", got)
	}
}

// An upload's name is fit to show and to store: its base name, no control characters,
// valid UTF-8, at most 255 bytes.
func TestUploadName(t *testing.T) {
	for in, want := range map[string]string{
		"photo.jpg":               "photo.jpg",
		"../../etc/passwd":        "passwd",
		`C:\Users\me\holiday.png`: "holiday.png",
		"line\nbreak\x00.jpg":     "linebreak.jpg",
		"bad\xffutf8.jpg":         "badutf8.jpg",
		"..":                      "",
		" ":                       "",
		strings.Repeat("é", 200):  strings.Repeat("é", 127),
	} {
		if got := pipeline.UploadName(in); got != want {
			t.Errorf("UploadName(%q) = %q, want %q", in, got, want)
		}
	}
}
