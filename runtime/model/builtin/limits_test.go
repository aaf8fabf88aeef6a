package builtin_test

// Measured with DefaultParams (see TestRecallOnSamples output).
const (
	minRecall      = 22.0 / 25
	maxFalseAlarms = 10
)
