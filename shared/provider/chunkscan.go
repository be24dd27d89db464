package provider

// A shortcut for the commonest data ReadPayload reads: a chat completion
// chunk as OpenAI and Azure stream it, one per token or so, which reports
// no usage and carries a little text. Its text is found in place
// (jsonscan) instead of through a reflection decode of the whole chunk.

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"

	"github.com/stipend/stipend/shared/jsonscan"
)

// plainChunk writes the text of data to text, as the full decode
// (decodePayload) writes it, and reports true, when data is a plain chunk:
// an object whose member names are lower-case ASCII (jsonscan.LowerName,
// so that names match fields as encoding/json matches them); with no
// "type", "delta", "response" or "message" member, and "usage" absent or
// null (so the full decode reports no usage); at most one "choices", an
// array of objects each with at most one "text" (a string or null) and one
// "delta" (null, or an object with at most one "content" and one "refusal",
// each a string or null, and "tool_calls" absent or null), "logprobs"
// absent or null; every other value anywhere a plain scalar (an integer of
// up to 18 digits, a string, true, false or null). Anything else writes
// nothing and reports false, for the full decode.
func plainChunk(data []byte, text io.StringWriter) bool {
	if !isPlainChunk(data) {
		return false
	}
	jsonscan.Object(data, func(name, v []byte) bool {
		if string(name) == "choices" {
			jsonscan.Array(v, func(c []byte) bool {
				writeChoice(c, text)
				return true
			})
		}
		return true
	})
	return true
}

// isPlainChunk reports whether data is a plain chunk (plainChunk).
func isPlainChunk(data []byte) bool {
	var choices, usage bool
	return len(data) > 0 && data[0] == '{' && jsonscan.Object(data, func(name, v []byte) bool {
		if !jsonscan.LowerName(name) {
			return false
		}
		switch string(name) {
		case "choices":
			if choices || len(v) == 0 || v[0] != '[' {
				return false
			}
			choices = true
			return jsonscan.Array(v, isPlainChoice)
		case "usage":
			if usage || string(v) != "null" {
				return false
			}
			usage = true
			return true
		case "type", "delta", "response", "message":
			return false
		}
		return isPlainScalar(v)
	})
}

// isPlainChoice reports whether c is a choice of a plain chunk.
func isPlainChoice(c []byte) bool {
	var text, delta bool
	return len(c) > 0 && c[0] == '{' && jsonscan.Object(c, func(name, v []byte) bool {
		if !jsonscan.LowerName(name) {
			return false
		}
		switch string(name) {
		case "text":
			if text {
				return false
			}
			text = true
			return isStringOrNull(v)
		case "delta":
			if delta {
				return false
			}
			delta = true
			return string(v) == "null" || isPlainDelta(v)
		case "logprobs":
			return string(v) == "null"
		}
		return isPlainScalar(v)
	})
}

// isPlainDelta reports whether d is the delta of a plain chunk's choice.
func isPlainDelta(d []byte) bool {
	var content, refusal bool
	return len(d) > 0 && d[0] == '{' && jsonscan.Object(d, func(name, v []byte) bool {
		if !jsonscan.LowerName(name) {
			return false
		}
		switch string(name) {
		case "content":
			if content {
				return false
			}
			content = true
			return isStringOrNull(v)
		case "refusal":
			if refusal {
				return false
			}
			refusal = true
			return isStringOrNull(v)
		case "tool_calls":
			return string(v) == "null"
		}
		return isPlainScalar(v)
	})
}

// writeChoice writes the text of c, a plain choice: its text, then its
// delta's content and refusal, the order of the full decode.
func writeChoice(c []byte, text io.StringWriter) {
	var txt, content, refusal []byte
	jsonscan.Object(c, func(name, v []byte) bool {
		switch string(name) {
		case "text":
			txt = v
		case "delta":
			jsonscan.Object(v, func(name, v []byte) bool { // not an object (null): nothing
				switch string(name) {
				case "content":
					content = v
				case "refusal":
					refusal = v
				}
				return true
			})
		}
		return true
	})
	for _, v := range [][]byte{txt, content, refusal} {
		writeJSONString(v, text)
	}
}

// writeJSONString writes the string v (a JSON string or null, as
// isStringOrNull accepted; nil: absent) decodes to. One without escapes
// whose bytes are valid UTF-8 is those bytes; any other is decoded by
// encoding/json, which replaces invalid UTF-8 as the full decode does.
func writeJSONString(v []byte, text io.StringWriter) {
	if len(v) < 2 || v[0] != '"' {
		return // absent or null: ""
	}
	raw := v[1 : len(v)-1]
	if len(raw) == 0 {
		return
	}
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		if w, ok := text.(io.Writer); ok {
			_, _ = w.Write(raw)
		} else {
			_, _ = text.WriteString(string(raw))
		}
		return
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		_, _ = text.WriteString(s)
	}
}

// isPlainScalar reports whether v is an integer of up to 18 digits, a
// string, true, false or null.
func isPlainScalar(v []byte) bool {
	switch string(v) {
	case "null", "true", "false":
		return true
	}
	return isPlainInt(v) || isJSONString(v)
}

// isStringOrNull reports whether v is a JSON string or null.
func isStringOrNull(v []byte) bool { return string(v) == "null" || isJSONString(v) }

// isJSONString reports whether v is one JSON string: quotes around bytes
// that are not control characters, quotes or backslashes, or escapes
// (\" \\ \/ \b \f \n \r \t, \u and four hex digits). Bytes past ASCII are
// taken as they are, as encoding/json takes them (it replaces invalid
// UTF-8 when it decodes).
func isJSONString(v []byte) bool {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return false
	}
	s := v[1 : len(v)-1]
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < ' ' || c == '"':
			return false
		case c == '\\':
			if i+1 >= len(s) {
				return false
			}
			i++
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s) {
					return false
				}
				for _, h := range s[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return true
}
