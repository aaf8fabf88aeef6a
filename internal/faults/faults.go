// Package faults counts the minor page faults a piece of work takes: memory the
// kernel maps and zeroes afresh, where reused memory takes none. Tests of memory
// reuse use it.
package faults

import "syscall"

// Minor is the process's minor page faults so far.
func Minor() int64 {
	var r syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return r.Minflt
}

// Fewest runs f three times (whatever it grows, it grows then), then five times
// counted, and returns the fewest minor faults of a counted run: what the work
// itself must fault in. A run's count also moves with when Go's collector and
// scavenger ran (a frame allocated before the last one was swept is fresh memory);
// memory that the work maps afresh every time shows in every run, the fewest too.
func Fewest(f func()) int64 {
	for range 3 {
		f()
	}
	fewest := int64(-1)
	for range 5 {
		before := Minor()
		f()
		if n := Minor() - before; fewest < 0 || n < fewest {
			fewest = n
		}
	}
	return fewest
}
