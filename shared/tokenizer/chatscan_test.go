package tokenizer

import (
	"encoding/json"
	"testing"
)

// sameChatCount fails t unless a chat body counts the same through
// plainChat as through json.Unmarshal (the same count, or both an error).
// It reports whether plainChat took the body.
func sameChatCount(t *testing.T, p prompter, body []byte) bool {
	t.Helper()
	var fast chatRequest
	plain := plainChat(body, &fast)
	var slow chatRequest
	serr := json.Unmarshal(body, &slow)
	if !plain {
		return false
	}
	if serr != nil {
		t.Fatalf("plainChat took a body json.Unmarshal refuses (%v): %s", serr, body)
	}
	fn, ferr := p.chatRequest(&fast)
	sn, serr := p.chatRequest(&slow)
	if fn != sn || (ferr == nil) != (serr == nil) {
		t.Fatalf("plainChat counts %d (%v), json.Unmarshal %d (%v), for %s", fn, ferr, sn, serr, body)
	}
	return true
}

func testPrompter(t testing.TB) prompter {
	enc, err := New().encoding(O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	return prompter{enc: enc}
}

func TestPlainChat(t *testing.T) {
	p := testPrompter(t)
	tests := []struct {
		name, body string
		plain      bool // plainChat must take it: the common requests stay fast
	}{
		{"simple", `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}],"max_tokens":50}`, true},
		{"escapes and names", `{"messages":[{"role":"user","name":"ann","content":"a \"quote\"\n\u00e9"}],"stream":true,"stream_options":{"include_usage":true}}`, true},
		{"content parts", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}`, true},
		{"tools and format", `{"messages":[{"role":"tool","tool_call_id":"c1","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],` +
			`"tool_choice":"auto","response_format":{"type":"json_object"},"functions":null,"function_call":null}`, true},
		{"nulls", `{"messages":[{"role":null,"content":null,"refusal":null}],"tools":null}`, true},
		{"no messages", `{"model":"m"}`, true},
		{"messages null", `{"messages":null}`, true},
		{"white space", " {\n \"messages\" : [ { \"role\" : \"user\" , \"content\" : \"x\" } ] \n} ", true},

		{"tool calls", `{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, false},
		{"a function call", `{"messages":[{"role":"assistant","function_call":{"name":"f","arguments":"{}"}}]}`, false},
		{"another case", `{"Messages":[{"role":"user","content":"x"}]}`, false},
		{"a message field in another case", `{"messages":[{"Role":"user","content":"x"}]}`, false},
		{"repeated messages", `{"messages":[],"messages":[{"role":"user","content":"x"}]}`, false},
		{"repeated role", `{"messages":[{"role":"user","role":"system","content":"x"}]}`, false},
		{"role not a string", `{"messages":[{"role":5,"content":"x"}]}`, false},
		{"a null message", `{"messages":[null]}`, false},
		{"messages not an array", `{"messages":{"role":"user"}}`, false},
		{"an escaped name", `{"m\u0065ssages":[]}`, false},
		{"invalid JSON", `{"messages":[],"n":01}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameChatCount(t, p, []byte(tt.body)); got != tt.plain {
				t.Fatalf("plainChat took it: %v, want %v", got, tt.plain)
			}
		})
	}
}

func FuzzPlainChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"Hello"}],"max_tokens":5}`,
		`{"messages":[{"role":"user","name":"a","content":[{"type":"text","text":"hi"}]}],"tools":[{"type":"function"}],"response_format":{"type":"json_object"}}`,
		`{"messages":[{"role":null,"content":null}],"tool_choice":"none"}`,
	} {
		f.Add([]byte(s))
	}
	p := testPrompter(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		sameChatCount(t, p, body)
	})
}
