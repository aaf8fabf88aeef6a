//go:build race

package imaging

// raceEnabled: the race detector's shadow memory faults in pages of its own for
// every Go write, so page-fault counts mean nothing under it.
const raceEnabled = true
