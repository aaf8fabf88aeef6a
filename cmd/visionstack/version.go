package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/davidbyttow/govips/v2/vips"
	"github.com/spf13/cobra"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/visionstack/visionstack/runtime/model/ortenv"
)

// versionInfo says what this binary is: what a bug report needs.
func versionInfo() string {
	mod, commit, modified := "(devel)", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		mod = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (with uncommitted changes)"
				}
			}
		}
	}
	onnx := "not found: " + ortenv.ErrNoRuntime.Error()
	if lib, err := ortenv.Library(); err == nil {
		onnx = lib
		if ortenv.Start() == nil {
			onnx = ort.GetVersion() + " (" + lib + ")"
		}
	}
	return fmt.Sprintf("visionstack %s\ncommit      %s%s\ngo          %s %s/%s\nlibvips     %s\nonnxruntime %s\n",
		mod, commit, modified, runtime.Version(), runtime.GOOS, runtime.GOARCH, vips.Version, onnx)
}

func newVersionCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go, libvips and ONNX Runtime versions (for a bug report)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(g.out, versionInfo())
			return nil
		},
	}
}
