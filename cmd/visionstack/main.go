// Command visionstack bootstraps, validates, runs and deploys visionstack projects.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := newRootCmd(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", withHint(err))
		os.Exit(exitCode(err))
	}
}

// withHint adds what to do to errors whose cause a newcomer cannot act on as worded.
func withHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not find default credentials"):
		msg += "\n  sign in for Google's Application Default Credentials: gcloud auth application-default login" +
			"\n  (or point GOOGLE_APPLICATION_CREDENTIALS at a service account key); --backend local needs none"
	}
	return msg
}
