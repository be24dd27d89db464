package ddb

// A reader of DynamoDB's JSON answers for the parts that hold items (Item,
// Attributes, Items, Responses, LastEvaluatedKey): each attribute value is
// built directly as its AttributeValueMember*, without encoding/json's
// reflection and intermediate structs, which made decoding a report's
// Query pages cost more than the DynamoDB Local round trip. Everything
// else in an answer (ConsumedCapacity, unprocessed keys, errors) is rare or
// small and decoded with encoding/json. Strings are decoded as
// encoding/json decodes them (invalid UTF-8 and lone surrogates become
// U+FFFD); FuzzScanItem checks the two agree.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner reads one JSON text from b.
type scanner struct {
	b []byte
	i int
}

var errSyntax = errors.New("invalid JSON")

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errSyntax, what, s.i)
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek is the next byte that is not white space, 0 at the end.
func (s *scanner) peek() byte {
	s.space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.fail("want " + strconv.QuoteRune(rune(c)))
	}
	s.i++
	return nil
}

// literal reads true, false or null.
func (s *scanner) literal(word string) bool {
	s.space()
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// null reads a null if one is next.
func (s *scanner) null() bool { return s.peek() == 'n' && s.literal("null") }

// members calls f for each member of an object, after reading its name
// and colon; f reads the value.
func (s *scanner) members(f func(name string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		name, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := f(name); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.fail("want ',' or '}'")
		}
	}
}

// elements calls f for each element of an array; f reads it.
func (s *scanner) elements(f func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := f(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.fail("want ',' or ']'")
		}
	}
}

