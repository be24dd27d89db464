package ledger

import (
	"strings"
	"unicode/utf8"
)

// Bounds of the request and response bodies an Event carries. A DynamoDB
// item holds at most 400 KB, and an event item holds both bodies plus its
// own data, so each body is capped well below half of that.
const (
	// DefaultBodyBytes is how much of each body is kept unless configured
	// otherwise.
	DefaultBodyBytes = 64 << 10
	// MaxBodyBytes is the most of each body an event can ever carry;
	// larger settings are lowered to it.
	MaxBodyBytes = 160 << 10
)

// ClipBody returns b as valid UTF-8 text of at most limit bytes (limit is
// lowered to MaxBodyBytes; <= 0 means DefaultBodyBytes), cut at a character
// boundary, and whether anything was cut off. Invalid UTF-8 (a body is
// normally JSON, but need not be) becomes U+FFFD first, so the text is
// storable and readable as JSON.
func ClipBody(b []byte, limit int) (string, bool) {
	if limit <= 0 {
		limit = DefaultBodyBytes
	}
	limit = min(limit, MaxBodyBytes)
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= limit {
		return s, false
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}
