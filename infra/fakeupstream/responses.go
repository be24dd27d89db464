package fakeupstream

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// responsesRequest is the part of a Responses API request the fake reads.
type responsesRequest struct {
	Model           string            `json:"model"`
	Input           json.RawMessage   `json:"input"`
	Instructions    *string           `json:"instructions"`
	Stream          bool              `json:"stream"`
	MaxOutputTokens *int              `json:"max_output_tokens"`
	Metadata        map[string]string `json:"metadata"`
}

// responseUsage is a response's token usage.
type responseUsage struct {
	InputTokens         int                 `json:"input_tokens"`
	InputTokensDetails  inputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                 `json:"output_tokens"`
	OutputTokensDetails outputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int                 `json:"total_tokens"`
}

// inputTokensDetails breaks input tokens down.
type inputTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// outputTokensDetails breaks output tokens down.
type outputTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// outputText is an output_text content part.
type outputText struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
}

// outputMessage is a message output item.
type outputMessage struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Content []outputText `json:"content"`
	Role    string       `json:"role"`
}

// responseObject is a Responses API response.
type responseObject struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	CreatedAt          int64             `json:"created_at"`
	Status             string            `json:"status"`
	Error              *struct{}         `json:"error"`
	IncompleteDetails  *struct{}         `json:"incomplete_details"`
	Instructions       *string           `json:"instructions"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	Model              string            `json:"model"`
	Output             []outputMessage   `json:"output"`
	ParallelToolCalls  bool              `json:"parallel_tool_calls"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Store              bool              `json:"store"`
	Temperature        float64           `json:"temperature"`
	ToolChoice         string            `json:"tool_choice"`
	Tools              []any             `json:"tools"`
	TopP               float64           `json:"top_p"`
	Truncation         string            `json:"truncation"`
	Usage              *responseUsage    `json:"usage"`
	Metadata           map[string]string `json:"metadata"`
}

// responseEvent carries a whole response: response.created,
// response.in_progress and response.completed.
type responseEvent struct {
	Type           string         `json:"type"`
	SequenceNumber int            `json:"sequence_number"`
	Response       responseObject `json:"response"`
}

// itemEvent is response.output_item.added or .done.
type itemEvent struct {
	Type           string        `json:"type"`
	SequenceNumber int           `json:"sequence_number"`
	OutputIndex    int           `json:"output_index"`
	Item           outputMessage `json:"item"`
}

// partEvent is response.content_part.added or .done.
type partEvent struct {
	Type           string     `json:"type"`
	SequenceNumber int        `json:"sequence_number"`
	ItemID         string     `json:"item_id"`
	OutputIndex    int        `json:"output_index"`
	ContentIndex   int        `json:"content_index"`
	Part           outputText `json:"part"`
}

// textDeltaEvent is response.output_text.delta.
type textDeltaEvent struct {
	Type             string `json:"type"`
	SequenceNumber   int    `json:"sequence_number"`
	ItemID           string `json:"item_id"`
	OutputIndex      int    `json:"output_index"`
	ContentIndex     int    `json:"content_index"`
	Delta            string `json:"delta"`
	Logprobs         []any  `json:"logprobs"`
	FakeSentUnixNano int64  `json:"fake_sent_unix_nano"`
}

// textDoneEvent is response.output_text.done.
type textDoneEvent struct {
	Type           string `json:"type"`
	SequenceNumber int    `json:"sequence_number"`
	ItemID         string `json:"item_id"`
	OutputIndex    int    `json:"output_index"`
	ContentIndex   int    `json:"content_index"`
	Text           string `json:"text"`
	Logprobs       []any  `json:"logprobs"`
}

// responseInput reads a Responses input: the directive text (the string
// input, or the last user message's text) and the input tokens.
func responseInput(raw json.RawMessage, instructions *string) (text string, tokens int) {
	if instructions != nil {
		tokens += countTokens(*instructions) + perMessageTokens
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, tokens + countTokens(s) + perMessageTokens
	}
	var items []message
	if json.Unmarshal(raw, &items) != nil {
		return "", tokens
	}
	for _, it := range items {
		if it.Role != "" {
			tokens += countTokens(decodeAny(it.Content)) + perMessageTokens
		}
	}
	return lastUserText(items), tokens
}

