package builtin_test

import (
	"testing"

	"github.com/visionstack/visionstack/runtime/imaging"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/model/builtin"
)

// A re-check round after only some areas changed looks around them and finds what a
// full scan finds there (faces Near an area): the same faces, from fewer windows.
func TestFacesWithinMatchesFullScan(t *testing.T) {
	m, err := builtin.New(builtin.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	fewer := 0
	for _, s := range loadSamples(t) {
		img, _, err := imaging.Limits{}.Decode(s.data, imaging.MaxSide, false)
		if err != nil {
			t.Fatal(err)
		}
		before := m.WindowsRun()
		full, err := m.Faces(img, nil)
		if err != nil {
			t.Fatal(err)
		}
		fullRuns := m.WindowsRun() - before
		// Each face's box, and a corner with none, as the area a round changed.
		areas := []meta.Box{{XMin: 0, XMax: 0.08, YMin: 0, YMax: 0.08}}
		for _, d := range full {
			areas = append(areas, *d.Box)
		}
		for _, a := range areas {
			within := []meta.Box{a}
			before := m.WindowsRun()
			near, err := m.Faces(img, within)
			if err != nil {
				t.Fatal(err)
			}
			if runs := m.WindowsRun() - before; runs < fullRuns {
				fewer++
			} else if runs > fullRuns {
				t.Errorf("%s %+v: %d windows, more than a full scan's %d", s.name, a, runs, fullRuns)
			}
			var want []meta.Detection
			for _, d := range full {
				if builtin.Near(a, *d.Box) {
					want = append(want, d)
				}
			}
			if !sameFaces(want, near) || !sameFaces(near, want) {
				t.Errorf("%s, area %+v: near scan %v, full scan there %v", s.name, a, boxes(near), boxes(want))
			}
		}
		img.Close()
	}
	if fewer == 0 {
		t.Error("no near scan ran fewer windows than a full one")
	}
}

// sameFaces: every face of a has one of b over it (IoU ≥ 0.5).
func sameFaces(a, b []meta.Detection) bool {
	for _, x := range a {
		found := false
		for _, y := range b {
			if iou(box4(*x.Box), box4(*y.Box)) >= 0.5 {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func box4(b meta.Box) [4]float64 { return [4]float64{b.XMin, b.XMax, b.YMin, b.YMax} }

func boxes(ds []meta.Detection) [][4]float64 {
	var out [][4]float64
	for _, d := range ds {
		out = append(out, box4(*d.Box))
	}
	return out
}
