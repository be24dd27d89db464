// Package jsonscan walks the top-level members of a JSON object, or the
// elements of an array, without decoding them: it finds where each name and value starts and ends, so
// that a caller decodes only the members it needs (the usage of a
// provider's answer) or splits a body into its members without copying
// them (a client's request).
package jsonscan

import "unicode/utf8"

// MaxDepth bounds the nesting Object follows inside a value.
const MaxDepth = 64

// Object calls member for each top-level member of the JSON object data,
// in order, with its name (the bytes between its quotes) and its value
// (without the white space around it); member returns false to stop the
// walk. Object reports whether it walked the whole object: it returns
// false when member stopped it, and when data is not one object it can
// walk: not an object, a member name with an escape, a control byte or
// invalid UTF-8 (its bytes would not be its name), brackets that do not
// match, a string left open, nesting deeper than MaxDepth, or anything but
// white space after the object. It checks brackets and strings only: numbers and
// literals are delimited, not checked, so a caller that needs data to be
// valid JSON checks it with json.Valid.
func Object(data []byte, member func(name, value []byte) bool) bool {
	s := scanner{data: data}
	if !s.skip('{') {
		return false
	}
	if !s.skip('}') {
		for {
			name, ok := s.name()
			if !ok || !s.skip(':') {
				return false
			}
			s.space()
			start := s.i
			if !s.value() || !member(name, data[start:s.i]) {
				return false
			}
			if s.skip(',') {
				continue
			}
			if s.skip('}') {
				break
			}
			return false
		}
	}
	s.space()
	return s.i == len(data)
}

// Array calls element for each element of the JSON array data, in order,
// with its value (without the white space around it); element returns
// false to stop the walk. Like Object, it reports whether it walked the
// whole array, and checks brackets and strings only.
func Array(data []byte, element func(value []byte) bool) bool {
	s := scanner{data: data}
	if !s.skip('[') {
		return false
	}
	if !s.skip(']') {
		for {
			s.space()
			start := s.i
			if !s.value() || !element(data[start:s.i]) {
				return false
			}
			if s.skip(',') {
				continue
			}
			if s.skip(']') {
				break
			}
			return false
		}
	}
	s.space()
	return s.i == len(data)
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

// skip skips white space, then c if it comes next, and says whether it did.
func (s *scanner) skip(c byte) bool {
	s.space()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// name reads a member name: a string in valid UTF-8 without escapes or
// control bytes (ok false for any other: its bytes would not be its name,
// which encoding/json unescapes and mends).
func (s *scanner) name() ([]byte, bool) {
	if !s.skip('"') {
		return nil, false
	}
	start := s.i
	ascii := true
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			name := s.data[start : s.i-1]
			return name, ascii || utf8.Valid(name)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
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
	var open [MaxDepth]byte // the closing brackets awaited, innermost last
	depth := 0
	for s.i < len(s.data) {
		switch c := s.data[s.i]; c {
		case '"':
			if !s.str() {
				return false
			}
			continue
		case '{', '[':
			if depth == MaxDepth {
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

// LowerName reports whether name (a member name as Object gives it) is
// made of lower-case ASCII letters, digits and underscores. encoding/json
// matches a member name to a struct field without regard to case (ASCII,
// and the Kelvin and long-s signs); when every field's name is written so,
// a name LowerName accepts matches only the field spelled the same, and a
// caller reading members in place sees what json.Unmarshal would.
func LowerName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
