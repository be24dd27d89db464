package storeerr

import (
	"errors"
	"fmt"
	"testing"
)

type fakeMissing struct{ missing bool }

func (e fakeMissing) Error() string  { return "fake" }
func (e fakeMissing) NotFound() bool { return e.missing }

func TestIsNotFound(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"ErrNotFound", ErrNotFound, true},
		{"wrapped ErrNotFound", fmt.Errorf("key k: %w", ErrNotFound), true},
		{"a fake's NotFound() true", fmt.Errorf("x: %w", fakeMissing{true}), true},
		{"a fake's NotFound() false", fakeMissing{false}, false},
		{"ErrExists", ErrExists, false},
		{"ErrConflict", fmt.Errorf("x: %w", ErrConflict), false},
		{"other", errors.New("not found"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsNotFound(tc.err); got != tc.want {
				t.Errorf("IsNotFound(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
