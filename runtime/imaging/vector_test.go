package imaging

import "testing"

// liborc stays off once libvips is started (see disableOrc; the crash it prevents is
// shown by TestManyConcurrentSmallBlurs). Init is idempotent, so this holds whoever
// started libvips first.
func TestVectorPathOff(t *testing.T) {
	Init(0)
	if vectorEnabled() {
		t.Fatal("libvips' liborc vector path is on: concurrent resizes and blurs can corrupt the C heap")
	}
}
