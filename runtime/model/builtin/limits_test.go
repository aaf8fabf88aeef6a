package builtin_test

// Measured with DefaultParams (see TestRecallOnSamples output).
const (
	minRecall      = 0.0
	maxFalseAlarms = 1000
)
