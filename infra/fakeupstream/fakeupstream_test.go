package fakeupstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is a Server behind an httptest.Server that reports each finished
// handler call on ended.
type fixture struct {
	fake  *Server
	srv   *httptest.Server
	ended chan string
}

// newFixture starts a fixture with opts.
func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	f := &fixture{fake: New(opts), ended: make(chan string, 100)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			select {
			case f.ended <- r.URL.Path:
			default:
			}
		}()
		f.fake.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request with a JSON body (nil for none) and returns the
// response; the caller closes its body.
func (f *fixture) do(t *testing.T, ctx context.Context, method, path string, body any, header http.Header) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// readJSON reads resp's body into a generic map, checking the status.
func readJSON(t *testing.T, resp *http.Response, wantStatus int) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, wantStatus, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, b)
	}
	return m
}

// get walks a generic JSON value along keys (strings) and indexes (ints).
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %T is not an object", p, v)
			}
			v, ok = m[p]
			if !ok {
				t.Fatalf("no key %q in %v", p, m)
			}
		case int:
			a, ok := v.([]any)
			if !ok || p >= len(a) {
				t.Fatalf("at [%d]: not an array of that length: %v", p, v)
			}
			v = a[p]
		}
	}
	return v
}

// has reports whether the JSON object v has key.
func has(v any, key string) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	_, ok = m[key]
	return ok
}

// event is one server-sent event as the client saw it.
type event struct {
	name string
	data string
	at   time.Time
}

// json decodes the event's data.
func (e event) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.data), &m); err != nil {
		t.Fatalf("event data is not a JSON object: %v: %s", err, e.data)
	}
	return m
}

// sseReader reads server-sent events one at a time.
type sseReader struct{ br *bufio.Reader }

// next returns the next event, io.EOF at a clean end of the stream, or the
// read error.
func (r *sseReader) next() (event, error) {
	var ev event
	var lines int
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line == "" && lines == 0 {
				return event{}, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return event{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if lines == 0 {
				continue
			}
			ev.at = time.Now()
			return ev, nil
		}
		lines++
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		default:
			return event{}, fmt.Errorf("unexpected SSE line %q", line)
		}
	}
}