// str reads a string.
func (s *scanner) str() (string, error) {
	if s.peek() != '"' {
		return "", s.fail("want a string")
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		if c == '"' {
			if raw := s.b[start:j]; utf8.Valid(raw) {
				s.i = j + 1
				return string(raw), nil
			}
			break
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	return s.slowStr(start)
}

// slowStr reads a string with escapes or invalid UTF-8 from start (after
// its opening quote).
func (s *scanner) slowStr(start int) (string, error) {
	out := make([]byte, 0, 64)
	j := start
	for j < len(s.b) {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return string(out), nil
		case c < 0x20:
			s.i = j
			return "", s.fail("control character in a string")
		case c == '\\':
			if j+1 >= len(s.b) {
				s.i = j
				return "", s.fail("unterminated escape")
			}
			e := s.b[j+1]
			j += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(s.b, j)
				if !ok {
					s.i = j
					return "", s.fail("bad \\u escape")
				}
				j += 4
				if utf16.IsSurrogate(r) {
					if r2, ok := hex4(s.b, j+2); ok && j+1 < len(s.b) && s.b[j] == '\\' && s.b[j+1] == 'u' {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							j += 6
							out = utf8.AppendRune(out, d)
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				s.i = j - 1
				return "", s.fail("bad escape")
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			j++
		default:
			r, size := utf8.DecodeRune(s.b[j:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, s.b[j:j+size]...)
			}
			j += size
		}
	}
	s.i = j
	return "", s.fail("unterminated string")
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func (s *scanner) boolean() (bool, error) {
	switch {
	case s.literal("true"):
		return true, nil
	case s.literal("false"):
		return false, nil
	}
	return false, s.fail("want true or false")
}

func (s *scanner) strs() ([]string, error) {
	out := []string{}
	err := s.elements(func() error {
		v, err := s.str()
		out = append(out, v)
		return err
	})
	return out, err
}

func (s *scanner) blob() ([]byte, error) {
	v, err := s.str()
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("binary attribute: %w", err)
	}
	return b, nil
}

// value reads one attribute value, {"<type>": ...}; a second type member
// is an error.
func (s *scanner) value() (AttributeValue, error) {
	var v AttributeValue
	err := s.members(func(kind string) error {
		if v != nil {
			return s.fail("attribute value of two types")
		}
		var err error
		switch kind {
		case "S":
			var x string
			x, err = s.str()
			v = &AttributeValueMemberS{Value: x}
		case "N":
			var x string
			x, err = s.str()
			v = &AttributeValueMemberN{Value: x}
		case "B":
			var x []byte
			x, err = s.blob()
			v = &AttributeValueMemberB{Value: x}
		case "BOOL":
			var x bool
			x, err = s.boolean()
			v = &AttributeValueMemberBOOL{Value: x}
		case "NULL":
			var x bool
			x, err = s.boolean()
			v = &AttributeValueMemberNULL{Value: x}
		case "M":
			var x map[string]AttributeValue
			x, err = s.item()
			if x == nil && err == nil {
				x = map[string]AttributeValue{}
			}
			v = &AttributeValueMemberM{Value: x}
		case "L":
			l := []AttributeValue{}
			err = s.elements(func() error {
				e, err := s.value()
				l = append(l, e)
				return err
			})
			v = &AttributeValueMemberL{Value: l}
		case "SS":
			var x []string
			x, err = s.strs()
			v = &AttributeValueMemberSS{Value: x}
		case "NS":
			var x []string
			x, err = s.strs()
			v = &AttributeValueMemberNS{Value: x}
		case "BS":
			x := [][]byte{}
			err = s.elements(func() error {
				b, err := s.blob()
				x = append(x, b)
				return err
			})
			v = &AttributeValueMemberBS{Value: x}
		default:
			return s.fail("unknown attribute value type " + strconv.Quote(kind))
		}
		return err
	})
	if err == nil && v == nil {
		err = s.fail("attribute value of no type")
	}
	return v, err
}

// item reads an attribute map; null is a nil map.
func (s *scanner) item() (map[string]AttributeValue, error) {
	if s.null() {
		return nil, nil
	}
	m := map[string]AttributeValue{}
	err := s.members(func(name string) error {
		v, err := s.value()
		if err != nil {
			return fmt.Errorf("attribute %q: %w", name, err)
		}
		m[name] = v
		return nil
	})
	return m, err
}

// items reads an array of attribute maps; null is nil.
func (s *scanner) items() ([]map[string]AttributeValue, error) {
	if s.null() {
		return nil, nil
	}
	out := []map[string]AttributeValue{}
	err := s.elements(func() error {
		m, err := s.item()
		out = append(out, m)
		return err
	})
	return out, err
}

// raw reads any value and returns its text, for encoding/json.
func (s *scanner) raw() ([]byte, error) {
	s.space()
	start := s.i
	if err := s.skip(0); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

// skip reads any value; depth bounds nesting.
func (s *scanner) skip(depth int) error {
	if depth > 10000 {
		return s.fail("nested too deep")
	}
	switch c := s.peek(); {
	case c == '{':
		return s.members(func(string) error { return s.skip(depth + 1) })
	case c == '[':
		return s.elements(func() error { return s.skip(depth + 1) })
	case c == '"':
		_, err := s.str()
		return err
	case c == 't' || c == 'f':
		_, err := s.boolean()
		return err
	case c == 'n':
		if s.null() {
			return nil
		}
	case c == '-' || '0' <= c && c <= '9':
		j := s.i
		for j < len(s.b) && (s.b[j] == '-' || s.b[j] == '+' || s.b[j] == '.' || s.b[j] == 'e' || s.b[j] == 'E' || '0' <= s.b[j] && s.b[j] <= '9') {
			j++
		}
		if _, err := strconv.ParseFloat(string(s.b[s.i:j]), 64); err != nil {
			return s.fail("bad number")
		}
		s.i = j
		return nil
	}
	return s.fail("want a value")
}

// end checks nothing but white space follows.
func (s *scanner) end() error {
	if s.space(); s.i < len(s.b) {
		return s.fail("data after the value")
	}
	return nil
}

// scannedItem is an attribute map inside an answer's part that
// encoding/json decodes (unprocessed keys and items, error bodies): the
// scanner reads it.
type scannedItem map[string]AttributeValue

func (m *scannedItem) UnmarshalJSON(b []byte) error {
	s := &scanner{b: b}
	it, err := s.item()
	if err == nil {
		err = s.end()
	}
	*m = it
	return err
}
