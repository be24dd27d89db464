package fakeupstream

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func anthropicHeader(key string) http.Header {
	h := http.Header{"Anthropic-Version": {"2023-06-01"}}
	if key != "" {
		h.Set("X-Api-Key", key)
	}
	return h
}

func anthropicBody(prompt string, stream bool) map[string]any {
	b := map[string]any{
		"model": "claude-sonnet-4-5", "max_tokens": 1024,
		"messages": []any{map[string]any{"role": "user", "content": prompt}},
	}
	if stream {
		b["stream"] = true
	}
	return b
}

func TestAnthropicErrors(t *testing.T) {
	f := newFixture(t, Options{APIKey: "sk-ant-test", Chunks: 3, Interval: -1})
	noVersion := http.Header{"X-Api-Key": {"sk-ant-test"}}
	bearer := http.Header{"Authorization": {"Bearer sk-ant-test"}, "Anthropic-Version": {"2023-06-01"}}
	tests := []struct {
		name    string
		header  http.Header
		body    any
		status  int
		errType string
		msg     string
	}{
		{"no key", anthropicHeader(""), anthropicBody("hi", false), 401, "authentication_error", "x-api-key header is required"},
		{"bearer is not x-api-key", bearer, anthropicBody("hi", false), 401, "authentication_error", "x-api-key header is required"},
		{"wrong key", anthropicHeader("sk-wrong"), anthropicBody("hi", false), 401, "authentication_error", "invalid x-api-key"},
		{"no version", noVersion, anthropicBody("hi", false), 400, "invalid_request_error", "anthropic-version"},
		{"no max_tokens", anthropicHeader("sk-ant-test"), map[string]any{"model": "claude-sonnet-4-5", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}, 400, "invalid_request_error", "max_tokens"},
		{"no model", anthropicHeader("sk-ant-test"), map[string]any{"max_tokens": 5, "messages": []any{}}, 400, "invalid_request_error", "model"},
		{"bad json", anthropicHeader("sk-ant-test"), []byte("{"), 400, "invalid_request_error", "parsing the body"},
		{"429", anthropicHeader("sk-ant-test"), anthropicBody("fake:status=429", false), 429, "rate_limit_error", "fake error"},
		{"529", anthropicHeader("sk-ant-test"), anthropicBody("fake:status=529", true), 529, "overloaded_error", "fake error"},
		{"500", anthropicHeader("sk-ant-test"), anthropicBody("fake:status=500", false), 500, "api_error", "fake error"},
		{"bad directive", anthropicHeader("sk-ant-test"), anthropicBody("fake:nope", false), 400, "invalid_request_error", "unknown directive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := readJSON(t, f.do(t, context.Background(), http.MethodPost, "/v1/messages", tt.body, tt.header), tt.status)
			if get(t, m, "type") != "error" || get(t, m, "error", "type") != tt.errType ||
				!strings.Contains(get(t, m, "error", "message").(string), tt.msg) {
				t.Errorf("body %v; want type %q message containing %q", m, tt.errType, tt.msg)
			}
		})
	}
}

func TestAnthropicNonStreaming(t *testing.T) {
	f := newFixture(t, Options{APIKey: "k", Chunks: 4, Interval: -1})
	m := readJSON(t, f.do(t, context.Background(), http.MethodPost, "/v1/messages", anthropicBody("one two three", false), anthropicHeader("k")), 200)
	if get(t, m, "type") != "message" || get(t, m, "role") != "assistant" || get(t, m, "model") != "claude-sonnet-4-5" ||
		get(t, m, "stop_reason") != "end_turn" || get(t, m, "content", 0, "text") != " word1 word2 word3 word4" {
		t.Errorf("message %v", m)
	}
	// 3 words + 4 per message; no cache_control: the cache fields are 0.
	for k, want := range map[string]int{"input_tokens": 7, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0} {
		if got := num(t, get(t, m, "usage", k)); got != want {
			t.Errorf("usage.%s = %d, want %d", k, got, want)
		}
	}
	// max_tokens caps the output.
	b := anthropicBody("hi", false)
	b["max_tokens"] = 2
	m = readJSON(t, f.do(t, context.Background(), http.MethodPost, "/v1/messages", b, anthropicHeader("k")), 200)
	if get(t, m, "stop_reason") != "max_tokens" || num(t, get(t, m, "usage", "output_tokens")) != 2 {
		t.Errorf("capped message %v", m)
	}
}