// readEvents reads events until the stream ends, returning them and the
// error that ended it (nil for a clean end).
func readEvents(resp *http.Response) ([]event, error) {
	defer resp.Body.Close()
	r := &sseReader{br: bufio.NewReader(resp.Body)}
	var events []event
	for {
		ev, err := r.next()
		if err == io.EOF {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

// openStream posts body and checks that an event stream answers.
func (f *fixture) openStream(t *testing.T, ctx context.Context, path string, body any) *http.Response {
	t.Helper()
	resp := f.do(t, ctx, http.MethodPost, path, body, nil)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	return resp
}

// chatBody is a chat request whose last user message says prompt.
func chatBody(prompt string, stream, includeUsage bool) map[string]any {
	b := map[string]any{
		"model": "gpt-4o-mini",
		"messages": []any{
			map[string]any{"role": "system", "content": "You are terse."},
			map[string]any{"role": "user", "content": prompt},
		},
	}
	if stream {
		b["stream"] = true
	}
	if includeUsage {
		b["stream_options"] = map[string]any{"include_usage": true}
	}
	return b
}

// num returns a JSON number as an int.
func num(t *testing.T, v any) int {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	return int(f)
}

func TestNonStreaming(t *testing.T) {
	f := newFixture(t, Options{})
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		check  func(t *testing.T, m map[string]any)
	}{
		{
			name: "chat", method: http.MethodPost, path: "/v1/chat/completions",
			body: chatBody("hello there fake:chunks=3", false, false),
			check: func(t *testing.T, m map[string]any) {
				if get(t, m, "object") != "chat.completion" || get(t, m, "model") != "gpt-4o-mini" {
					t.Errorf("object/model: %v", m)
				}
				if got := get(t, m, "choices", 0, "message", "content"); got != " word1 word2 word3" {
					t.Errorf("content %q", got)
				}
				if get(t, m, "choices", 0, "finish_reason") != "stop" || get(t, m, "choices", 0, "message", "role") != "assistant" {
					t.Errorf("choice: %v", get(t, m, "choices", 0))
				}
				// (3 system words + 4) + (3 user words + 4)
				if p, c, tot := num(t, get(t, m, "usage", "prompt_tokens")), num(t, get(t, m, "usage", "completion_tokens")), num(t, get(t, m, "usage", "total_tokens")); p != 14 || c != 3 || tot != 17 {
					t.Errorf("usage %d/%d/%d, want 14/3/17", p, c, tot)
				}
				if num(t, get(t, m, "usage", "prompt_tokens_details", "cached_tokens")) != 0 {
					t.Error("cached tokens")
				}
			},
		},
		{
			name: "chat content parts, default chunks, nousage", method: http.MethodPost, path: "/v1/chat/completions",
			body: map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "text", "text": "look"},
				map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:,"}},
				map[string]any{"type": "text", "text": "fake:nousage"},
			}}}},
			check: func(t *testing.T, m map[string]any) {
				if got := get(t, m, "choices", 0, "message", "content"); got != fullText(DefaultChunks) {
					t.Errorf("content %q", got)
				}
				if has(m, "usage") {
					t.Errorf("usage present despite fake:nousage: %v", m["usage"])
				}
			},
		},
		{
			name: "completions", method: http.MethodPost, path: "/v1/completions",
			body: map[string]any{"model": "gpt-3.5-turbo-instruct", "prompt": "say two words fake:chunks=2"},
			check: func(t *testing.T, m map[string]any) {
				if get(t, m, "object") != "text_completion" || get(t, m, "choices", 0, "text") != " word1 word2" {
					t.Errorf("completion: %v", m)
				}
				if p, c := num(t, get(t, m, "usage", "prompt_tokens")), num(t, get(t, m, "usage", "completion_tokens")); p != 4 || c != 2 {
					t.Errorf("usage %d/%d, want 4/2", p, c)
				}
			},
		},
		{
			name: "responses", method: http.MethodPost, path: "/v1/responses",
			body: map[string]any{"model": "gpt-4.1-mini", "instructions": "be brief", "input": "hi fake:chunks=4"},
			check: func(t *testing.T, m map[string]any) {
				if get(t, m, "object") != "response" || get(t, m, "status") != "completed" {
					t.Errorf("response: %v", m)
				}
				if !strings.HasPrefix(get(t, m, "id").(string), "resp_") {
					t.Errorf("id %v", m["id"])
				}
				if got := get(t, m, "output", 0, "content", 0, "text"); got != " word1 word2 word3 word4" {
					t.Errorf("text %q", got)
				}
				// (2 + 4) instructions + (2 + 4) input
				if in, out, tot := num(t, get(t, m, "usage", "input_tokens")), num(t, get(t, m, "usage", "output_tokens")), num(t, get(t, m, "usage", "total_tokens")); in != 12 || out != 4 || tot != 16 {
					t.Errorf("usage %d/%d/%d, want 12/4/16", in, out, tot)
				}
				if num(t, get(t, m, "usage", "input_tokens_details", "cached_tokens")) != 0 {
					t.Error("cached tokens")
				}
			},
		},
		{
			name: "responses message items", method: http.MethodPost, path: "/v1/responses",
			body: map[string]any{"model": "m", "input": []any{
				map[string]any{"role": "user", "content": "fake:status=500 ignored, not last"},
				map[string]any{"type": "message", "role": "user", "content": []any{map[string]any{"type": "input_text", "text": "fake:chunks=1"}}},
			}},
			check: func(t *testing.T, m map[string]any) {
				if got := get(t, m, "output", 0, "content", 0, "text"); got != " word1" {
					t.Errorf("text %q", got)
				}
				// (4 words + 4) + (1 word + 4)
				if in := num(t, get(t, m, "usage", "input_tokens")); in != 13 {
					t.Errorf("input tokens %d, want 13", in)
				}
			},
		},
		{
			name: "embeddings", method: http.MethodPost, path: "/v1/embeddings",
			body: map[string]any{"model": "text-embedding-3-small", "input": []string{"one two", "three"}},
			check: func(t *testing.T, m map[string]any) {
				data := get(t, m, "data").([]any)
				if len(data) != 2 || get(t, data, 1, "index") != 1.0 || get(t, data, 0, "object") != "embedding" {
					t.Fatalf("data %v", data)
				}
				if n := len(get(t, data, 0, "embedding").([]any)); n != defaultEmbeddingDims {
					t.Errorf("%d dims", n)
				}
				if num(t, get(t, m, "usage", "prompt_tokens")) != 3 {
					t.Errorf("usage %v", m["usage"])
				}
			},
		},
		{
			name: "moderations", method: http.MethodPost, path: "/v1/moderations",
			body: map[string]any{"input": []string{"a", "b", "c"}},
			check: func(t *testing.T, m map[string]any) {
				if len(get(t, m, "results").([]any)) != 3 || get(t, m, "results", 0, "flagged") != false || get(t, m, "model") != "omni-moderation-latest" {
					t.Errorf("moderation %v", m)
				}
				if get(t, m, "results", 0, "categories", "violence") != false {
					t.Errorf("categories %v", get(t, m, "results", 0, "categories"))
				}
			},
		},
		{
			name: "models", method: http.MethodGet, path: "/v1/models",
			check: func(t *testing.T, m map[string]any) {
				data := get(t, m, "data").([]any)
				if get(t, m, "object") != "list" || len(data) != len(defaultModels()) || get(t, data, 0, "object") != "model" {
					t.Errorf("models %v", m)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.do(t, bounded(t), tt.method, tt.path, tt.body, nil)
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			tt.check(t, readJSON(t, resp, http.StatusOK))
		})
	}
}

