package response

import (
	"context"
	"errors"

	"github.com/stipend/stipend/shared/storeerr"
)

// UpdateAttempts bounds the read-modify-write of an update that keeps losing
// races with other writers.
const UpdateAttempts = 4

// ErrNoWrite, returned by a change, ends an Update without writing: the item
// as read is the answer.
var ErrNoWrite = errors.New("nothing to write")

// Update reads an item with get, changes it with change and writes it back
// with put. When another writer changed the item in between
// (storeerr.ErrConflict), it reads it again and retries, up to
// UpdateAttempts times. Storage errors come back as the client's errors
// naming what (StoreError); an error from change comes back as it is.
func Update[T any](ctx context.Context, what string, get func(context.Context) (T, error), change func(T) error, put func(context.Context, T) error) (T, error) {
	var zero T
	var err error
	for range UpdateAttempts {
		var v T
		if v, err = get(ctx); err != nil {
			return zero, StoreError(err, what)
		}
		if err := change(v); errors.Is(err, ErrNoWrite) {
			return v, nil
		} else if err != nil {
			return zero, err
		}
		if err = put(ctx, v); err == nil {
			return v, nil
		}
		if !errors.Is(err, storeerr.ErrConflict) {
			return zero, StoreError(err, what)
		}
	}
	return zero, StoreError(err, what)
}
