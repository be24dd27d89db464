package fakeupstream

import (
	"encoding/json"
	"net/http"
	"time"
)

// systemFingerprint is sent where OpenAI sends one.
const systemFingerprint = "fp_fake"

// streamOptions is the request's stream_options.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatRequest is the part of a chat completion request the fake reads.
type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []message      `json:"messages"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
}

// usage is a chat or legacy completion's token usage.
type usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *promptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *completionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// promptTokensDetails breaks prompt tokens down.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
	AudioTokens  int `json:"audio_tokens"`
}

// completionTokensDetails breaks completion tokens down.
type completionTokensDetails struct {
	ReasoningTokens          int `json:"reasoning_tokens"`
	AudioTokens              int `json:"audio_tokens"`
	AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
	RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
}

// chatUsage is the usage of a chat completion, with OpenAI's details.
func chatUsage(prompt, completion int) *usage {
	return &usage{
		PromptTokens:            prompt,
		CompletionTokens:        completion,
		TotalTokens:             prompt + completion,
		PromptTokensDetails:     &promptTokensDetails{},
		CompletionTokensDetails: &completionTokensDetails{},
	}
}

// chatMessage is the assistant message of a chat completion.
type chatMessage struct {
	Role        string  `json:"role"`
	Content     string  `json:"content"`
	Refusal     *string `json:"refusal"`
	Annotations []any   `json:"annotations"`
}

// chatChoice is a choice of a chat completion.
type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason string      `json:"finish_reason"`
}

// chatCompletion is a non-streamed chat completion.
type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             *usage       `json:"usage,omitempty"`
	ServiceTier       string       `json:"service_tier"`
	SystemFingerprint string       `json:"system_fingerprint"`
}

// chatDelta is a streamed chunk's delta.
type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// chatChunkChoice is a streamed chunk's choice.
type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// chatChunk is one chat.completion.chunk event.
type chatChunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	ServiceTier       string            `json:"service_tier"`
	SystemFingerprint string            `json:"system_fingerprint"`
	Choices           []chatChunkChoice `json:"choices"`
	// Usage is null on every chunk but the last when the request asked
	// for usage, and absent otherwise.
	Usage            json.RawMessage `json:"usage,omitempty"`
	FakeSentUnixNano int64           `json:"fake_sent_unix_nano,omitempty"`
}

// checkDirectives parses the directives in text and answers the request
// itself when they are invalid or ask for an error status; ok is false then.
func checkDirectives(w http.ResponseWriter, text string) (d directives, ok bool) {
	d, err := parseDirectives(text)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "fakeupstream: "+err.Error(), nil)
		return directives{}, false
	}
	if d.status != 0 && d.status != http.StatusOK {
		writeFakeError(w, d.status)
		return directives{}, false
	}
	return d, true
}

// jsonNull returns a JSON null.
func jsonNull() json.RawMessage {
	return json.RawMessage("null")
}

// chatCompletions serves POST /v1/chat/completions.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, body []byte) {
	var req chatRequest
	if !decode(w, body, &req) || !requireModel(w, req.Model) {
		return
	}
	if len(req.Messages) == 0 {
		writeParamError(w, "messages", "messages must be a non-empty array")
		return
	}
	d, ok := checkDirectives(w, lastUserText(req.Messages))
	if !ok {
		return
	}
	id, created := s.nextID("chatcmpl"), time.Now().Unix()
	chunks := d.chunksOr(s.opts.Chunks)
	prompt := messageTokens(req.Messages)
	wantUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage && !d.noUsage

	if !req.Stream {
		resp := chatCompletion{
			ID: id, Object: "chat.completion", Created: created, Model: req.Model,
			Choices: []chatChoice{{
				Message:      chatMessage{Role: "assistant", Content: fullText(chunks), Annotations: []any{}},
				FinishReason: "stop",
			}},
			ServiceTier: "default", SystemFingerprint: systemFingerprint,
		}
		if !d.noUsage {
			resp.Usage = chatUsage(prompt, chunks)
		}
		writeJSON(w, r, d, resp)
		return
	}

	chunk := func(delta chatDelta, finish *string) chatChunk {
		c := chatChunk{
			ID: id, Object: "chat.completion.chunk", Created: created, Model: req.Model,
			ServiceTier: "default", SystemFingerprint: systemFingerprint,
			Choices: []chatChunkChoice{{Delta: delta, FinishReason: finish}},
		}
		if wantUsage {
			c.Usage = jsonNull()
		}
		return c
	}
	stream(w, r, d, chunks, d.intervalOr(s.opts.Interval), streamPlan{
		prelude: func() []sseEvent {
			empty := ""
			return []sseEvent{{data: chunk(chatDelta{Role: "assistant", Content: &empty}, nil)}}
		},
		content: func(_ int, word string) sseEvent {
			c := chunk(chatDelta{Content: &word}, nil)
			c.FakeSentUnixNano = unixNano()
			return sseEvent{data: c}
		},
		epilogue: func(string) []sseEvent {
			stop := "stop"
			events := []sseEvent{{data: chunk(chatDelta{}, &stop)}}
			if wantUsage {
				final := chunk(chatDelta{}, nil)
				final.Choices = []chatChunkChoice{}
				u, err := json.Marshal(chatUsage(prompt, chunks))
				if err == nil {
					final.Usage = u
				}
				events = append(events, sseEvent{data: final})
			}
			return events
		},
		doneMarker: true,
	})
}

// completionRequest is the part of a legacy completion request the fake
// reads.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
}

// completionChoice is a legacy completion's choice, streamed or not.
type completionChoice struct {
	Text         string    `json:"text"`
	Index        int       `json:"index"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// textCompletion is a legacy completion or one of its streamed chunks.