func TestChatStream(t *testing.T) {
	f := newFixture(t, Options{Interval: time.Millisecond, Chunks: 4})
	tests := []struct {
		name         string
		prompt       string
		includeUsage bool
		wantChunks   int
		wantUsage    bool
	}{
		{name: "defaults without usage", prompt: "hi", wantChunks: 4},
		{name: "include_usage", prompt: "hi", includeUsage: true, wantChunks: 4, wantUsage: true},
		{name: "chunks directive", prompt: "hi fake:chunks=2", includeUsage: true, wantChunks: 2, wantUsage: true},
		{name: "nousage wins over include_usage", prompt: "hi fake:nousage", includeUsage: true, wantChunks: 4},
		{name: "no chunks", prompt: "fake:chunks=0 fake:interval=0s", includeUsage: true, wantChunks: 0, wantUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.openStream(t, bounded(t), "/v1/chat/completions", chatBody(tt.prompt, true, tt.includeUsage))
			events, err := readEvents(resp)
			if err != nil {
				t.Fatalf("stream ended with %v after %d events", err, len(events))
			}
			want := 1 + tt.wantChunks + 1 + 1 // role, content, finish, [DONE]
			if tt.wantUsage {
				want++
			}
			if len(events) != want {
				t.Fatalf("%d events, want %d: %v", len(events), want, events)
			}
			if last := events[len(events)-1]; last.data != "[DONE]" || last.name != "" {
				t.Fatalf("last event %+v, want [DONE]", last)
			}
			var id string
			for i, ev := range events[:len(events)-1] {
				m := ev.json(t)
				if get(t, m, "object") != "chat.completion.chunk" || get(t, m, "model") != "gpt-4o-mini" {
					t.Fatalf("event %d: %v", i, m)
				}
				if i == 0 {
					id = get(t, m, "id").(string)
				} else if get(t, m, "id") != id {
					t.Fatalf("event %d has id %v, want %s", i, m["id"], id)
				}
				isContent := i >= 1 && i <= tt.wantChunks
				if has(m, "fake_sent_unix_nano") != isContent {
					t.Errorf("event %d: fake_sent_unix_nano present = %v, want %v", i, !isContent, isContent)
				}
				isUsage := tt.wantUsage && i == len(events)-2
				if has(m, "usage") != tt.wantUsage {
					t.Errorf("event %d: usage key present = %v, want %v", i, has(m, "usage"), tt.wantUsage)
				} else if tt.wantUsage && !isUsage && m["usage"] != nil {
					t.Errorf("event %d: usage %v, want null", i, m["usage"])
				}
				switch {
				case i == 0:
					if get(t, m, "choices", 0, "delta", "role") != "assistant" || get(t, m, "choices", 0, "finish_reason") != nil {
						t.Errorf("first chunk %v", m)
					}
				case isContent:
					if got := get(t, m, "choices", 0, "delta", "content"); got != fmt.Sprintf(" word%d", i) {
						t.Errorf("chunk %d content %q", i, got)
					}
				case i == tt.wantChunks+1:
					if get(t, m, "choices", 0, "finish_reason") != "stop" || len(get(t, m, "choices", 0, "delta").(map[string]any)) != 0 {
						t.Errorf("finish chunk %v", m)
					}
				case isUsage:
					if len(get(t, m, "choices").([]any)) != 0 {
						t.Errorf("usage chunk has choices: %v", m)
					}
					if p, c, tot := num(t, get(t, m, "usage", "prompt_tokens")), num(t, get(t, m, "usage", "completion_tokens")), num(t, get(t, m, "usage", "total_tokens")); c != tt.wantChunks || p+c != tot || p < 4 {
						t.Errorf("usage %d/%d/%d", p, c, tot)
					}
					if num(t, get(t, m, "usage", "prompt_tokens_details", "cached_tokens")) != 0 {
						t.Errorf("usage %v", m["usage"])
					}
				}
			}
		})
	}
}