// TestAnthropicCacheUsage: the prefix through the last cache_control block
// is written on first sight and read afterwards.
func TestAnthropicCacheUsage(t *testing.T) {
	f := newFixture(t, Options{Chunks: 2, Interval: -1})
	body := func(question string) map[string]any {
		return map[string]any{
			"model": "claude-haiku-4-5", "max_tokens": 100,
			"system": []any{map[string]any{"type": "text", "text": "a b c d e f g h i j",
				"cache_control": map[string]any{"type": "ephemeral"}}},
			"messages": []any{map[string]any{"role": "user", "content": question}},
		}
	}
	tests := []struct {
		name               string
		question           string
		input, write, read int
	}{
		{"first writes", "one two", 6, 10, 0},
		{"second reads", "one two three", 7, 0, 10},
	}
	for _, tt := range tests {
		m := readJSON(t, f.do(t, context.Background(), http.MethodPost, "/v1/messages", body(tt.question), anthropicHeader("")), 200)
		u := get(t, m, "usage")
		if num(t, get(t, u, "input_tokens")) != tt.input || num(t, get(t, u, "cache_creation_input_tokens")) != tt.write ||
			num(t, get(t, u, "cache_read_input_tokens")) != tt.read {
			t.Errorf("%s: usage %v; want input %d write %d read %d", tt.name, u, tt.input, tt.write, tt.read)
		}
	}
}

func TestAnthropicStream(t *testing.T) {
	f := newFixture(t, Options{Chunks: 3, Interval: -1})
	tests := []struct {
		name   string
		prompt string
		names  []string
		usage  bool
		err    bool
	}{
		{"complete", "hello", []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}, true, false},
		{"no usage", "hello fake:nousage", []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}, false, false},
		{"error event", "hello fake:errorevent", []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta", "content_block_delta", "error"}, true, false},
		{"cut", "hello fake:cut", []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.do(t, context.Background(), http.MethodPost, "/v1/messages", anthropicBody(tt.prompt, true), anthropicHeader(""))
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			events, err := readEvents(resp)
			if (err != nil) != tt.err {
				t.Fatalf("stream error %v, want error %v", err, tt.err)
			}
			var names []string
			for _, ev := range events {
				names = append(names, ev.name)
				if m := ev.json(t); m["type"] != ev.name {
					t.Errorf("event %q has data type %v", ev.name, m["type"])
				}
			}
			if strings.Join(names, ",") != strings.Join(tt.names, ",") {
				t.Fatalf("events %v\nwant   %v", names, tt.names)
			}
			start := events[0].json(t)
			if has(get(t, start, "message"), "usage") != tt.usage {
				t.Errorf("message_start usage present = %v, want %v", !tt.usage, tt.usage)
			}
			if tt.usage && !tt.err && names[len(names)-1] == "message_stop" {
				if got := num(t, get(t, events[len(events)-2].json(t), "usage", "output_tokens")); got != 3 {
					t.Errorf("message_delta output_tokens %d, want 3", got)
				}
				if got := num(t, get(t, start, "message", "usage", "input_tokens")); got != 5 {
					t.Errorf("message_start input_tokens %d, want 5", got)
				}
			}
			if tt.name == "no usage" && has(events[len(events)-2].json(t), "usage") {
				t.Error("message_delta carries usage under fake:nousage")
			}
			if tt.name == "error event" {
				if m := events[len(events)-1].json(t); get(t, m, "error", "type") != "overloaded_error" {
					t.Errorf("error event %v", m)
				}
			}
			if get(t, events[3].json(t), "delta", "text") != " word1" {
				t.Errorf("first delta %s", events[3].data)
			}
		})
	}
}
