package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestObject checks what Object walks and what it refuses.
func TestObject(t *testing.T) {
	tests := []struct {
		name, data string
		want       string // the members, "name=value;" each; "" with ok false: refused
		ok         bool
	}{
		{"empty", ` { } `, "", true},
		{"members", `{"a":1,"b":"x\"}","c":[{"d":[]}],"e":{},"f":null,"g":-1.5e+3,"h":true}`,
			`a=1;b="x\"}";c=[{"d":[]}];e={};f=null;g=-1.5e+3;h=true;`, true},
		{"white space around values", "{\n \"a\" :\t[ 1 ] ,\"b\": \"\" \r}\n", `a=[ 1 ];b="";`, true},
		{"repeated names, in order", `{"a":1,"a":2}`, `a=1;a=2;`, true},
		{"non-ASCII names", `{"é":1}`, `é=1;`, true},
		{"deep enough", `{"a":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`,
			"a=" + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + ";", true},

		{"too deep", `{"a":` + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + `}`, "", false},
		{"an escaped name", `{"\u0061":1}`, "", false},
		{"a control byte in a name", "{\"a\x01\":1}", "", false},
		{"invalid UTF-8 in a name", "{\"\x8a\":[]}", "", false},
		{"a control byte in a value", "{\"a\":\"\x01\"}", "", false},
		{"not an object", `[1]`, "", false},
		{"null", `null`, "", false},
		{"nothing", ``, "", false},
		{"after the object", `{"a":1} {}`, "a=1;", false},
		{"unclosed", `{"a":1`, "a=1;", false},
		{"mismatched brackets", `{"a":[}]}`, "", false},
		{"an unterminated string", `{"a":"x}`, "", false},
		{"a missing value", `{"a":}`, "", false},
		{"a missing colon", `{"a" 1}`, "", false},
		{"a trailing comma", `{"a":1,}`, "a=1;", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got strings.Builder
			ok := Object([]byte(tt.data), func(name, value []byte) bool {
				got.WriteString(string(name) + "=" + string(value) + ";")
				return true
			})
			if ok != tt.ok || ok && got.String() != tt.want {
				t.Errorf("Object = %v with %q, want %v with %q", ok, got.String(), tt.ok, tt.want)
			}
		})
	}
	t.Run("stopped by member", func(t *testing.T) {
		n := 0
		if Object([]byte(`{"a":1,"b":2}`), func(name, value []byte) bool { n++; return false }) || n != 1 {
			t.Errorf("Object went on after member said stop (%d calls)", n)
		}
	})
}

// TestArray checks what Array walks and what it refuses.
func TestArray(t *testing.T) {
	tests := []struct {
		name, data string
		want       string // the elements, "value;" each
		ok         bool
	}{
		{"empty", ` [ ] `, "", true},
		{"elements", `[1,"a]",{"b":[2]},[],null, true ]`, `1;"a]";{"b":[2]};[];null;true;`, true},
		{"not an array", `{"a":1}`, "", false},
		{"unclosed", `[1,2`, "1;2;", false},
		{"a trailing comma", `[1,]`, "1;", false},
		{"after the array", `[1] 2`, "1;", false},
		{"mismatched", `[{]`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got strings.Builder
			ok := Array([]byte(tt.data), func(value []byte) bool {
				got.WriteString(string(value) + ";")
				return true
			})
			if ok != tt.ok || ok && got.String() != tt.want {
				t.Errorf("Array = %v with %q, want %v with %q", ok, got.String(), tt.ok, tt.want)
			}
		})
	}
}

// FuzzObject checks Object against encoding/json on valid JSON: it walks
// exactly the objects json.Unmarshal decodes into a map (but those with an
// escape, invalid UTF-8 or deep nesting), and gives the same members; and Array on the
// members that are arrays.
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":[{"c":"}"}],"a":null}`, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}, 1 ,[]]}`, `[]`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := map[string]json.RawMessage{}
		ok := Object(data, func(name, value []byte) bool {
			got[string(name)] = value
			return true
		})
		if !json.Valid(data) {
			return // Object checks brackets and strings only
		}
		var want map[string]json.RawMessage
		err := json.Unmarshal(data, &want)
		escaped := bytes.IndexByte(data, '\\') >= 0
		deep := bytes.Count(data, []byte("["))+bytes.Count(data, []byte("{")) > MaxDepth
		switch {
		case ok && (err != nil || want == nil):
			t.Fatalf("Object walked %q, which json.Unmarshal does not decode into a map (%v)", data, err)
		case !ok && err == nil && want != nil && !escaped && !deep && utf8.Valid(data):
			t.Fatalf("Object refused %q, an object without escapes", data)
		case !ok:
			return
		}
		if len(got) != len(want) {
			t.Fatalf("Object gave %d names, json.Unmarshal %d: %q", len(got), len(want), data)
		}
		for name, v := range want {
			if g, found := got[name]; !found || !bytes.Equal(g, v) {
				t.Fatalf("member %q: Object %q, json.Unmarshal %q", name, g, v)
			}
			// Each value that is an array: Array against json.Unmarshal.
			var elems []json.RawMessage
			if v[0] != '[' || json.Unmarshal(v, &elems) != nil {
				continue
			}
			var walked []json.RawMessage
			if !Array(v, func(e []byte) bool { walked = append(walked, e); return true }) {
				t.Fatalf("Array refused %q", v)
			}
			if len(walked) != len(elems) {
				t.Fatalf("Array gave %d elements of %q, json.Unmarshal %d", len(walked), v, len(elems))
			}
			for i := range elems {
				if !bytes.Equal(walked[i], elems[i]) {
					t.Fatalf("element %d of %q: Array %q, json.Unmarshal %q", i, v, walked[i], elems[i])
				}
			}
		}
	})
}

func TestLowerName(t *testing.T) {
	for name, want := range map[string]bool{
		"prompt_tokens": true, "ephemeral_1h_input_tokens": true, "a": true,
		"": false, "Prompt_tokens": false, "prompt-tokens": false, "prompt tokens": false, "to\u212Aens": false, "é": false,
	} {
		if got := LowerName([]byte(name)); got != want {
			t.Errorf("LowerName(%q) = %v, want %v", name, got, want)
		}
	}
}