func TestCompletionsStream(t *testing.T) {
	f := newFixture(t, Options{Interval: -1})
	tests := []struct {
		name         string
		includeUsage bool
	}{
		{name: "without usage"},
		{name: "include_usage", includeUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := map[string]any{"model": "gpt-3.5-turbo-instruct", "prompt": []string{"a b", "c fake:chunks=3"}, "stream": true}
			if tt.includeUsage {
				body["stream_options"] = map[string]any{"include_usage": true}
			}
			events, err := readEvents(f.openStream(t, bounded(t), "/v1/completions", body))
			if err != nil {
				t.Fatal(err)
			}
			want := 3 + 1 + 1
			if tt.includeUsage {
				want++
			}
			if len(events) != want || events[len(events)-1].data != "[DONE]" {
				t.Fatalf("%d events, want %d: %v", len(events), want, events)
			}
			var text strings.Builder
			for i, ev := range events[:3] {
				m := ev.json(t)
				if get(t, m, "object") != "text_completion" || !has(m, "fake_sent_unix_nano") || get(t, m, "choices", 0, "finish_reason") != nil {
					t.Errorf("chunk %d: %v", i, m)
				}
				text.WriteString(get(t, m, "choices", 0, "text").(string))
			}
			if text.String() != " word1 word2 word3" {
				t.Errorf("text %q", text.String())
			}
			if m := events[3].json(t); get(t, m, "choices", 0, "finish_reason") != "stop" {
				t.Errorf("finish chunk %v", m)
			}
			if tt.includeUsage {
				m := events[4].json(t)
				if len(get(t, m, "choices").([]any)) != 0 || num(t, get(t, m, "usage", "prompt_tokens")) != 4 || num(t, get(t, m, "usage", "completion_tokens")) != 3 {
					t.Errorf("usage chunk %v", m)
				}
			}
		})
	}
}

func TestResponsesStream(t *testing.T) {
	f := newFixture(t, Options{Interval: time.Millisecond})
	tests := []struct {
		name      string
		input     string
		wantUsage bool
	}{
		{name: "with usage", input: "hello fake:chunks=3", wantUsage: true},
		{name: "nousage", input: "hello fake:chunks=3 fake:nousage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := map[string]any{"model": "gpt-4.1-mini", "input": tt.input, "stream": true}
			events, err := readEvents(f.openStream(t, bounded(t), "/v1/responses", body))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for i, ev := range events {
				names = append(names, ev.name)
				m := ev.json(t)
				if get(t, m, "type") != ev.name || num(t, get(t, m, "sequence_number")) != i {
					t.Errorf("event %d (%s): %v", i, ev.name, m)
				}
				if has(m, "fake_sent_unix_nano") != (ev.name == "response.output_text.delta") {
					t.Errorf("event %d (%s): fake_sent_unix_nano misplaced", i, ev.name)
				}
			}
			wantNames := []string{
				"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
				"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
				"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
			}
			if !slices.Equal(names, wantNames) {
				t.Fatalf("events\n%v\nwant\n%v", names, wantNames)
			}
			if get(t, events[0].json(t), "response", "status") != "in_progress" {
				t.Error("created response not in_progress")
			}
			if got := get(t, events[5].json(t), "delta"); got != " word2" {
				t.Errorf("second delta %q", got)
			}
			if got := get(t, events[7].json(t), "text"); got != " word1 word2 word3" {
				t.Errorf("done text %q", got)
			}
			done := events[len(events)-1].json(t)
			if get(t, done, "response", "status") != "completed" || get(t, done, "response", "output", 0, "content", 0, "text") != " word1 word2 word3" {
				t.Errorf("completed %v", done)
			}
			u := get(t, done, "response", "usage")
			if !tt.wantUsage {
				if u != nil {
					t.Errorf("usage %v, want null", u)
				}
				return
			}
			if in, out := num(t, get(t, u, "input_tokens")), num(t, get(t, u, "output_tokens")); in != 6 || out != 3 || num(t, get(t, u, "input_tokens_details", "cached_tokens")) != 0 {
				t.Errorf("usage %v", u)
			}
		})
	}
}

