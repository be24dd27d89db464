package form

import (
	"encoding/json"

	"math"

	"github.com/stipend/stipend/shared/admin/request"
)

// Bounds on a key's free-form metadata, so that listings stay small and
// readable by any JSON parser.
const (
	maxMetadataDepth = 5       // nested objects and arrays, the top object included
	maxMetadataBytes = 8 << 10 // as JSON
	maxSafeInteger   = 1 << 53 // beyond it, JavaScript's JSON.parse loses digits
)

// CheckMetadata refuses metadata nested deeper than maxMetadataDepth, larger
// than maxMetadataBytes as JSON, or holding numbers past ±2^53.
func CheckMetadata(field string, m map[string]any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return request.MustBe(field, "a JSON object")
	}
	if len(b) > maxMetadataBytes {
		return request.Invalid(field, "%s is %d bytes as JSON; at most %d are kept", field, len(b), maxMetadataBytes)
	}
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		switch v := v.(type) {
		case map[string]any:
			if depth > maxMetadataDepth {
				return request.Invalid(field, "%s is nested more than %d levels deep", field, maxMetadataDepth)
			}
			for _, e := range v {
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		case []any:
			if depth > maxMetadataDepth {
				return request.Invalid(field, "%s is nested more than %d levels deep", field, maxMetadataDepth)
			}
			for _, e := range v {
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		case float64:
			if math.IsInf(v, 0) || math.IsNaN(v) || math.Abs(v) > maxSafeInteger {
				return request.Invalid(field, "%s holds the number %v; numbers must lie within ±2^53", field, v)
			}
		}
		return nil
	}
	return walk(m, 1)
}
