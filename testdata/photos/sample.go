// Package photos gives tests and benchmarks the real sample photos in this folder
// (licences and caveats in README.md) and their hand-drawn face boxes.
package photos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
)

// Dir is this folder's absolute path.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Truth is the hand-drawn faces of one photo: [x, y, w, h] in pixels of the image
// fitted to a 1024 px long side (smaller images keep their size).
type Truth struct {
	File  string
	Boxes [][4]float64
}

// FaceTruth reads faces/groundtruth.json, sorted by file name.
func FaceTruth() ([]Truth, error) {
	raw, err := os.ReadFile(filepath.Join(Dir(), "faces", "groundtruth.json"))
	if err != nil {
		return nil, err
	}
	var gt struct {
		Faces map[string]struct {
			Boxes [][4]float64 `json:"boxes"`
		} `json:"faces"`
	}
	if err := json.Unmarshal(raw, &gt); err != nil {
		return nil, err
	}
	var out []Truth
	for f, v := range gt.Faces {
		out = append(out, Truth{File: filepath.Join(Dir(), "faces", f), Boxes: v.Boxes})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}

// NoFaces lists the control photos without faces.
func NoFaces() []string {
	m, _ := filepath.Glob(filepath.Join(Dir(), "nofaces", "*.png"))
	sort.Strings(m)
	return m
}

// DemoProject is the path of projects/demo/project.yaml, the project tests run.
func DemoProject() string {
	return filepath.Join(Dir(), "..", "..", "projects", "demo", "project.yaml")
}

// NoFaceSet lists the licensed no-face photos the precision tests build their set
// from (animals, objects, textures, microscopy, sky; README.md "No-face set"), which
// scripts/install-nofaces.sh fetches and checks: in $VISIONSTACK_NOFACES, else where
// that script puts them.
func NoFaceSet() ([]string, error) {
	dir := os.Getenv("VISIONSTACK_NOFACES")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if home, err := os.UserHomeDir(); cache == "" && err == nil {
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "visionstack", "nofaces", "skimage-0.19.3-8")
	}
	var m []string
	for _, pat := range []string{"*.png", "*.jpg"} {
		f, _ := filepath.Glob(filepath.Join(dir, pat))
		m = append(m, f...)
	}
	if len(m) < 14 {
		return nil, fmt.Errorf("no-face photos: %d in %s, want 14: run scripts/install-deps.sh (or scripts/install-nofaces.sh)", len(m), dir)
	}
	sort.Strings(m)
	return m, nil
}
