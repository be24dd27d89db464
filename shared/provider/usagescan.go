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
		return json.Unmarshal(value, &u) == nil
	})
	if !walked || !seen || (u.PromptTokens|u.CompletionTokens|u.InputTokens|u.OutputTokens) == 0 {
		return nil
	}
	out := u.toUsage()
	return &out
}
