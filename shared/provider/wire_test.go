package provider

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/ledger"
)

func TestWithIncludeUsage(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{`{"stream_options":null}`, `{"stream_options":{"include_usage":true}}`},
		{`{"stream_options":{"include_obfuscation":false}}`, `{"stream_options":{"include_obfuscation":false,"include_usage":true}}`},
	}
	for _, tt := range tests {
		got, err := WithIncludeUsage([]byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		json.Unmarshal(got, &a)
		json.Unmarshal([]byte(tt.want), &b)
		ga, _ := json.Marshal(a)
		gb, _ := json.Marshal(b)
		if string(ga) != string(gb) {
			t.Errorf("WithIncludeUsage(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if _, err := WithIncludeUsage([]byte(`[1]`)); err == nil {
		t.Error("array accepted")
	}
}

// TestRecordedStreams replays the recorded upstream answers in testdata
// (each provider's stream with usage, without, truncated, with an error
// event, and buffered bodies) and checks the usage read from them.
func TestRecordedStreams(t *testing.T) {
	tests := []struct {
		file string
		want *ledger.Usage // nil: no usage reported
		text string
	}{
		{"openai/chat_stream_usage.sse", &ledger.Usage{PromptTokens: 13, CompletionTokens: 3}, " word1 word2 word3"},
		{"openai/chat_stream_no_usage.sse", nil, " word1 word2 word3"},
		{"openai/chat_stream_truncated.sse", nil, " word1 word2"},
		{"openai/chat.json", &ledger.Usage{PromptTokens: 13, CompletionTokens: 3}, ""},
		{"azure/chat_stream_usage.sse", &ledger.Usage{PromptTokens: 13, CompletionTokens: 3}, ""},
		{"azure/chat_stream_no_usage.sse", nil, ""},
		{"anthropic/messages_stream_usage.sse", &ledger.Usage{PromptTokens: 6, CompletionTokens: 3}, " word1 word2 word3"},
		{"anthropic/messages_stream_no_usage.sse", nil, ""},
		// Cache writes are part of the prompt and priced on their own.
		{"anthropic/messages_stream_cache_write.sse", &ledger.Usage{PromptTokens: 17, CacheWriteTokens: 11, CompletionTokens: 3}, " word1 word2 word3"},
		// The same with a 1-hour write (usage.cache_creation, as Anthropic
		// sends it; this file is the recording above with that object added).
		{"anthropic/messages_stream_cache_write_1h.sse", &ledger.Usage{PromptTokens: 17, CacheWriteTokens: 11, CacheWrite1hTokens: 11, CompletionTokens: 3}, " word1 word2 word3"},
		{"anthropic/messages_stream_cache_read.sse", &ledger.Usage{PromptTokens: 17, CachedTokens: 11, CompletionTokens: 3}, ""},
		{"anthropic/messages_cache_read.json", &ledger.Usage{PromptTokens: 17, CachedTokens: 11, CompletionTokens: 3}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			var seen *ledger.Usage
			read := func(data []byte) {
				if u := ReadPayload(data, &text); u != nil {
					seen = MergeUsage(seen, *u)
				}
			}
			if strings.HasSuffix(tt.file, ".json") {
				read(b)
			} else {
				for _, line := range strings.Split(string(b), "\n") {
					if data, ok := strings.CutPrefix(line, "data: "); ok {
						read([]byte(data))
					}
				}
			}
			switch {
			case tt.want == nil && seen != nil:
				t.Errorf("usage %+v, want none", *seen)
			case tt.want != nil && (seen == nil || *seen != *tt.want):
				t.Errorf("usage %+v, want %+v", seen, *tt.want)
			}
			if tt.text != "" && text.String() != tt.text {
				t.Errorf("text %q, want %q", text.String(), tt.text)
			}
		})
	}
}
