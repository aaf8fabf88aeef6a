package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/visionstack/visionstack/runtime/model/onnx"
)

func newModelInspectCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE.onnx",
		Short: "Show an ONNX model's inputs, outputs and metadata, what visionstack reads of them, and the project.yaml lines to use it",
		Long: `model inspect loads an ONNX file into ONNX Runtime and prints its input (name,
shape, type) and the layout (NCHW or NHWC) and size visionstack reads from it, its
outputs and the output format they fit (classification, yolov5, yolov8, ssd), its
metadata (an Ultralytics export's names, imgsz, stride and task), and the analysis to
paste into a project file. It exits with status 1 when the file cannot be run as is,
saying what to set.`,
		Example: "  visionstack model inspect projects/defects/model/defects.onnx",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			info, err := onnx.Inspect(data)
			w := g.out
			fmt.Fprintf(w, "file      %s (%d bytes)\n", args[0], len(data))
			if info.Input.Name != "" {
				fmt.Fprintf(w, "input     %s %v %s\n", info.Input.Name, info.Input.Shape, info.Input.Type)
			}
			for _, o := range info.Outputs {
				fmt.Fprintf(w, "output    %s %v %s\n", o.Name, o.Shape, o.Type)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "layout    %s, %d×%d (width×height)\n", info.Layout, info.Width, info.Height)
			for _, m := range info.SortedMetadata() {
				fmt.Fprintf(w, "metadata  %s\n", m)
			}
			if info.Format == "" {
				fmt.Fprintf(w, "format    none recognised: %s\n", info.Why)
			} else {
				fmt.Fprintf(w, "format    %s (%s)\n", info.Format, info.Why)
			}
			if len(info.Labels) > 0 {
				fmt.Fprintf(w, "labels    %s\n", strings.Join(info.Labels, ", "))
			}
			kind, format := "automl-detection", info.Format
			if format == onnx.FormatClassification {
				kind = "automl-classification"
			}
			if format == "" {
				format = "yolov8 # or classification, yolov5, ssd: the outputs fit none by themselves"
			}
			settings := []string{"format: " + format}
			if info.Width <= 0 || info.Height <= 0 {
				settings = append(settings, "width: 640, height: 640 # the graph leaves the input's size open")
			}
			name := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			fmt.Fprintf(w, "\nIn projects/NAME/project.yaml (the path relative to it), under pipeline.analyses:\n")
			fmt.Fprintf(w, "  - name: %s\n    model: \"onnx:%s\"\n    format: %s\n    onnx: {%s}\n", strings.ToLower(name), filepath.Base(args[0]), kind, strings.Join(settings, ", "))
			fmt.Fprintf(w, "Check the pre-processing the model was trained with: onnx.resize (letterbox, stretch, centre-crop), channels (RGB, BGR), scale, mean, std.\n")
			if info.Format == "" || info.Width <= 0 || info.Height <= 0 {
				return fmt.Errorf("%s cannot run without the settings above", args[0])
			}
			return nil
		},
	}
}
