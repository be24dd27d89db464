package fakeupstream

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// anthropicRequest is the part of an Anthropic Messages request the fake
// reads.
type anthropicRequest struct {
	Model     string          `json:"model"`
	MaxTokens *int            `json:"max_tokens"`
	System    json.RawMessage `json:"system"`
	Messages  []message       `json:"messages"`
	Stream    bool            `json:"stream"`
}

// anthropicUsage is a Messages response's usage. The cache fields are sent
// always, 0 when the request marks nothing with cache_control, as Anthropic
// does.
type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// anthropicMessage is a Messages response, or message_start's message.
type anthropicMessage struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []map[string]any `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        *anthropicUsage  `json:"usage,omitempty"`
}

// anthropicErrorTypes maps a status to Anthropic's error type.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	}
	return "api_error"
}

// anthropicError is Anthropic's error envelope, in bodies and error events.
func anthropicError(typ, message string) map[string]any {
	return map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": message}}
}

// writeAnthropicError answers status with Anthropic's error body.
func writeAnthropicError(w http.ResponseWriter, status int, message string) {
	b, _ := json.Marshal(anthropicError(anthropicErrorType(status), message))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// anthropicAuthorized checks the x-api-key header when an API key is set.
func (s *Server) anthropicAuthorized(r *http.Request) bool {
	if s.opts.APIKey == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Api-Key")), []byte(s.opts.APIKey)) == 1
}

// anthropicMessages serves POST /v1/messages in Anthropic's shapes:
// x-api-key auth, a required anthropic-version header, Anthropic's error
// body, and a stream of message_start, content_block_start, ping,
// content_block_delta..., content_block_stop, message_delta (with usage)
// and message_stop events.
func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAnthropicError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	if !s.anthropicAuthorized(r) {
		msg := "invalid x-api-key"
		if r.Header.Get("X-Api-Key") == "" {
			msg = "x-api-key header is required"
		}
		writeAnthropicError(w, http.StatusUnauthorized, msg)
		return
	}
	if r.Header.Get("Anthropic-Version") == "" {
		writeAnthropicError(w, http.StatusBadRequest, "anthropic-version: header is required")
		return
	}
	var req anthropicRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeAnthropicError(w, http.StatusBadRequest, "There was an error parsing the body: "+err.Error())
		return
	}
	switch {
	case req.Model == "":
		writeAnthropicError(w, http.StatusBadRequest, "model: Field required")
		return
	case req.MaxTokens == nil:
		writeAnthropicError(w, http.StatusBadRequest, "max_tokens: Field required")
		return
	case len(req.Messages) == 0:
		writeAnthropicError(w, http.StatusBadRequest, "messages: at least one message is required")
		return
	}
	d, err := parseDirectives(lastUserText(req.Messages))
	if err != nil {
		writeAnthropicError(w, http.StatusBadRequest, "fakeupstream: "+err.Error())
		return
	}
	if d.status != 0 && d.status != http.StatusOK {
		writeAnthropicError(w, d.status, "fake error")
		return
	}
	id := s.nextID("msg")
	chunks := min(d.chunksOr(s.opts.Chunks), max(*req.MaxTokens, 0))
	u := s.anthropicPromptUsage(req)
	u.OutputTokens = chunks
	stop := "end_turn"
	if chunks < d.chunksOr(s.opts.Chunks) {
		stop = "max_tokens"
	}
	msg := anthropicMessage{ID: id, Type: "message", Role: "assistant", Model: req.Model}

	if !req.Stream {
		msg.Content = []map[string]any{{"type": "text", "text": fullText(chunks)}}
		msg.StopReason = &stop
		if !d.noUsage {
			msg.Usage = &u
		}
		writeJSON(w, r, d, msg)
		return
	}

	stream(w, r, d, chunks, d.intervalOr(s.opts.Interval), streamPlan{
		prelude: func() []sseEvent {
			start := msg
			start.Content = []map[string]any{}
			if !d.noUsage {
				su := u
				su.OutputTokens = 1 // Anthropic reports 1 output token at message_start
				start.Usage = &su
			}
			return []sseEvent{
				{name: "message_start", data: map[string]any{"type": "message_start", "message": start}},
				{name: "content_block_start", data: map[string]any{"type": "content_block_start", "index": 0,
					"content_block": map[string]any{"type": "text", "text": ""}}},
				{name: "ping", data: map[string]any{"type": "ping"}},
			}
		},
		content: func(_ int, word string) sseEvent {
			return sseEvent{name: "content_block_delta", data: map[string]any{
				"type": "content_block_delta", "index": 0,
				"delta":               map[string]any{"type": "text_delta", "text": word},
				"fake_sent_unix_nano": unixNano(),
			}}
		},
		errorEvent: func() sseEvent {
			return sseEvent{name: "error", data: anthropicError("overloaded_error", "Overloaded")}
		},
		epilogue: func(string) []sseEvent {
			delta := map[string]any{"type": "message_delta",
				"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}}
			if !d.noUsage {
				delta["usage"] = map[string]any{"output_tokens": u.OutputTokens}
			}
			return []sseEvent{
				{name: "content_block_stop", data: map[string]any{"type": "content_block_stop", "index": 0}},
				{name: "message_delta", data: delta},
				{name: "message_stop", data: map[string]any{"type": "message_stop"}},
			}
		},
	})
}

// anthropicPromptUsage counts a request's input tokens and splits them as
// Anthropic does when the request marks blocks with cache_control: the
// prompt up to and including the last marked block is the cached prefix,
// written to the cache (cache_creation_input_tokens) the first time this
// server sees that prefix for that model and read from it
// (cache_read_input_tokens) afterwards; input_tokens is the rest.
func (s *Server) anthropicPromptUsage(req anthropicRequest) anthropicUsage {
	var blocks []any // system blocks then each message's blocks, in prompt order
	total := 0
	addContent := func(raw json.RawMessage, overhead int) {
		v := decodeAny(raw)
		total += countTokens(v) + overhead
		switch v := v.(type) {
		case []any:
			blocks = append(blocks, v...)
		case nil:
		default:
			blocks = append(blocks, v)
		}
	}
	addContent(req.System, 0)
	for _, m := range req.Messages {
		addContent(m.Content, perMessageTokens)
	}
	last := -1
	for i, b := range blocks {
		if m, ok := b.(map[string]any); ok && m["cache_control"] != nil {
			last = i
		}
	}
	if last < 0 {
		return anthropicUsage{InputTokens: total}
	}
	prefix := countTokens(blocks[:last+1])
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", req.Model)
	for _, b := range blocks[:last+1] {
		fmt.Fprintf(h, "%s\x00", textOf(b))
	}
	key := fmt.Sprintf("%x", h.Sum(nil))
	s.mu.Lock()
	if s.cached == nil {
		s.cached = make(map[string]bool)
	}
	seen := s.cached[key]
	s.cached[key] = true
	s.mu.Unlock()
	u := anthropicUsage{InputTokens: max(total-prefix, 0)}
	if seen {
		u.CacheReadInputTokens = prefix
	} else {
		u.CacheCreationInputTokens = prefix
	}
	return u
}

// isAnthropicPath reports the paths answered in Anthropic's shapes.
func isAnthropicPath(path string) bool {
	return path == "/v1/messages" || strings.HasPrefix(path, "/v1/messages/")
}
