// Package fault classifies errors as permanent (no retry can fix them: a bad image,
// a decompression bomb) or transient (worth retrying: 429, 503, timeouts). The
// pipeline records and acks permanent errors and lets transient ones be redelivered.
package fault

import "errors"

type permanent struct{ err error }

func (e permanent) Error() string { return e.err.Error() }
func (e permanent) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}
