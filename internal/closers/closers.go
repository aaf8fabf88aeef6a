// Package closers closes what was opened, in reverse order, once.
package closers

import "errors"

// Stack holds close functions in the order things were opened.
type Stack []func() error

// Add pushes a close function.
func (s *Stack) Add(f func() error) { *s = append(*s, f) }

// Close calls every function, last added first, and empties the stack.
func (s *Stack) Close() error {
	var errs []error
	for i := len(*s) - 1; i >= 0; i-- {
		errs = append(errs, (*s)[i]())
	}
	*s = nil
	return errors.Join(errs...)
}
