package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/meta"
	"github.com/visionstack/visionstack/runtime/pipeline"
	"github.com/visionstack/visionstack/runtime/server"
)

// FuzzPushEnvelope: whatever a caller posts, the decoder does not panic, and what it
// accepts as work names an object of the incoming bucket under a key that names that
// object (its version, or the content hash the sync API stored it by).
func FuzzPushEnvelope(f *testing.F) {
	task, _ := json.Marshal(pipeline.Task{Key: "sha256:" + strings.Repeat("ab", 32),
		Source: meta.Source{Bucket: "incoming", Object: pipeline.SyncPrefix + strings.Repeat("ab", 32) + ".jpeg", Generation: 3}})
	f.Add(pushEnvelope(task, map[string]string{"key": "k"}, 1))
	f.Add(pushEnvelope([]byte(`{"kind":"storage#object","metadata":{"visionstack-origin":"sync-api"}}`), notification("a/b.jpg", 5), 2))
	f.Add(pushEnvelope(nil, notification("../x", 1), 1))
	f.Add(pushEnvelope([]byte(`{"key":"incoming/a.jpg#1","source":{"bucket":"incoming","object":"a.jpg","generation":1}}`), nil, 1))
	f.Add([]byte(`{"message":{"data":"!!"}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, body []byte) {
		env, task, skip, err := server.DecodePush(body, "incoming")
		if env == nil || err != nil || skip != "" {
			return
		}
		src := task.Source
		if src.Bucket != "incoming" {
			t.Fatalf("accepted a task on bucket %q", src.Bucket)
		}
		if blob.ValidateName(src.Object) != nil {
			t.Fatalf("accepted an object name the buckets refuse: %q", src.Object)
		}
		if task.Key != pipeline.ObjectKey(src.Bucket, src.Object, src.Generation) &&
			!strings.HasPrefix(src.Object, pipeline.SyncPrefix+strings.TrimPrefix(task.Key, "sha256:")+".") {
			t.Fatalf("accepted key %q for %s#%d", task.Key, src.Object, src.Generation)
		}
	})
}
