// Package jsonenc appends JSON values to byte slices, byte for byte as
// encoding/json's Marshal writes them (its HTML escaping included). It
// serves the few fixed shapes the proxy writes on every request (an
// event, a reservation's ledger entry), where Marshal's reflection was
// most of their cost; their tests compare the output with Marshal's.
package jsonenc

import (
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// String appends s as a JSON string: quotes and backslashes escaped,
// control characters as \b, \f, \n, \r, \t or \u00XX, '<', '>' and '&' as
// \u003c, \u003e and \u0026, U+2028 and U+2029 as \u2028 and \u2029, and
// each byte of invalid UTF-8 as \ufffd.
func String(b []byte, s string) []byte {
	b = append(b, '"')
	done := 0 // s[:done] is in b
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[done:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			done = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[done:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[done:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		done = i
	}
	b = append(b, s[done:]...)
	return append(b, '"')
}

// Int appends n as a JSON number.
func Int(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// Bool appends v as true or false.
func Bool(b []byte, v bool) []byte { return strconv.AppendBool(b, v) }

// Array appends xs as a JSON array, each element written by elem.
func Array[T any](b []byte, xs []T, elem func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, x)
	}
	return append(b, ']')
}

// Object writes a JSON object's members in order, each with its comma.
// Its zero value starts an object that is not yet opened: Open it.
type Object struct {
	B    []byte
	some bool // a member was written
}

// Open starts the object at the end of b.
func Open(b []byte) Object { return Object{B: append(b, '{')} }

// Name writes the next member's name (a plain key, written as is: quote
// and escape nothing in it) and its colon; its value follows.
func (o *Object) Name(key string) {
	if o.some {
		o.B = append(o.B, ',')
	}
	o.some = true
	o.B = append(o.B, '"')
	o.B = append(o.B, key...)
	o.B = append(o.B, '"', ':')
}

// String writes member key with string value v.
func (o *Object) String(key, v string) {
	o.Name(key)
	o.B = String(o.B, v)
}

// Int writes member key with number value n.
func (o *Object) Int(key string, n int64) {
	o.Name(key)
	o.B = Int(o.B, n)
}

// Bool writes member key with value v.
func (o *Object) Bool(key string, v bool) {
	o.Name(key)
	o.B = Bool(o.B, v)
}

// Close ends the object and returns the bytes.
func (o *Object) Close() []byte { return append(o.B, '}') }
