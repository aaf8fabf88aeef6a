package builtin_test

// Measured with DefaultParams (BlazeFace) and PigoParams (see TestRecallOnSamples output).
const (
	minRecall          = 25.0 / 25
	maxFalseAlarms     = 2
	minRecallPigo      = 22.0 / 25
	maxFalseAlarmsPigo = 10
)
