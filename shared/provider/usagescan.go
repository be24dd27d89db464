package provider

// A shortcut for the common case of ReadPayload: a body whose top-level
// "usage" member reports the usage. It finds that member by skipping over
// the rest of the body (jsonscan), and decodes only it, instead of
// decoding the whole body (its choices, their messages and tool calls)
// through reflection.

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/stipend/stipend/shared/jsonscan"
	"github.com/stipend/stipend/shared/ledger"
)

// topUsage returns the usage reported by data's top-level "usage" member,
// or nil when it cannot tell: no such member, one that is null or reports
// no tokens, a member name with a non-ASCII byte (encoding/json would fold
// it, as the full decode does) or one jsonscan.Object cannot walk (an
// escape). Member names match "usage" without regard to ASCII case, and
// repeated members are decoded one over the other, as encoding/json does
// when it decodes into a struct. The body's brackets and strings are
// checked, its numbers and literals only within the usage member. A body
// whose other members do not decode into the shapes the full decode
// expects (a "type" that is not a string, say) still gives its usage
// here, where that decode gives none.
func topUsage(data []byte) *ledger.Usage {
	// Each "usage" member is decoded over the ones before it, as
	// encoding/json decodes a repeated member into the same struct: its
	// fields add to theirs, and a null clears them.
	var u usageJSON
	seen := false
	walked := jsonscan.Object(data, func(name, value []byte) bool {
		for _, c := range name {
			if c >= utf8.RuneSelf {
				return false
			}
		}
		if !bytes.EqualFold(name, []byte("usage")) {
			return true
		}
		if string(value) == "null" {
			u, seen = usageJSON{}, false
			return true
		}
		seen = true
		return plainUsage(value, &u) || json.Unmarshal(value, &u) == nil
	})
	if !walked || !seen || (u.PromptTokens|u.CompletionTokens|u.InputTokens|u.OutputTokens) == 0 {
		return nil
	}
	out := u.toUsage()
	return &out
}

// plainUsage decodes value into u as json.Unmarshal does, when value is a
// plain usage object, as providers send it: member names of lower-case
// ASCII letters, digits and underscores; values that are integers of up
// to 18 digits, strings without escapes, literals, or objects of the same
// (two levels deep); the fields u has of the types it has them. Otherwise
// it reports false and leaves u as it was, for json.Unmarshal to decode.
func plainUsage(value []byte, u *usageJSON) bool {
	if !plainObject(value, 0, usageFields) {
		return false
	}
	jsonscan.Object(value, func(name, v []byte) bool {
		switch string(name) {
		case "prompt_tokens":
			u.PromptTokens = plainInt(v)
		case "completion_tokens":
			u.CompletionTokens = plainInt(v)
		case "input_tokens":
			u.InputTokens = plainInt(v)
		case "output_tokens":
			u.OutputTokens = plainInt(v)
		case "cache_read_input_tokens":
			u.CacheReadInputTokens = plainInt(v)
		case "cache_creation_input_tokens":
			u.CacheCreationInputTokens = plainInt(v)
		case "prompt_tokens_details":
			u.PromptTokensDetails = plainDetails(u.PromptTokensDetails, v)
		case "input_tokens_details":
			u.InputTokensDetails = plainDetails(u.InputTokensDetails, v)
		case "cache_creation":
			if u.CacheCreation == nil {
				u.CacheCreation = new(cacheCreation)
			}
			c := u.CacheCreation
			jsonscan.Object(v, func(name, v []byte) bool {
				if string(name) == "ephemeral_1h_input_tokens" {
					c.Ephemeral1h = plainInt(v)
				}
				return true
			})
		}
		return true
	})
	return true
}

// plainDetails decodes v, a plain object, into d (a new one when d is
// nil) and returns it, as json.Unmarshal decodes into a pointer field.
func plainDetails(d *tokensDetails, v []byte) *tokensDetails {
	if d == nil {
		d = new(tokensDetails)
	}
	jsonscan.Object(v, func(name, v []byte) bool {
		if string(name) == "cached_tokens" {
			d.CachedTokens = plainInt(v)
		}
		return true
	})
	return d
}

// A field's kind in a plain object: what its value must be.
const (
	anyValue = iota
	intValue
	objectValue
)

// fieldKinds maps a plain object's known member names to their kinds.
type fieldKinds func(name []byte) (kind int, inner fieldKinds)

// usageFields are usageJSON's fields.
func usageFields(name []byte) (int, fieldKinds) {
	switch string(name) {
	case "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
		"cache_read_input_tokens", "cache_creation_input_tokens":
		return intValue, nil
	case "prompt_tokens_details", "input_tokens_details":
		return objectValue, detailsFields
	case "cache_creation":
		return objectValue, cacheCreationFields
	}
	return anyValue, nil
}

func detailsFields(name []byte) (int, fieldKinds) {
	if string(name) == "cached_tokens" {
		return intValue, nil
	}
	return anyValue, nil
}

func cacheCreationFields(name []byte) (int, fieldKinds) {
	if string(name) == "ephemeral_1h_input_tokens" {
		return intValue, nil
	}
	return anyValue, nil
}

// plainObject reports whether data is a plain object (see plainUsage) at
// nesting depth, whose members that fields knows have the kinds it says.
func plainObject(data []byte, depth int, fields fieldKinds) bool {
	if len(data) == 0 || data[0] != '{' {
		return false
	}
	return jsonscan.Object(data, func(name, v []byte) bool {
		if !jsonscan.LowerName(name) {
			return false // json.Unmarshal folds case: it matches names these do not
		}
		kind, inner := anyValue, fieldKinds(nil)
		if fields != nil {
			kind, inner = fields(name)
		}
		switch {
		case kind == intValue:
			return isPlainInt(v)
		case kind == objectValue || len(v) > 0 && v[0] == '{':
			return depth < 2 && plainObject(v, depth+1, inner)
		}
		return isPlainInt(v) || isPlainString(v) || string(v) == "null" || string(v) == "true" || string(v) == "false"
	})
}

// isPlainInt reports whether v is a JSON integer of at most 18 digits
// (which an int64 holds): an optional minus, then 0 or digits not
// starting with 0.
func isPlainInt(v []byte) bool {
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 18 || v[0] == '0' && len(v) > 1 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// plainInt is the value of v, which isPlainInt accepted.
func plainInt(v []byte) int64 {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	var n int64
	for _, c := range v {
		n = n*10 + int64(c-'0')
	}
	if neg {
		return -n
	}
	return n
}

// isPlainString reports whether v is a JSON string of printable ASCII
// without escapes.
func isPlainString(v []byte) bool {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return false
	}
	for _, c := range v[1 : len(v)-1] {
		if c < ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