type textCompletion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []completionChoice `json:"choices"`
	Usage             json.RawMessage    `json:"usage,omitempty"`
	FakeSentUnixNano  int64              `json:"fake_sent_unix_nano,omitempty"`
}

// completions serves POST /v1/completions.
func (s *Server) completions(w http.ResponseWriter, r *http.Request, body []byte) {
	var req completionRequest
	if !decode(w, body, &req) || !requireModel(w, req.Model) {
		return
	}
	prompt := decodeAny(req.Prompt)
	d, ok := checkDirectives(w, textOf(prompt))
	if !ok {
		return
	}
	id, created := s.nextID("cmpl"), time.Now().Unix()
	chunks := d.chunksOr(s.opts.Chunks)
	promptTokens := countTokens(prompt)
	usageJSON := func() json.RawMessage {
		u, err := json.Marshal(usage{PromptTokens: promptTokens, CompletionTokens: chunks, TotalTokens: promptTokens + chunks})
		if err != nil {
			return nil
		}
		return u
	}
	stop := "stop"

	if !req.Stream {
		resp := textCompletion{
			ID: id, Object: "text_completion", Created: created, Model: req.Model, SystemFingerprint: systemFingerprint,
			Choices: []completionChoice{{Text: fullText(chunks), FinishReason: &stop}},
		}
		if !d.noUsage {
			resp.Usage = usageJSON()
		}
		writeJSON(w, r, d, resp)
		return
	}

	wantUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage && !d.noUsage
	chunk := func(text string, finish *string) textCompletion {
		c := textCompletion{
			ID: id, Object: "text_completion", Created: created, Model: req.Model, SystemFingerprint: systemFingerprint,
			Choices: []completionChoice{{Text: text, FinishReason: finish}},
		}
		if wantUsage {
			c.Usage = jsonNull()
		}
		return c
	}
	stream(w, r, d, chunks, d.intervalOr(s.opts.Interval), streamPlan{
		content: func(_ int, word string) sseEvent {
			c := chunk(word, nil)
			c.FakeSentUnixNano = unixNano()
			return sseEvent{data: c}
		},
		epilogue: func(string) []sseEvent {
			events := []sseEvent{{data: chunk("", &stop)}}
			if wantUsage {
				final := chunk("", nil)
				final.Choices = []completionChoice{}
				final.Usage = usageJSON()
				events = append(events, sseEvent{data: final})
			}
			return events
		},
		doneMarker: true,
	})
}
