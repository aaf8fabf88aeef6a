package builtin_test

// Measured with DefaultParams (pigo) and BlazeFaceParams (see TestRecallOnSamples output).
const (
	minRecall               = 22.0 / 25
	maxFalseAlarms          = 10
	minRecallBlazeFace      = 25.0 / 25
	maxFalseAlarmsBlazeFace = 2
)
