package gcs_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/blob/blobtest"
	"github.com/visionstack/visionstack/runtime/blob/gcs"
)

// The conformance suite on the real Cloud Storage client against fake-gcs-server,
// in process, on 127.0.0.1. PublicHost stays at its default: srv.Client() sends the
// client's XML-API reads for storage.googleapis.com to the fake, which only routes
// them when that is its public host.
func TestConformance(t *testing.T) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	client := srv.Client()
	var n atomic.Int32
	blobtest.Run(t, func(t *testing.T) blob.Bucket {
		name := fmt.Sprintf("bucket-%d", n.Add(1))
		srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
		return gcs.New(client, name)
	})
}
