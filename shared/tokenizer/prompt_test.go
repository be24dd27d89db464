package tokenizer

import (
	"encoding/json"
	"strings"
	"testing"
)

const (
	toolsJSON = `[{"type":"function","function":{"name":"get_weather","description":"Get the weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	schemaRF  = `{"type":"json_schema","json_schema":{"name":"answer","strict":true,"schema":{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"],"additionalProperties":false}}}`
)

func TestPrompt(t *testing.T) {
	c := New()
	cnt := func(enc, s string) int64 {
		n, err := c.Count(enc, s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	audio := strings.Repeat("UklG", 100) // 400 base64 characters
	pdf := strings.Repeat("JVBE", 250)   // 1000 base64 characters
	const o, cl = O200kBase, CL100kBase
	// Counts below: replyPriming 3; per message 4 + role (1 token for every
	// role) + content; "Hello" 1, "be brief" 2, "bob" 1, "What is in this
	// image?" 6, "get_weather" 2, `{"city":"Paris"}` 5, "call_1" 3, "Sunny"
	// 1 (o200k), "hello world" 2.
	tests := []struct {
		name, enc, path, body string
		want                  int64
	}{
		// OpenAI bills 8 for this on gpt-4o; the formula here gives 9.
		{"chat hello", o, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}`, 3 + 4 + 1 + 1},
		{"chat hello cl100k", cl, "/v1/chat/completions", `{"messages":[{"role":"user","content":"Hello"}]}`, 9},
		{"chat n ignored", o, "/v1/chat/completions", `{"n":5,"messages":[{"role":"user","content":"Hello"}]}`, 9},
		{"chat query and slash", o, "/v1/chat/completions/?x=1", `{"messages":[{"role":"user","content":"Hello"}]}`, 9},
		{"chat azure path", o, "/openai/deployments/prod/chat/completions", `{"messages":[{"role":"user","content":"Hello"}]}`, 9},
		{"chat empty messages", o, "/v1/chat/completions", `{"messages":[]}`, 3},
		{"chat name", o, "/v1/chat/completions",
			`{"messages":[{"role":"system","content":"be brief"},{"role":"user","name":"bob","content":"Hello"}]}`,
			3 + (4 + 1 + 2) + (4 + 1 + 1 + 1 + 1)},
		{"chat text and image parts", o, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"low"}}]}]}`,
			3 + 4 + 1 + 6 + imageTokens},
		{"chat audio part", o, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"` + audio + `","format":"wav"}}]}]}`,
			3 + 4 + 1 + 100},
		{"chat file part", o, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"data:application/pdf;base64,` + pdf + `"}}]}]}`,
			3 + 4 + 1 + fileTokens + (28+1000+3)/4},
		{"chat unknown part", o, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":[{"type":"future","x":"hello world"}]}]}`,
			3 + 4 + 1 + cnt(o, `{"type":"future","x":"hello world"}`)},
		{"chat tool calls", o, "/v1/chat/completions",
			`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"Sunny"}]}`,
			3 + (4 + 1 + perToolCall + 2 + 5) + (4 + 1 + 3 + 1)},
		{"chat legacy function_call", o, "/v1/chat/completions",
			`{"messages":[{"role":"assistant","function_call":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`,
			3 + 4 + 1 + perToolCall + 2 + 5},
		{"chat tools", o, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":"Hello"}],"tools":` + toolsJSON + `,"tool_choice":"auto"}`,
			9 + cnt(o, toolsJSON) + toolsOverhead + perTool + cnt(o, `"auto"`)},
		{"chat functions", cl, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":"Hello"}],"functions":[{"name":"get_weather","parameters":{}}]}`,
			9 + cnt(cl, `[{"name":"get_weather","parameters":{}}]`) + toolsOverhead + perTool},
		{"chat response_format", o, "/v1/chat/completions",
			`{"messages":[{"role":"user","content":"Hello"}],"response_format":` + schemaRF + `}`,
			9 + cnt(o, schemaRF) + schemaOverhead},

		{"completions string", cl, "/v1/completions", `{"prompt":"hello world"}`, 2},
		{"completions strings", cl, "/v1/completions", `{"prompt":["hello","world"],"n":3}`, 2},
		{"completions tokens", cl, "/v1/completions", `{"prompt":[15339,1917,0]}`, 3},
		{"completions token arrays", cl, "/v1/completions", `{"prompt":[[1,2],[3,4,5],[]]}`, 5},
		{"completions suffix", cl, "/v1/completions", `{"prompt":"hello","suffix":"world"}`, 2},
		{"completions default prompt", cl, "/v1/completions", `{"max_tokens":5}`, 1},

		{"embeddings string", cl, "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hello world"}`, 2},
		{"embeddings strings", cl, "/v1/embeddings", `{"input":["hello","world","hello world"]}`, 4},
		{"embeddings tokens", cl, "/v1/embeddings", `{"input":[1,2,3,4]}`, 4},
		{"embeddings token arrays", cl, "/v1/embeddings", `{"input":[[1,2],[3]]}`, 3},
		{"embeddings query", cl, "/v1/embeddings?api-version=2024-10-21", `{"input":"hello world"}`, 2},

		{"responses string", o, "/v1/responses", `{"model":"gpt-4o","input":"Hello"}`, 3 + 4 + 1 + 1},
		{"responses instructions", o, "/v1/responses", `{"instructions":"be brief","input":"Hello"}`, 9 + 4 + 1 + 2},
		{"responses message items", o, "/v1/responses",
			`{"input":[{"role":"user","content":[{"type":"input_text","text":"Hello"},{"type":"input_image","image_url":"https://example.com/a.png"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hello"}]},{"role":"user","content":"Hello"}]}`,
			3 + (4 + 1 + 1 + imageTokens) + (4 + 1 + 1) + (4 + 1 + 1)},
		{"responses function call items", o, "/v1/responses",
			`{"input":[{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},{"type":"function_call_output","call_id":"call_1","output":"Sunny"}]}`,
			3 + (4 + perToolCall + 2 + 5) + (4 + 1)},
		{"responses unknown item", o, "/v1/responses",
			`{"input":[{"type":"item_reference","id":"msg_1"}]}`,
			3 + 4 + cnt(o, `{"type":"item_reference","id":"msg_1"}`)},
		{"responses tools and format", o, "/v1/responses",
			`{"input":"Hello","tools":[{"type":"function","name":"get_weather","parameters":{}},{"type":"web_search"}],"text":{"format":{"type":"json_object"}}}`,
			9 + cnt(o, `[{"type":"function","name":"get_weather","parameters":{}},{"type":"web_search"}]`) + toolsOverhead + 2*perTool + cnt(o, `{"type":"json_object"}`) + schemaOverhead},

		{"moderations string", o, "/v1/moderations", `{"input":"hello world"}`, 2},
		{"moderations strings", o, "/v1/moderations", `{"input":["hello","world"]}`, 2},
		{"moderations parts", o, "/v1/moderations",
			`{"model":"omni-moderation-latest","input":[{"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}`,
			2 + imageTokens},

		{"unknown path", o, "/v1/audio/speech", `{"input":"hello world"}`, cnt(o, `{"input":"hello world"}`)},
		{"unknown path not json", o, "/v1/files", `hello world`, 2},
		{"unknown path empty", o, "/v1/models", ``, 0},
	}
	for _, tt := range tests {
		got, err := c.Prompt(tt.enc, tt.path, []byte(tt.body))
		if err != nil || got != tt.want {
			t.Errorf("%s: Prompt = %d, %v; want %d", tt.name, got, err, tt.want)
		}
	}
}

// TestPromptAtLeastOpenAI compares with prompt_tokens OpenAI reports for
// simple chats on gpt-4o (o200k_base): 3 per message + role + content + 3.
func TestPromptAtLeastOpenAI(t *testing.T) {
	c := New()
	tests := []struct {
		body   string
		openai int64
	}{
		{`{"messages":[{"role":"user","content":"Hello"}]}`, 8},
		{`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"Hello"}]}`, 3 + (3 + 1 + 2) + (3 + 1 + 1)},
		{`{"messages":[{"role":"user","name":"bob","content":"Hello"}]}`, 3 + (3 + 1 + 1 + 1 + 1)},
	}
	for _, tt := range tests {
		got, err := c.Prompt(O200kBase, "/v1/chat/completions", []byte(tt.body))
		if err != nil || got < tt.openai {
			t.Errorf("Prompt(%s) = %d, %v; OpenAI bills %d", tt.body, got, err, tt.openai)
		}
	}
}

func TestPromptMalformed(t *testing.T) {
	c := New()
	tests := []struct{ path, body string }{
		{"/v1/chat/completions", ``},
		{"/v1/chat/completions", `{"messages":[`},
		{"/v1/chat/completions", `[]`},
		{"/v1/chat/completions", `null`},
		{"/v1/chat/completions", `"hello"`},
		{"/v1/chat/completions", `{"messages":"hello"}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":5}]}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":{"text":"hi"}}]}`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[5]}]}`},
		{"/v1/chat/completions", `{"messages":[{"role":7}]}`},
		{"/v1/chat/completions", `{"messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{}}}]}]}`},
		{"/v1/completions", `{"prompt":{"text":"hi"}}`},
		{"/v1/completions", `{"prompt":[true]}`},
		{"/v1/completions", `{"prompt":[[1,"a"]]}`},
		{"/v1/completions", `{"prompt":"hi"`},
		{"/v1/embeddings", `{"input":5}`},
		{"/v1/embeddings", `{"input":[{"a":1}]}`},
		{"/v1/responses", `{"input":5}`},
		{"/v1/responses", `{"instructions":["a"],"input":"hi"}`},
		{"/v1/responses", `{"input":[{"role":"user","content":5}]}`},
		{"/v1/responses", `{"input":["hi"]}`},
		{"/v1/moderations", `{"input":5}`},
		{"/v1/moderations", `{"input":[5]}`},
		{"/v1/moderations", `not json`},
	}
	for _, tt := range tests {
		if n, err := c.Prompt(O200kBase, tt.path, []byte(tt.body)); err == nil {
			t.Errorf("Prompt(%s, %s) = %d, want error", tt.path, tt.body, n)
		}
	}
}

func BenchmarkPrompt(b *testing.B) {
	c := New()
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France? Answer in one word."}],"temperature":0.2,"max_tokens":16}`)
	if _, err := c.Prompt(O200kBase, "/v1/chat/completions", body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Prompt(O200kBase, "/v1/chat/completions", body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestJSONString holds jsonString's shortcut to json.Unmarshal.
func TestJSONString(t *testing.T) {
	for _, v := range []string{`""`, `"plain"`, `"é中🙂"`, `"esc\"aped"`, `"\u00e9\n"`, `"bad ` + "\xff" + `"`,
		`"ctl` + "\x01" + `"`, `"tab` + "\t" + `"`, `"`, `x`, `"a" `, `1`, `null`} {
		got, gerr := jsonString(json.RawMessage(v))
		var want string
		werr := json.Unmarshal([]byte(v), &want)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Errorf("jsonString(%q) = %q, %v; json.Unmarshal %q, %v", v, got, gerr, want, werr)
		}
	}
}