// TestStreamsAreIncremental checks that events leave one at a time: the
// client sees the first content event before the server sends the last.
func TestStreamsAreIncremental(t *testing.T) {
	const chunks, interval = 5, 40 * time.Millisecond
	f := newFixture(t, Options{Interval: interval, Chunks: chunks})
	tests := []struct {
		name    string
		path    string
		body    any
		content func(ev event) bool
	}{
		{
			name: "chat", path: "/v1/chat/completions", body: chatBody("hi", true, true),
			content: func(ev event) bool { return strings.Contains(ev.data, "fake_sent_unix_nano") },
		},
		{
			name: "completions", path: "/v1/completions", body: map[string]any{"model": "m", "prompt": "hi", "stream": true},
			content: func(ev event) bool { return strings.Contains(ev.data, "fake_sent_unix_nano") },
		},
		{
			name: "responses", path: "/v1/responses", body: map[string]any{"model": "m", "input": "hi", "stream": true},
			content: func(ev event) bool { return ev.name == "response.output_text.delta" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			begin := time.Now()
			events, err := readEvents(f.openStream(t, bounded(t), tt.path, tt.body))
			if err != nil {
				t.Fatal(err)
			}
			var content []event
			for _, ev := range events {
				if tt.content(ev) {
					content = append(content, ev)
				}
			}
			if len(content) != chunks {
				t.Fatalf("%d content events, want %d", len(content), chunks)
			}
			var prevSent int64
			for i, ev := range content {
				sent := int64(num(t, get(t, ev.json(t), "fake_sent_unix_nano")))
				if sent <= prevSent {
					t.Errorf("content event %d sent at %d, not after %d", i, sent, prevSent)
				}
				prevSent = sent
				if i > 0 && ev.at.Before(content[i-1].at) {
					t.Errorf("content event %d arrived before event %d", i, i-1)
				}
			}
			lastSent := time.Unix(0, prevSent)
			if !content[0].at.Before(lastSent) {
				t.Errorf("first content event arrived at %v, not before the last was sent at %v: the stream is buffered",
					content[0].at.Format(time.StampMicro), lastSent.Format(time.StampMicro))
			}
			// Loose lower bound: one interval before each content chunk.
			if elapsed := time.Since(begin); elapsed < chunks*interval*3/4 {
				t.Errorf("stream took %v, want about %v", elapsed, chunks*interval)
			}
		})
	}
}

func TestDirectiveErrors(t *testing.T) {
	f := newFixture(t, Options{Interval: -1})
	tests := []struct {
		name       string
		path       string
		body       any
		wantStatus int
		wantType   string
	}{
		{name: "500", path: "/v1/chat/completions", body: chatBody("x fake:status=500", false, false), wantStatus: 500, wantType: "server_error"},
		{name: "429", path: "/v1/chat/completions", body: chatBody("fake:status=429", false, false), wantStatus: 429, wantType: "rate_limit_error"},
		{name: "503 on a stream", path: "/v1/chat/completions", body: chatBody("fake:status=503", true, true), wantStatus: 503, wantType: "server_error"},
		{name: "400 completions", path: "/v1/completions", body: map[string]any{"model": "m", "prompt": "fake:status=400"}, wantStatus: 400, wantType: "server_error"},
		{name: "502 responses stream", path: "/v1/responses", body: map[string]any{"model": "m", "input": "fake:status=502", "stream": true}, wantStatus: 502, wantType: "server_error"},
		{name: "429 embeddings", path: "/v1/embeddings", body: map[string]any{"model": "m", "input": "fake:status=429"}, wantStatus: 429, wantType: "rate_limit_error"},
		{name: "500 moderations", path: "/v1/moderations", body: map[string]any{"input": "fake:status=500"}, wantStatus: 500, wantType: "server_error"},
		{name: "unknown directive", path: "/v1/chat/completions", body: chatBody("fake:explode", false, false), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "bad status", path: "/v1/chat/completions", body: chatBody("fake:status=abc", false, false), wantStatus: 400, wantType: "invalid_request_error"},
		{name: "missing value", path: "/v1/chat/completions", body: chatBody("fake:chunks", false, false), wantStatus: 400, wantType: "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.do(t, bounded(t), http.MethodPost, tt.path, tt.body, nil)
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			m := readJSON(t, resp, tt.wantStatus)
			if get(t, m, "error", "type") != tt.wantType {
				t.Errorf("error %v, want type %s", m["error"], tt.wantType)
			}
			for _, k := range []string{"message", "param", "code"} {
				if !has(m["error"], k) {
					t.Errorf("error lacks %q: %v", k, m["error"])
				}
			}
			if tt.wantType != "invalid_request_error" && (get(t, m, "error", "message") != "fake error" || get(t, m, "error", "param") != nil || get(t, m, "error", "code") != nil) {
				t.Errorf("error %v", m["error"])
			}
		})
	}

	// Directives count only in the last user message.
	body := map[string]any{"model": "m", "messages": []any{
		map[string]any{"role": "user", "content": "fake:status=500"},
		map[string]any{"role": "assistant", "content": "fake:status=500"},
		map[string]any{"role": "user", "content": "fake:status=200 fine"},
		map[string]any{"role": "assistant", "content": "fake:status=500"},
	}}
	readJSON(t, f.do(t, bounded(t), http.MethodPost, "/v1/chat/completions", body, nil), http.StatusOK)
}

