package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/runtime/config"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/modelcompare"
)

type compareOptions struct {
	backend, dataDir string
	analysis         string
	limit            int
	minAgreement     float64
}

func newModelCompareCmd(g *globalOptions) *cobra.Command {
	o := &compareOptions{}
	cmd := &cobra.Command{
		Use:   "compare NAME",
		Short: "Report how a shadow model agrees with the stable one on the same images",
		Long: `model compare reads the latest jobs of the project's metadata store and, for each
analysis with a shadow (analyses[].shadow in the project file), compares the shadow's
stored results with the stable model's, image by image: detections matched (same label,
boxes overlapping at IoU 0.5 or more), found by one model only, images answered the
same; and as distributions: the drift monitor's PSI of labels, boxes per image and
confidences, stable as expected. With --min-agreement it exits with status 3 when an
analysis' detection agreement (F1) is below it, for a CI gate before a rollout.`,
		Example: "  visionstack model compare demo\n  visionstack model compare demo --backend cloud --min-agreement 0.9",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), g, args[0])
		},
	}
	backendFlags(cmd, &o.backend, &o.dataDir, "Firestore")
	cmd.Flags().StringVar(&o.analysis, "analysis", "", "compare this analysis only (default: every analysis with a shadow)")
	cmd.Flags().IntVar(&o.limit, "limit", 1000, "latest jobs compared")
	cmd.Flags().Float64Var(&o.minAgreement, "min-agreement", 0, "fail (exit 3) when the detection agreement (F1) is below this")
	return cmd
}

func (o *compareOptions) run(ctx context.Context, g *globalOptions, name string) error {
	ctx, cfg, err := g.begin(ctx, name)
	if err != nil {
		return err
	}
	var analyses []config.Analysis
	for _, a := range cfg.Pipeline.Analyses {
		if (o.analysis == "" && a.Shadow != "") || a.Name == o.analysis {
			analyses = append(analyses, a)
		}
	}
	if len(analyses) == 0 {
		if o.analysis != "" {
			return fmt.Errorf("no analysis %q in projects/%s/project.yaml", o.analysis, cfg.Name)
		}
		return fmt.Errorf("no analysis of %s has a shadow: add shadow: MODEL to one in the project file (docs/models.md \"Ship a new model version\")", cfg.Name)
	}
	store, where, err := (&statusOptions{backend: o.backend, dataDir: o.dataDir}).open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	jobs, err := store.List(ctx, meta.Filter{State: meta.StateDone, Limit: o.limit})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.out, "model compare %s — %s, latest %d done jobs\n", cfg.Name, where, len(jobs))
	threshold := config.DefaultDriftThreshold
	if d := cfg.Monitoring.Drift; d != nil && d.Threshold > 0 {
		threshold = d.Threshold
	}
	var below []string
	for _, an := range analyses {
		a := modelcompare.Jobs(jobs, an.Name, threshold)
		printAgreement(g.out, an, a)
		if o.minAgreement > 0 && a.Images > 0 && a.F1() < o.minAgreement {
			below = append(below, fmt.Sprintf("%s %.3f", an.Name, a.F1()))
		}
	}
	if len(below) > 0 {
		return exitError{code: 3, err: fmt.Errorf("agreement below %.3f: %s", o.minAgreement, strings.Join(below, ", "))}
	}
	return nil
}

func printAgreement(w io.Writer, an config.Analysis, a modelcompare.Agreement) {
	fmt.Fprintf(w, "\n%s: stable %s %s, shadow %s %s\n", an.Name, an.Model, versions(a.StableVersions), an.Shadow, versions(a.ShadowVersions))
	if a.Images == 0 {
		fmt.Fprintf(w, "  no image has both answers yet (%d shadow calls failed)\n", a.ShadowFailed)
		return
	}
	fmt.Fprintf(w, "  images compared   %d (shadow failed on %d more)\n", a.Images, a.ShadowFailed)
	fmt.Fprintf(w, "  same answer       %d (%.1f%%)\n", a.SameAnswer, 100*float64(a.SameAnswer)/float64(a.Images))
	fmt.Fprintf(w, "  detections        %d matched, %d stable only, %d shadow only: agreement (F1) %.3f\n", a.Matched, a.StableOnly, a.ShadowOnly, a.F1())
	d := a.Distance
	verdict := "similar"
	if d.Drifted {
		verdict = "DIFFERENT"
	}
	fmt.Fprintf(w, "  distributions     PSI labels %.3f, boxes/image %.3f, confidence %.3f (KS %.3f): %s\n", d.PSILabels, d.PSIBoxes, d.PSIConf, d.KS, verdict)
}

// versions lists the versions that answered, most frequent first.
func versions(m map[string]int) string {
	ks := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return m[b] - m[a] })
	for i, k := range ks {
		if k == "" {
			k = "(version not reported)"
		}
		ks[i] = fmt.Sprintf("%s ×%d", k, m[ks[i]])
	}
	if len(ks) == 0 {
		return ""
	}
	return "[" + strings.Join(ks, ", ") + "]"
}
