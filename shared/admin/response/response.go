// Package response turns what an admin route did into its answer: a JSON
// body, a list that shows as [] rather than null, the client's error for a
// storage failure (404 / 409 / 503), and the read-modify-write that retries a
// lost race before answering. The routes of every admin package answer
// through it, so a storage outcome means the same everywhere.
package response

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/storeerr"
)

// CodeConflict answers a write that lost a race with another writer.
const CodeConflict = "conflict"

// JSON sends v with status. It encodes before writing anything, so an
// encoding failure can still become an error response.
func JSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// StoreError turns a storage failure into the client's error; what names the
// item ("secret key abc").
func StoreError(err error, what string) error {
	switch {
	case storeerr.IsNotFound(err):
		return apierror.New(http.StatusNotFound, apierror.CodeNotFound, what+" not found")
	case errors.Is(err, storeerr.ErrConflict):
		return apierror.New(http.StatusConflict, CodeConflict, what+" was changed concurrently, try again")
	case errors.Is(err, storeerr.ErrExists):
		return apierror.New(http.StatusConflict, CodeConflict, what+" already exists")
	default:
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"storage is unavailable, try again later")
	}
}

// NonEmpty returns list, or an empty (non-nil) slice, so JSON shows [] rather than null.
func NonEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
