package blazeface

import "sync"

// inputs recycles the network's inputs: a dense run's is 8.6 MB for a 1024×704
// image, and a fresh one every run was memory that Go's scavenger had returned and
// the kernel faulted in and zeroed again (bench/RESULTS.md: minor faults per job).
// Every fill writes each element, so a recycled input needs no clearing.
var inputs sync.Pool

// getInput returns n floats, recycled when one at least that large is free.
func getInput(n int) []float32 {
	if p, ok := inputs.Get().(*[]float32); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]float32, n)
}

// putInput hands an input back once its run has ended.
func putInput(b []float32) { inputs.Put(&b) }
