// Package racetest runs the same call from many goroutines at once, for tests of
// create-if-absent and claim semantics where exactly one caller may win.
package racetest

import "sync"

// Winners runs f(0..n-1) concurrently and returns how many returned nil, and the
// errors of the others.
func Winners(n int, f func(i int) error) (wins int, losers []error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f(i)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else {
				losers = append(losers, err)
			}
		}()
	}
	wg.Wait()
	return wins, losers
}
