package builtin_test

// Measured with DefaultParams (BlazeFace) and PigoParams (see TestRecallOnSamples output).
// pigo had 10 false alarms while libvips resized with liborc; its C paths (liborc is
// off, see imaging.disableOrc) round a little differently, and pigo's recall-tuned
// cascade fires on 2 more patches of the sample photos.
const (
	minRecall          = 25.0 / 25
	maxFalseAlarms     = 2
	minRecallPigo      = 22.0 / 25
	maxFalseAlarmsPigo = 12
)