func TestAuth(t *testing.T) {
	open := newFixture(t, Options{})
	locked := newFixture(t, Options{APIKey: "sk-test"})
	tests := []struct {
		name       string
		f          *fixture
		auth       string
		wantStatus int
		wantCode   any
	}{
		{name: "no key configured", f: open, wantStatus: 200},
		{name: "no key configured, any header", f: open, auth: "Bearer whatever", wantStatus: 200},
		{name: "right key", f: locked, auth: "Bearer sk-test", wantStatus: 200},
		{name: "missing header", f: locked, wantStatus: 401, wantCode: nil},
		{name: "wrong key", f: locked, auth: "Bearer sk-nope", wantStatus: 401, wantCode: "invalid_api_key"},
		{name: "not bearer", f: locked, auth: "sk-test", wantStatus: 401, wantCode: "invalid_api_key"},
	}
	for _, tt := range tests {
		for _, ep := range []struct{ method, path string }{{http.MethodGet, "/v1/models"}, {http.MethodPost, "/v1/chat/completions"}} {
			t.Run(tt.name+" "+ep.path, func(t *testing.T) {
				h := http.Header{}
				if tt.auth != "" {
					h.Set("Authorization", tt.auth)
				}
				var body any
				if ep.method == http.MethodPost {
					body = chatBody("hi", false, false)
				}
				m := readJSON(t, tt.f.do(t, bounded(t), ep.method, ep.path, body, h), tt.wantStatus)
				if tt.wantStatus != 401 {
					return
				}
				if get(t, m, "error", "type") != "invalid_request_error" || get(t, m, "error", "code") != tt.wantCode {
					t.Errorf("error %v", m["error"])
				}
				if msg := get(t, m, "error", "message").(string); strings.Contains(msg, "sk-nope") {
					t.Errorf("error echoes the key: %q", msg)
				}
			})
		}
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t, Options{})
	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		wantParam  any
	}{
		{name: "unknown path", method: http.MethodPost, path: "/v1/nope", body: map[string]any{}, wantStatus: 404},
		{name: "no v1", method: http.MethodGet, path: "/models", wantStatus: 404},
		{name: "GET chat", method: http.MethodGet, path: "/v1/chat/completions", wantStatus: 405},
		{name: "POST models", method: http.MethodPost, path: "/v1/models", body: map[string]any{}, wantStatus: 405},
		{name: "bad JSON", method: http.MethodPost, path: "/v1/chat/completions", body: []byte("{"), wantStatus: 400},
		{name: "no model", method: http.MethodPost, path: "/v1/chat/completions", body: map[string]any{"messages": []any{map[string]any{"role": "user", "content": "x"}}}, wantStatus: 400, wantParam: "model"},
		{name: "no messages", method: http.MethodPost, path: "/v1/chat/completions", body: map[string]any{"model": "m"}, wantStatus: 400, wantParam: "messages"},
		{name: "no embedding input", method: http.MethodPost, path: "/v1/embeddings", body: map[string]any{"model": "m"}, wantStatus: 400, wantParam: "input"},
		{name: "bad dimensions", method: http.MethodPost, path: "/v1/embeddings", body: map[string]any{"model": "m", "input": "x", "dimensions": 0}, wantStatus: 400, wantParam: "dimensions"},
		{name: "no moderation input", method: http.MethodPost, path: "/v1/moderations", body: map[string]any{}, wantStatus: 400, wantParam: "input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.do(t, bounded(t), tt.method, tt.path, tt.body, nil)
			if tt.wantStatus == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			m := readJSON(t, resp, tt.wantStatus)
			if get(t, m, "error", "type") != "invalid_request_error" || get(t, m, "error", "param") != tt.wantParam {
				t.Errorf("error %v", m["error"])
			}
		})
	}
}

// TestHangEndsWithClient checks that fake:hang (and a long interval) hold
// the response until the client goes away, and that the handler then ends.
func TestHangEndsWithClient(t *testing.T) {
	f := newFixture(t, Options{Interval: -1})
	tests := []struct {
		name   string
		path   string
		body   any
		stream bool
	}{
		{name: "chat stream", path: "/v1/chat/completions", body: chatBody("fake:hang", true, true), stream: true},
		{name: "chat stream long interval", path: "/v1/chat/completions", body: chatBody("fake:chunks=3 fake:interval=50ms fake:interval=1m", true, false), stream: true},
		{name: "completions stream", path: "/v1/completions", body: map[string]any{"model": "m", "prompt": "fake:hang", "stream": true}, stream: true},
		{name: "responses stream", path: "/v1/responses", body: map[string]any{"model": "m", "input": "fake:hang", "stream": true}, stream: true},
		{name: "chat", path: "/v1/chat/completions", body: chatBody("fake:hang", false, false)},
		{name: "embeddings", path: "/v1/embeddings", body: map[string]any{"model": "m", "input": "fake:hang"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(bounded(t))
			defer cancel()
			got := make(chan error, 1)
			body := mustJSON(t, tt.body)
			go func() {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+tt.path, strings.NewReader(body))
				if err != nil {
					got <- err
					return
				}
				resp, err := f.srv.Client().Do(req)
				if err != nil {
					got <- err
					return
				}
				_, err = readEvents(resp)
				got <- err
			}()
			// Give the handler time to send what it sends before hanging.
			time.Sleep(100 * time.Millisecond)
			select {
			case err := <-got:
				t.Fatalf("response finished while it should hang: %v", err)
			case path := <-f.ended:
				t.Fatalf("handler for %s ended while it should hang", path)
			default:
			}
			cancel()
			select {
			case <-f.ended:
			case <-time.After(5 * time.Second):
				t.Fatal("handler still running 5s after the client went away")
			}
			if err := <-got; !errors.Is(err, context.Canceled) {
				t.Errorf("client error %v, want context.Canceled", err)
			}
		})
	}
}

