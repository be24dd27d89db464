package fakeupstream

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// record rewrites the recorded upstream streams under
// shared/provider/testdata from this fake: go test -run TestRecordedStreams -record.
var record = flag.Bool("record", false, "rewrite shared/provider/testdata from the fake upstream")

// recordDir is where the recordings live, for the proxy's usage and cost tests.
const recordDir = "../../shared/provider/testdata"

var (
	sentNano = regexp.MustCompile(`,"fake_sent_unix_nano":[0-9]+`)
	created  = regexp.MustCompile(`"created(_at)?":[0-9]+`)
)

// normalize drops the fake's own timing field and pins timestamps, so a
// recording is deterministic and carries only the provider's fields.
func normalize(b []byte) []byte {
	b = sentNano.ReplaceAll(b, nil)
	return created.ReplaceAllFunc(b, func(m []byte) []byte {
		return append(bytes.TrimRight(m, "0123456789"), '0')
	})
}

// TestRecordedStreams captures each recording from a fresh fake and checks
// it equals the file under shared/provider/testdata (or, with -record,
// writes it).
func TestRecordedStreams(t *testing.T) {
	anth := anthropicHeader("sk-ant-fake")
	az := http.Header{"Api-Key": {"az-fake"}}
	oai := http.Header{"Authorization": {"Bearer sk-fake"}}
	chat := func(prompt string, stream, usage bool) map[string]any {
		b := chatBody(prompt, stream, usage)
		delete(b, "model")
		return b
	}
	cached := func(prompt string, stream bool) map[string]any {
		b := anthropicBody(prompt, stream)
		b["system"] = []any{map[string]any{"type": "text", "text": "You are a patient tutor for a class of twelve students.",
			"cache_control": map[string]any{"type": "ephemeral"}}}
		return b
	}
	const azChat = "/openai/deployments/class-mini/chat/completions?api-version=2024-10-21"
	tests := []struct {
		file, path string
		header     http.Header
		bodies     []any // sent in order on one fake; the last answer is recorded
	}{
		{"openai/chat_stream_usage.sse", "/v1/chat/completions", oai, []any{withModel(chat("Say hi", true, true), "gpt-4o-mini")}},
		{"openai/chat_stream_no_usage.sse", "/v1/chat/completions", oai, []any{withModel(chat("Say hi", true, false), "gpt-4o-mini")}},
		{"openai/chat_stream_truncated.sse", "/v1/chat/completions", oai, []any{withModel(chat("Say hi fake:cut", true, true), "gpt-4o-mini")}},
		{"openai/chat_stream_error_event.sse", "/v1/chat/completions", oai, []any{withModel(chat("Say hi fake:errorevent", true, true), "gpt-4o-mini")}},
		{"openai/chat.json", "/v1/chat/completions", oai, []any{withModel(chat("Say hi", false, false), "gpt-4o-mini")}},
		{"openai/error_429.json", "/v1/chat/completions", oai, []any{withModel(chat("fake:status=429", false, false), "gpt-4o-mini")}},
		{"azure/chat_stream_usage.sse", azChat, az, []any{chat("Say hi", true, true)}},
		{"azure/chat_stream_no_usage.sse", azChat, az, []any{chat("Say hi", true, false)}},
		{"azure/chat_stream_truncated.sse", azChat, az, []any{chat("Say hi fake:cut", true, true)}},
		{"azure/chat_stream_error_event.sse", azChat, az, []any{chat("Say hi fake:errorevent", true, true)}},
		{"azure/chat.json", azChat, az, []any{chat("Say hi", false, false)}},
		{"azure/error_401.json", azChat, http.Header{"Api-Key": {"wrong"}}, []any{chat("Say hi", false, false)}},
		{"azure/error_api_version.json", "/openai/deployments/class-mini/chat/completions", az, []any{chat("Say hi", false, false)}},
		{"anthropic/messages_stream_usage.sse", "/v1/messages", anth, []any{anthropicBody("Say hi", true)}},
		{"anthropic/messages_stream_cache_write.sse", "/v1/messages", anth, []any{cached("Say hi", true)}},
		{"anthropic/messages_stream_cache_read.sse", "/v1/messages", anth, []any{cached("Say hi", true), cached("Say more", true)}},
		{"anthropic/messages_stream_no_usage.sse", "/v1/messages", anth, []any{anthropicBody("Say hi fake:nousage", true)}},
		{"anthropic/messages_stream_truncated.sse", "/v1/messages", anth, []any{anthropicBody("Say hi fake:cut", true)}},
		{"anthropic/messages_stream_error_event.sse", "/v1/messages", anth, []any{anthropicBody("Say hi fake:errorevent", true)}},
		{"anthropic/messages.json", "/v1/messages", anth, []any{anthropicBody("Say hi", false)}},
		{"anthropic/messages_cache_read.json", "/v1/messages", anth, []any{cached("Say hi", false), cached("Say more", false)}},
		{"anthropic/error_401.json", "/v1/messages", anthropicHeader("wrong"), []any{anthropicBody("Say hi", false)}},
		{"anthropic/error_529.json", "/v1/messages", anth, []any{anthropicBody("fake:status=529", false)}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f := newFixture(t, Options{APIKey: keyFor(tt.header), Chunks: 3, Interval: -1,
				Deployments: map[string]string{"class-mini": "gpt-4o-mini"}})
			var got []byte
			for _, body := range tt.bodies {
				resp := f.do(t, context.Background(), http.MethodPost, tt.path, body, tt.header)
				got, _ = io.ReadAll(resp.Body) // a truncated stream ends in an error: keep what came
				resp.Body.Close()
			}
			got = normalize(got)
			path := filepath.Join(recordDir, tt.file)
			if *record {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -record to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from a fresh capture (run with -record to rewrite):\ngot:\n%s\nwant:\n%s", tt.file, got, want)
			}
		})
	}
}

func withModel(b map[string]any, model string) map[string]any {
	b["model"] = model
	return b
}

// keyFor is the fake's API key for a recording's headers: the right key
// unless the recording is of a wrong one.
func keyFor(h http.Header) string {
	switch {
	case h.Get("X-Api-Key") != "":
		return "sk-ant-fake"
	case h.Get("Api-Key") != "":
		return "az-fake"
	}
	return "sk-fake"
}
