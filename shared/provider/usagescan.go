package provider

// A shortcut for the common case of ReadPayload: a body whose top-level
// "usage" member reports the usage. It finds that member by skipping over
// the rest of the body, and decodes only it, instead of decoding the whole
// body (its choices, their messages and tool calls) through reflection.

import (
	"bytes"
	"encoding/json"

	"github.com/stipend/stipend/shared/ledger"
)

// maxScanDepth bounds the nesting topUsage follows; deeper bodies take
// the full decode.
const maxScanDepth = 64

// topUsage returns the usage reported by data's top-level "usage" member,
// or nil when it cannot tell: no such member, one that is null or
// reports no tokens, a member name with an escape or a non-ASCII byte
// (encoding/json would unescape and fold it; so would the full decode),
// nesting deeper than maxScanDepth, or data that is not one JSON object.
// Member names match "usage" without regard to ASCII case, and repeated
// members are decoded one over the other, as encoding/json does when it
// decodes into a struct. The
// brackets and strings of the body are checked, its numbers and literals
// only by the usage member's decoding. A body whose other members do not
// decode into the shapes the full decode expects (a "type" that is not a
// string, say) still gives its usage here, where that decode gives none.
func topUsage(data []byte) *ledger.Usage {
	s := scanner{data: data}
	if !s.byte('{') {
		return nil
	}
	// Each "usage" member is decoded over the ones before it, as
	// encoding/json decodes a repeated member into the same struct: its
	// fields add to theirs, and a null clears them.
	var u usageJSON
	seen := false
	if !s.byte('}') {
		for {
			name, ok := s.name()
			if !ok || !s.byte(':') {
				return nil
			}
			s.space()
			start := s.i
			if !s.value() {
				return nil
			}
			if bytes.EqualFold(name, []byte("usage")) {
				if v := data[start:s.i]; string(v) == "null" {
					u, seen = usageJSON{}, false
				} else if json.Unmarshal(v, &u) != nil {
					return nil
				} else {
					seen = true
				}
			}
			if s.byte(',') {
				continue
			}
			if s.byte('}') {
				break
			}
			return nil
		}
	}
	if s.space(); s.i != len(data) || !seen || (u.PromptTokens|u.CompletionTokens|u.InputTokens|u.OutputTokens) == 0 {
		return nil
	}
	out := u.toUsage()
	return &out
}

// scanner walks a JSON text from i.
type scanner struct {
	data []byte
	i    int
}

// space skips white space.
func (s *scanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte skips white space, then c if it comes next, and says whether it did.
func (s *scanner) byte(c byte) bool {
	s.space()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// name reads a member name: a string of plain ASCII without escapes (ok
// false for any other).
func (s *scanner) name() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			return s.data[start : s.i-1], true
		case c == '\\' || c >= 0x80 || c < 0x20:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// str skips a string whose opening quote is at i.
func (s *scanner) str() bool {
	s.i++
	for s.i < len(s.data) {
		switch c := s.data[s.i]; {
		case c == '"':
			s.i++
			return true
		case c == '\\':
			s.i += 2
		case c < 0x20:
			return false
		default:
			s.i++
		}
	}
	return false
}

// value skips one value at i: a string, an object or array (its brackets
// matched, its strings skipped), or a number or literal (a run of the
// bytes they are made of).
func (s *scanner) value() bool {
	if s.i >= len(s.data) {
		return false
	}
	switch s.data[s.i] {
	case '"':
		return s.str()
	case '{', '[':
	default:
		start := s.i
		for s.i < len(s.data) && isScalarByte(s.data[s.i]) {
			s.i++
		}
		return s.i > start
	}
	var open [maxScanDepth]byte // the closing brackets awaited, innermost last
	depth := 0
	for s.i < len(s.data) {
		switch c := s.data[s.i]; c {
		case '"':
			if !s.str() {
				return false
			}
			continue
		case '{', '[':
			if depth == maxScanDepth {
				return false
			}
			open[depth] = c + 2 // '{'+2 is '}', '['+2 is ']'
			depth++
		case '}', ']':
			if depth == 0 || open[depth-1] != c {
				return false
			}
			depth--
			if depth == 0 {
				s.i++
				return true
			}
		}
		s.i++
	}
	return false
}

// isScalarByte reports the bytes of numbers and of true, false and null.
func isScalarByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E'
}