// TestHangSendsFirstChunk checks what a hanging stream sends before it
// stops: the prelude and exactly one content chunk.
func TestHangSendsFirstChunk(t *testing.T) {
	f := newFixture(t, Options{Interval: -1})
	ctx, cancel := context.WithCancel(bounded(t))
	defer cancel()
	resp := f.openStream(t, ctx, "/v1/chat/completions", chatBody("fake:hang", true, true))
	defer resp.Body.Close()
	r := &sseReader{br: bufio.NewReader(resp.Body)}
	for i, want := range []string{`"role":"assistant"`, `"content":" word1"`} {
		ev, err := r.next()
		if err != nil || !strings.Contains(ev.data, want) {
			t.Fatalf("event %d = %q, %v; want %s", i, ev.data, err, want)
		}
	}
	next := make(chan error, 1)
	go func() {
		_, err := r.next()
		next <- err
	}()
	select {
	case err := <-next:
		t.Fatalf("got more after the first chunk: %v", err)
	case <-time.After(150 * time.Millisecond):
	}
	cancel()
	if err := <-next; err == nil {
		t.Fatal("read succeeded after cancel")
	}
}

// TestCut checks that fake:cut aborts after two content chunks, without
// finish chunk, usage or [DONE], and that the client sees an error.
func TestCut(t *testing.T) {
	f := newFixture(t, Options{Interval: -1})
	tests := []struct {
		name        string
		path        string
		body        any
		wantContent int
	}{
		{name: "chat", path: "/v1/chat/completions", body: chatBody("fake:cut", true, true), wantContent: 2},
		{name: "chat one chunk", path: "/v1/chat/completions", body: chatBody("fake:cut fake:chunks=1", true, true), wantContent: 1},
		{name: "completions", path: "/v1/completions", body: map[string]any{"model": "m", "prompt": "fake:cut", "stream": true}, wantContent: 2},
		{name: "responses", path: "/v1/responses", body: map[string]any{"model": "m", "input": "fake:cut", "stream": true}, wantContent: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := readEvents(f.openStream(t, bounded(t), tt.path, tt.body))
			if err == nil {
				t.Fatal("stream ended cleanly, want an error")
			}
			content := 0
			for _, ev := range events {
				if ev.data == "[DONE]" || strings.Contains(ev.data, `"finish_reason":"stop"`) ||
					strings.Contains(ev.data, `"prompt_tokens"`) || strings.HasPrefix(ev.name, "response.output_text.done") {
					t.Errorf("cut stream carried %q", ev.data)
				}
				if strings.Contains(ev.data, "fake_sent_unix_nano") {
					content++
				}
			}
			if content != tt.wantContent {
				t.Errorf("%d content events, want %d", content, tt.wantContent)
			}
		})
	}

	t.Run("not streamed", func(t *testing.T) {
		resp := f.do(t, bounded(t), http.MethodPost, "/v1/chat/completions", chatBody("fake:cut", false, false), nil)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Fatalf("body read cleanly: %s", b)
		}
		if resp.StatusCode != 200 || len(b) == 0 || json.Valid(b) {
			t.Errorf("status %d, partial body %q", resp.StatusCode, b)
		}
	})
}

