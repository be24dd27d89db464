package admin

import (
	"encoding/json"

	"math"

	"github.com/stipend/stipend/shared/pricing"
)

// Bounds on a key's free-form metadata, so that listings stay small and
// readable by any JSON parser.
const (
	maxMetadataDepth = 5       // nested objects and arrays, the top object included
	maxMetadataBytes = 8 << 10 // as JSON
	maxSafeInteger   = 1 << 53 // beyond it, JavaScript's JSON.parse loses digits
)

// checkMetadata refuses metadata nested deeper than maxMetadataDepth, larger
// than maxMetadataBytes as JSON, or holding numbers past ±2^53.
func checkMetadata(field string, m map[string]any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return mustBe(field, "a JSON object")
	}
	if len(b) > maxMetadataBytes {
		return invalid(field, "%s is %d bytes as JSON; at most %d are kept", field, len(b), maxMetadataBytes)
	}
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		switch v := v.(type) {
		case map[string]any:
			if depth > maxMetadataDepth {
				return invalid(field, "%s is nested more than %d levels deep", field, maxMetadataDepth)
			}
			for _, e := range v {
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		case []any:
			if depth > maxMetadataDepth {
				return invalid(field, "%s is nested more than %d levels deep", field, maxMetadataDepth)
			}
			for _, e := range v {
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		case float64:
			if math.IsInf(v, 0) || math.IsNaN(v) || math.Abs(v) > maxSafeInteger {
				return invalid(field, "%s holds the number %v; numbers must lie within ±2^53", field, v)
			}
		}
		return nil
	}
	return walk(m, 1)
}

// checkPriced refuses a model in models that the proxy cannot price unless
// aliases maps it to another model (the proxy then serves and prices the
// target): every request for it would be refused with model_not_priced.
func (h *Handler) checkPriced(field string, models []string, aliases map[string]string) error {
	for _, m := range models {
		if aliases[m] != "" || h.cfg.PricedModel(m) {
			continue
		}
		return invalid(field, "%s: %q is not a model stipend can price, nor an alias of this key; name a priced model (GET /v1/models on the proxy lists them)", field, m)
	}
	return nil
}

// embeddedPrices is PricedModel over the embedded price table. The table is
// part of the binary; if it ever failed to parse, no model is priced.
func embeddedPrices() func(string) bool {
	t, err := pricing.Default()
	if err != nil {
		return func(string) bool { return false }
	}
	return func(m string) bool {
		_, ok := t.Lookup(m)
		return ok
	}
}
