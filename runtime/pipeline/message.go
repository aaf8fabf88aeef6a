package pipeline

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/visionstack/visionstack/runtime/blob"
	"github.com/visionstack/visionstack/runtime/meta"
)

// SyncPrefix is where the sync API stores originals in the incoming bucket, named by
// their content hash. The name is not what marks them (a user's upload under sync/ is
// processed like any other): the OriginMetadata does, and a content-keyed task is
// accepted only for the object its hash names.
const SyncPrefix = "sync/"

// OriginMetadata, set to OriginSync, marks an original the sync API stored: its
// storage notification is acked without work, since the API primed the job with its
// results and queued a task of its own, keyed by content.
const (
	OriginMetadata = "visionstack-origin"
	OriginSync     = "sync-api"
	// NameMetadata holds the file name a sync upload's form gave (UploadName).
	NameMetadata = "visionstack-name"
)

// UploadName is the file name a form gave an upload, fit to show and to store as
// object metadata: its base name only, without control characters, valid UTF-8, at
// most 255 bytes ("" when nothing of it is left).
func UploadName(name string) string {
	name = strings.ToValidUTF8(name, "")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	for len(name) > 255 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name = strings.TrimSpace(name); name == "." || name == ".." {
		return ""
	}
	return name
}

// SyncObject is the name the sync API stores an original of content key key under.
func SyncObject(key, format string) string {
	return SyncPrefix + strings.TrimPrefix(key, contentKeyPrefix) + "." + format
}

// SyncKey is the content key an object named as SyncObject names it is stored under.
func SyncKey(object string) (string, bool) {
	rest, ok := strings.CutPrefix(object, SyncPrefix)
	sum, _, dot := strings.Cut(rest, ".")
	if !ok || !dot || len(sum) != 64 || !isLowerHex(sum) {
		return "", false
	}
	return contentKeyPrefix + sum, true
}

// TaskFrom reads a message of the work topic: a Cloud Storage notification
// (JSON_API_V1) or a task. skip, when not empty, says why it needs no work. A task is
// accepted only if the service could have written it (CheckTask).
func TaskFrom(data []byte, attrs map[string]string, incoming string) (Task, string, error) {
	t, skip, err := DecodeTask(data, attrs, incoming)
	if err == nil && skip == "" && attrs["eventType"] == "" {
		err = CheckTask(t, incoming)
	}
	return t, skip, err
}

// DecodeTask is TaskFrom without CheckTask, for a queue only this user writes (local
// mode, whose tasks are keyed by content under the file's own name).
func DecodeTask(data []byte, attrs map[string]string, incoming string) (_ Task, skip string, _ error) {
	if et, ok := attrs["eventType"]; ok {
		if et != "OBJECT_FINALIZE" {
			return Task{}, "event " + et, nil
		}
		bucket, object := attrs["bucketId"], attrs["objectId"]
		gen, err := strconv.ParseInt(attrs["objectGeneration"], 10, 64)
		if bucket == "" || object == "" || err != nil {
			return Task{}, "", fmt.Errorf("storage notification lacks bucketId, objectId or objectGeneration: %v", attrs)
		}
		if bucket != incoming {
			return Task{}, "", fmt.Errorf("notification for bucket %q, this service reads %q", bucket, incoming)
		}
		if strings.HasSuffix(object, "/") {
			return Task{}, "folder placeholder " + object, nil
		}
		if syncOriginal(data) {
			return Task{}, "stored by the sync API, which queued its own task", nil
		}
		if err := blob.ValidateName(object); err != nil {
			return Task{}, "", err
		}
		return Task{Key: ObjectKey(bucket, object, gen), Source: meta.Source{Bucket: bucket, Object: object, Generation: gen}}, "", nil
	}
	var t Task
	if err := json.Unmarshal(data, &t); err != nil || t.Key == "" || t.Source.Object == "" {
		return t, "", fmt.Errorf("message is neither a storage notification nor a task")
	}
	return t, "", nil
}

// syncOriginal reports whether a JSON_API_V1 notification's object carries the sync
// API's origin metadata. Whoever can set it could only skip their own upload.
func syncOriginal(payload []byte) bool {
	var obj struct {
		Metadata map[string]string `json:"metadata"`
	}
	return json.Unmarshal(payload, &obj) == nil && obj.Metadata[OriginMetadata] == OriginSync
}

// CheckTask accepts only a task the service could have written: its source is in the
// incoming bucket and its key names that source — the object's version, or the
// content hash the sync API named the object by. So no message can file one image's
// results under another key, or reach another key's output.
func CheckTask(t Task, incoming string) error {
	t.Key = BaseKey(t.Key) // the same image again, for another model version
	src := t.Source
	if src.Bucket != incoming {
		return fmt.Errorf("task for bucket %q, this service reads %q", src.Bucket, incoming)
	}
	if err := blob.ValidateName(src.Object); err != nil {
		return err
	}
	if t.Key == ObjectKey(src.Bucket, src.Object, src.Generation) {
		return nil
	}
	if k, ok := SyncKey(src.Object); ok && k == t.Key {
		return nil
	}
	return fmt.Errorf("task key %q does not name its source %s#%d: the service writes no such task", t.Key, src.Object, src.Generation)
}

// VersionSeparator joins an image's key and the model version a backfill runs it
// for: the job of (image, version), done once however often it is queued.
const VersionSeparator = "@v="

// VersionedKey is the key of key's image processed again for a model version.
func VersionedKey(key, version string) string { return BaseKey(key) + VersionSeparator + version }

// BaseKey is the image's own key of a (maybe versioned) job key. An image's key ends
// in its generation (#digits) or content hash, which no version label does, so the
// last separator followed by a valid label is the version's even when the object's
// name holds the separator too.
func BaseKey(key string) string {
	i := strings.LastIndex(key, VersionSeparator)
	if i < 0 || ValidateVersion(key[i+len(VersionSeparator):]) != nil {
		return key
	}
	return key[:i]
}

// ValidateVersion accepts a model version label a key may carry: 1–128 letters,
// digits and . _ - / : +.
func ValidateVersion(v string) error {
	if v == "" || len(v) > 128 {
		return fmt.Errorf("model version %q: want 1 to 128 characters", v)
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-/:+", c)) {
			return fmt.Errorf("model version %q: only letters, digits and . _ - / : + are allowed", v)
		}
	}
	return nil
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