func TestRequestsRecorded(t *testing.T) {
	f := newFixture(t, Options{Interval: -1})
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ctx := bounded(t)
	for i := range n {
		body := mustJSON(t, chatBody(fmt.Sprintf("req %d", i), i%2 == 0, false))
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+"/v1/chat/completions", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Test", fmt.Sprint(i))
			resp, err := f.srv.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
		wg.Go(func() { _ = f.fake.Requests() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	resp := f.do(t, bounded(t), http.MethodGet, "/v1/models", nil, nil)
	resp.Body.Close()

	got := f.fake.Requests()
	if len(got) != n+1 {
		t.Fatalf("%d requests recorded, want %d", len(got), n+1)
	}
	seen := map[string]bool{}
	for _, r := range got[:n] {
		if r.Method != http.MethodPost || r.Path != "/v1/chat/completions" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("recorded %s %s %v", r.Method, r.Path, r.Header)
		}
		var body struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		if want := "req " + r.Header.Get("X-Test"); body.Messages[1].Content != want {
			t.Errorf("body %s does not match header %s", r.Body, r.Header.Get("X-Test"))
		}
		seen[r.Header.Get("X-Test")] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct requests", len(seen))
	}
	if last := got[n]; last.Method != http.MethodGet || last.Path != "/v1/models" || len(last.Body) != 0 {
		t.Errorf("last recorded %+v", last)
	}

	// Copies: changing one does not change the record.
	got[0].Header.Set("X-Test", "changed")
	got[0].Body[0] = 'X'
	again := f.fake.Requests()[0]
	if again.Header.Get("X-Test") == "changed" || again.Body[0] == 'X' {
		t.Error("Requests returned shared data")
	}
}

func TestMaxRecorded(t *testing.T) {
	tests := []struct {
		name string
		max  int
		want []string
	}{
		{name: "unlimited", max: 0, want: []string{"/v1/a", "/v1/b", "/v1/c"}},
		{name: "two most recent", max: 2, want: []string{"/v1/b", "/v1/c"}},
		{name: "off", max: -1, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{MaxRecorded: tt.max})
			for _, p := range []string{"/v1/a", "/v1/b", "/v1/c"} {
				s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
			}
			var paths []string
			for _, r := range s.Requests() {
				paths = append(paths, r.Path)
			}
			if !slices.Equal(paths, tt.want) {
				t.Fatalf("recorded %v, want %v", paths, tt.want)
			}
		})
	}
}

func TestEmbeddingFormats(t *testing.T) {
	f := newFixture(t, Options{})
	embed := func(t *testing.T, body map[string]any) []any {
		t.Helper()
		m := readJSON(t, f.do(t, bounded(t), http.MethodPost, "/v1/embeddings", body, nil), http.StatusOK)
		return get(t, m, "data").([]any)
	}
	a := embed(t, map[string]any{"model": "m", "input": "same text", "dimensions": 16})
	b := embed(t, map[string]any{"model": "m", "input": []string{"other", "same text"}, "dimensions": 16})
	if fmt.Sprint(get(t, a, 0, "embedding")) != fmt.Sprint(get(t, b, 1, "embedding")) {
		t.Error("the same input gave different vectors")
	}
	if fmt.Sprint(get(t, b, 0, "embedding")) == fmt.Sprint(get(t, b, 1, "embedding")) {
		t.Error("different inputs gave the same vector")
	}
	var norm float64
	for _, x := range get(t, a, 0, "embedding").([]any) {
		norm += x.(float64) * x.(float64)
	}
	if norm < 0.999 || norm > 1.001 {
		t.Errorf("squared norm %v, want 1", norm)
	}

	c := embed(t, map[string]any{"model": "m", "input": [][]int{{1, 2, 3}, {4}}, "encoding_format": "base64", "dimensions": 12})
	if len(c) != 2 {
		t.Fatalf("%d embeddings for two token arrays", len(c))
	}
	raw, err := base64.StdEncoding.DecodeString(get(t, c, 0, "embedding").(string))
	if err != nil || len(raw) != 12*4 {
		t.Fatalf("base64 embedding: %d bytes, %v", len(raw), err)
	}
}

func TestParseDirectives(t *testing.T) {
	tests := []struct {
		text    string
		want    directives
		wantErr bool
	}{
		{text: "", want: directives{}},
		{text: "no directives, fake: talk", want: directives{}},
		{text: "fake:status=429", want: directives{status: 429}},
		{text: "a fake:chunks=3 b fake:interval=5ms", want: directives{chunks: 3, chunksSet: true, interval: 5 * time.Millisecond, intervalSet: true}},
		{text: "fake:chunks=0", want: directives{chunksSet: true}},
		{text: "fake:nousage\nfake:hang\tfake:cut", want: directives{noUsage: true, hang: true, cut: true}},
		{text: "unfake:status=500", want: directives{}},
		{text: "fake:status=199", wantErr: true},
		{text: "fake:status=600", wantErr: true},
		{text: "fake:chunks=-1", wantErr: true},
		{text: "fake:chunks=x", wantErr: true},
		{text: "fake:interval=5", wantErr: true},
		{text: "fake:interval=-1s", wantErr: true},
		{text: "fake:hang=1", wantErr: true},
		{text: "fake:status", wantErr: true},
		{text: "fake:bogus", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := parseDirectives(tt.text)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// bounded returns a context for one test's requests that ends with the
// test, or after 15 s, so that a broken stream fails instead of hanging.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
