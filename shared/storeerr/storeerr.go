// Package storeerr is the one set of storage outcomes that are not failures
// of the store: not found, already exists, changed concurrently. Stores
// return them (wrapped with %w); consumers test for them here, without
// importing the store.
package storeerr

import "errors"

// Errors a store returns, wrapped, and callers test with errors.Is (or, for
// not found, IsNotFound).
var (
	// ErrNotFound: the item does not exist.
	ErrNotFound error = notFound{}
	// ErrExists: a create found the item already there.
	ErrExists = errors.New("already exists")
	// ErrConflict: a conditional write lost a race with another writer
	// (the item's version changed since it was read).
	ErrConflict = errors.New("changed concurrently")
)

type notFound struct{}

func (notFound) Error() string  { return "not found" }
func (notFound) NotFound() bool { return true }

// IsNotFound reports whether err says an item does not exist: ErrNotFound,
// or any error with a NotFound() bool method that returns true (as net.Error
// is recognised by Timeout()), so a test's fake store need not import this
// package.
func IsNotFound(err error) bool {
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}
