package admin

import (
	"context"
	"errors"

	"github.com/stipend/stipend/shared/storeerr"
)

// updateAttempts bounds the read-modify-write of an update that keeps losing
// races with other writers.
const updateAttempts = 4

// errNoWrite, returned by a change, ends an update without writing: the item
// as read is the answer.
var errNoWrite = errors.New("nothing to write")

// update reads an item with get, changes it with change and writes it back
// with put. When another writer changed the item in between
// (storeerr.ErrConflict), it reads it again and retries, up to updateAttempts
// times. Storage errors come back as client errors naming what; an error
// from change comes back as it is.
func update[T any](ctx context.Context, what string, get func(context.Context) (T, error), change func(T) error, put func(context.Context, T) error) (T, error) {
	var zero T
	var err error
	for range updateAttempts {
		var v T
		if v, err = get(ctx); err != nil {
			return zero, storeError(err, what)
		}
		if err := change(v); errors.Is(err, errNoWrite) {
			return v, nil
		} else if err != nil {
			return zero, err
		}
		if err = put(ctx, v); err == nil {
			return v, nil
		}
		if !errors.Is(err, storeerr.ErrConflict) {
			return zero, storeError(err, what)
		}
	}
	return zero, storeError(err, what)
}