// responses serves POST /v1/responses.
func (s *Server) responses(w http.ResponseWriter, r *http.Request, body []byte) {
	var req responsesRequest
	if !decode(w, body, &req) || !requireModel(w, req.Model) {
		return
	}
	text, inputTokens := responseInput(req.Input, req.Instructions)
	d, ok := checkDirectives(w, text)
	if !ok {
		return
	}
	chunks := d.chunksOr(s.opts.Chunks)
	respID := strings.Replace(s.nextID("resp"), "-", "_", 1)
	msgID := strings.Replace(s.nextID("msg"), "-", "_", 1)
	createdAt := time.Now().Unix()
	metadata := req.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	// response builds the response object in a given state.
	response := func(status string, output []outputMessage, u *responseUsage) responseObject {
		if output == nil {
			output = []outputMessage{}
		}
		return responseObject{
			ID: respID, Object: "response", CreatedAt: createdAt, Status: status,
			Instructions: req.Instructions, MaxOutputTokens: req.MaxOutputTokens, Model: req.Model,
			Output: output, ParallelToolCalls: true, Store: true, Temperature: 1, ToolChoice: "auto",
			Tools: []any{}, TopP: 1, Truncation: "disabled", Usage: u, Metadata: metadata,
		}
	}
	part := func(text string) outputText {
		return outputText{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}}
	}
	item := func(status string, content []outputText) outputMessage {
		return outputMessage{ID: msgID, Type: "message", Status: status, Content: content, Role: "assistant"}
	}
	var finalUsage *responseUsage
	if !d.noUsage {
		finalUsage = &responseUsage{InputTokens: inputTokens, OutputTokens: chunks, TotalTokens: inputTokens + chunks}
	}

	if !req.Stream {
		full := fullText(chunks)
		writeJSON(w, r, d, response("completed", []outputMessage{item("completed", []outputText{part(full)})}, finalUsage))
		return
	}

	seq := 0
	next := func() int { seq++; return seq - 1 }
	stream(w, r, d, chunks, d.intervalOr(s.opts.Interval), streamPlan{
		prelude: func() []sseEvent {
			return []sseEvent{
				{"response.created", responseEvent{Type: "response.created", SequenceNumber: next(), Response: response("in_progress", nil, nil)}},
				{"response.in_progress", responseEvent{Type: "response.in_progress", SequenceNumber: next(), Response: response("in_progress", nil, nil)}},
				{"response.output_item.added", itemEvent{Type: "response.output_item.added", SequenceNumber: next(), Item: item("in_progress", []outputText{})}},
				{"response.content_part.added", partEvent{Type: "response.content_part.added", SequenceNumber: next(), ItemID: msgID, Part: part("")}},
			}
		},
		content: func(_ int, word string) sseEvent {
			return sseEvent{"response.output_text.delta", textDeltaEvent{
				Type: "response.output_text.delta", SequenceNumber: next(), ItemID: msgID,
				Delta: word, Logprobs: []any{}, FakeSentUnixNano: unixNano(),
			}}
		},
		epilogue: func(full string) []sseEvent {
			done := item("completed", []outputText{part(full)})
			return []sseEvent{
				{"response.output_text.done", textDoneEvent{Type: "response.output_text.done", SequenceNumber: next(), ItemID: msgID, Text: full, Logprobs: []any{}}},
				{"response.content_part.done", partEvent{Type: "response.content_part.done", SequenceNumber: next(), ItemID: msgID, Part: part(full)}},
				{"response.output_item.done", itemEvent{Type: "response.output_item.done", SequenceNumber: next(), Item: done}},
				{"response.completed", responseEvent{Type: "response.completed", SequenceNumber: next(), Response: response("completed", []outputMessage{done}, finalUsage)}},
			}
		},
	})
}
