package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Overheads added to what the request's text encodes to. They follow
// OpenAI's published counting recipe (openai-cookbook, "How to count tokens
// with tiktoken") and round up where the recipe is not exact.
const (
	// perMessage is charged for every chat message or Responses input item,
	// besides its role and content. The recipe uses 3 for current models
	// (role counted separately); 4 keeps a margin.
	perMessage = 4
	// perName is charged for a message's name field, besides the name.
	perName = 1
	// replyPriming is the "<|start|>assistant<|message|>" every reply is
	// primed with.
	replyPriming = 3
	// perToolCall is charged for each tool call in an assistant message,
	// besides its function name and arguments.
	perToolCall = 3
	// Tool and function definitions are rendered by OpenAI into a
	// TypeScript-like namespace in the system message, which takes fewer
	// tokens than their JSON; they are counted as their JSON plus
	// toolsOverhead once and perTool per definition.
	toolsOverhead = 12
	perTool       = 8
	// schemaOverhead is added to response_format / text.format JSON.
	schemaOverhead = 12

	// imageTokens is charged per image, whatever its size or detail, since
	// neither the model nor the image's size is known here. It is the most
	// any of the priced models bills for one image: patch-based models
	// (gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano) cap an image at 1536
	// 32px patches times a model multiplier of at most 2.46 (gpt-4.1-nano),
	// 1536*2.46 = 3778.56; tile-based models (gpt-4o, gpt-4.1, gpt-5, o1,
	// o3, gpt-4-turbo) bill at most 85+170*8 = 1445 at high detail. Not
	// covered: gpt-4o-mini, which bills 2833+5667 per tile (up to 48169
	// tokens, at a price scaled down to match gpt-4o's).
	imageTokens = 3779
	// fileTokens is charged per input file besides its data: a PDF is
	// billed as its extracted text plus an image of every page, so at
	// least one page image. A file given only by id or URL cannot be sized
	// offline and is counted as this alone.
	fileTokens = imageTokens
	// base64CharsPerToken: input audio and file data are counted as one
	// token per four characters of their base64 (one per three bytes).
	// Audio is billed at about ten tokens per second, far below this for
	// any usable audio encoding.
	base64CharsPerToken = 4
)

// Prompt returns a conservative count (never below what OpenAI bills, except
// where noted) of the input tokens of the JSON request body sent to the
// OpenAI API path, encoded with encoding. The path's query string is ignored
// and the path is matched by its ending, so Azure-style
// ".../deployments/x/chat/completions" counts like "/v1/chat/completions".
//
//   - /v1/chat/completions: every message (role, name, content text, tool
//     calls, tool_call_id, refusal) plus per-message overhead and reply
//     priming; tools/functions definitions, tool_choice and response_format
//     as their JSON plus overhead. Images count as imageTokens each, input
//     audio as its base64 length / 4, files as fileTokens plus their
//     base64 length / 4; unknown content parts as their JSON.
//   - /v1/completions: prompt (string, strings, tokens, token arrays) and
//     suffix.
//   - /v1/embeddings: input, like a completions prompt.
//   - /v1/responses: instructions and input (a string or items: messages,
//     function calls and outputs; other items as their JSON), tools,
//     tool_choice and text format. Conversation state referenced by
//     previous_response_id or conversation, and content that built-in tools
//     add, cannot be counted offline and are not.
//   - /v1/moderations: input (string, strings, or text and image parts).
//   - any other path: the whole body counted as text.
//
// The number of choices (n) does not change prompt tokens. A body that is
// not a JSON object, or whose known fields have the wrong JSON types, is an
// error, as is an unknown encoding.
func (c *Counter) Prompt(encoding, path string, body []byte) (int64, error) {
	enc, err := c.encoding(encoding)
	if err != nil {
		return 0, err
	}
	p := prompter{enc: enc}
	path, _, _ = strings.Cut(path, "?")
	path = strings.TrimSuffix(path, "/")
	var count func([]byte) (int64, error)
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		count = p.chat
	case strings.HasSuffix(path, "/completions"):
		count = p.completions
	case strings.HasSuffix(path, "/embeddings"):
		count = p.embeddings
	case strings.HasSuffix(path, "/responses"):
		count = p.responses
	case strings.HasSuffix(path, "/moderations"):
		count = p.moderations
	default:
		return p.text(string(body)), nil
	}
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return 0, errors.New("tokenizer: request body is not a JSON object")
	}
	n, err := count(body)
	if err != nil {
		return 0, fmt.Errorf("tokenizer: %s request: %w", path, err)
	}
	return n, nil
}

// prompter counts the parts of one request with one encoding.
type prompter struct {
	enc *encoder
}

// text counts s, a part of a prompt: prompts repeat, so its count may be
// one kept from lately (recent.go).
func (p prompter) text(s string) int64 { return p.enc.recent.count(p.enc, s) }

// raw counts a JSON value's text as it was sent; null or absent counts 0.
func (p prompter) raw(v json.RawMessage) int64 {
	if isNull(v) {
		return 0
	}
	return p.text(string(v))
}

// defs counts tool or function definitions: their JSON plus overheads.
func (p prompter) defs(v json.RawMessage) int64 {
	if isNull(v) {
		return 0
	}
	var items []json.RawMessage
	n := 1
	if json.Unmarshal(v, &items) == nil {
		if len(items) == 0 {
			return 0
		}
		n = len(items)
	}
	return p.raw(v) + toolsOverhead + int64(n)*perTool
}

func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || string(v) == "null"
}

// kind returns the first byte of a JSON value: '"', '[', '{', 'n', 't',
// 'f', or a digit or '-'. It is 0 for an empty value.
func kind(v json.RawMessage) byte {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func ceilDiv(n, d int64) int64 { return (n + d - 1) / d }

// ---- /v1/chat/completions ----

type chatRequest struct {
	Messages       []chatMessage   `json:"messages"`
	Tools          json.RawMessage `json:"tools"`
	Functions      json.RawMessage `json:"functions"`
	ToolChoice     json.RawMessage `json:"tool_choice"`
	FunctionCall   json.RawMessage `json:"function_call"`
	ResponseFormat json.RawMessage `json:"response_format"`
}

type chatMessage struct {
	Role         string          `json:"role"`
	Name         string          `json:"name"`
	Content      json.RawMessage `json:"content"`
	Refusal      string          `json:"refusal"`
	ToolCalls    []toolCall      `json:"tool_calls"`
	ToolCallID   string          `json:"tool_call_id"`
	FunctionCall *functionCall   `json:"function_call"`
}

type toolCall struct {
	Type     string          `json:"type"`
	Function functionCall    `json:"function"`
	Custom   json.RawMessage `json:"custom"`
}

type functionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

func (p prompter) chat(body []byte) (int64, error) {
	var req chatRequest
	if !plainChat(body, &req) {
		req = chatRequest{}
		if err := json.Unmarshal(body, &req); err != nil {
			return 0, err
		}
	}
	return p.chatRequest(&req)
}

// chatRequest counts a decoded chat request.
func (p prompter) chatRequest(req *chatRequest) (int64, error) {
	n := int64(replyPriming)
	for i := range req.Messages {
		m := &req.Messages[i]
		n += perMessage + p.text(m.Role) + p.text(m.Refusal) + p.text(m.ToolCallID)
		if m.Name != "" {
			n += perName + p.text(m.Name)
		}
		c, err := p.content(m.Content)
		if err != nil {
			return 0, fmt.Errorf("messages[%d].content: %w", i, err)
		}
		n += c
		for _, tc := range m.ToolCalls {
			n += perToolCall + p.text(tc.Function.Name) + p.text(tc.Function.Arguments) + p.raw(tc.Custom)
		}
		if m.FunctionCall != nil {
			n += perToolCall + p.text(m.FunctionCall.Name) + p.text(m.FunctionCall.Arguments)
		}
	}
	n += p.defs(req.Tools) + p.defs(req.Functions) + p.raw(req.ToolChoice) + p.raw(req.FunctionCall)
	if !isNull(req.ResponseFormat) {
		n += p.raw(req.ResponseFormat) + schemaOverhead
	}
	return n, nil
}

// part is one element of a content array, in Chat Completions, Responses or
// Moderations form.
type part struct {
	Type       string `json:"type"`
	Text       string `json:"text"`
	Refusal    string `json:"refusal"`
	InputAudio *struct {
		Data string `json:"data"`
	} `json:"input_audio"`
	File *struct {
		FileData string `json:"file_data"`
		Filename string `json:"filename"`
	} `json:"file"`
	// Responses input_file fields.
	FileData string `json:"file_data"`
	Filename string `json:"filename"`
}

// jsonString decodes v, a JSON string. One without escapes, in valid
// UTF-8 (as a request body the proxy checked is), is its bytes between the
// quotes; others go through json.Unmarshal.
func jsonString(v json.RawMessage) (string, error) {
	if n := len(v); n >= 2 && v[0] == '"' && v[n-1] == '"' && plain(v[1:n-1]) {
		return string(v[1 : n-1]), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}

// plain reports whether b, between a JSON string's quotes, is that
// string's value as it stands: valid UTF-8 without a quote, a backslash or
// a control byte.
func plain(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}

// content counts a message content: a string, null, or an array of parts.
func (p prompter) content(v json.RawMessage) (int64, error) {
	switch kind(v) {
	case 0, 'n':
		if !isNull(v) {
			return 0, errors.New("not a string, array or null")
		}
		return 0, nil
	case '"':
		s, err := jsonString(v)
		if err != nil {
			return 0, err
		}
		return p.text(s), nil
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal(v, &parts); err != nil {
			return 0, err
		}
		var n int64
		for i, raw := range parts {
			c, err := p.part(raw)
			if err != nil {
				return 0, fmt.Errorf("[%d]: %w", i, err)
			}
			n += c
		}
		return n, nil
	default:
		return 0, errors.New("not a string, array or null")
	}
}

// part counts one content part. Text is counted exactly; images, audio and
// files by the conservative rules above; anything else as its JSON.
func (p prompter) part(raw json.RawMessage) (int64, error) {
	if kind(raw) == '"' { // a bare string, as moderations allow
		s, err := jsonString(raw)
		if err != nil {
			return 0, err
		}
		return p.text(s), nil
	}
	var pt part
	if err := json.Unmarshal(raw, &pt); err != nil {
		return 0, err
	}
	switch pt.Type {
	case "text", "input_text", "output_text":
		return p.text(pt.Text), nil
	case "refusal":
		return p.text(pt.Refusal), nil
	case "image_url", "input_image":
		return imageTokens, nil
	case "input_audio":
		if pt.InputAudio == nil {
			return p.raw(raw), nil
		}
		return ceilDiv(int64(len(pt.InputAudio.Data)), base64CharsPerToken), nil
	case "file":
		if pt.File == nil {
			return p.raw(raw) + fileTokens, nil
		}
		return fileTokens + ceilDiv(int64(len(pt.File.FileData)), base64CharsPerToken) + p.text(pt.File.Filename), nil
	case "input_file":
		return fileTokens + ceilDiv(int64(len(pt.FileData)), base64CharsPerToken) + p.text(pt.Filename), nil
	default:
		return p.raw(raw), nil
	}
}

// ---- /v1/completions and /v1/embeddings ----

type completionsRequest struct {
	Prompt json.RawMessage `json:"prompt"`
	Suffix *string         `json:"suffix"`
}

func (p prompter) completions(body []byte) (int64, error) {
	var req completionsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, err
	}
	if isNull(req.Prompt) {
		// The API's default prompt is "<|endoftext|>", one token.
		req.Prompt = json.RawMessage(`[0]`)
	}
	n, err := p.input(req.Prompt)
	if err != nil {
		return 0, fmt.Errorf("prompt: %w", err)
	}
	if req.Suffix != nil {
		n += p.text(*req.Suffix)
	}
	return n, nil
}

type inputRequest struct {
	Input json.RawMessage `json:"input"`
}

func (p prompter) embeddings(body []byte) (int64, error) {
	var req inputRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, err
	}
	n, err := p.input(req.Input)
	if err != nil {
		return 0, fmt.Errorf("input: %w", err)
	}
	return n, nil
}

// input counts a completions prompt or embeddings input: a string, an array
// of strings, an array of token ids (its length), or an array of such arrays.
func (p prompter) input(v json.RawMessage) (int64, error) {
	switch kind(v) {
	case 0, 'n':
		if !isNull(v) {
			return 0, errors.New("not a string or array")
		}
		return 0, nil
	case '"':
		s, err := jsonString(v)
		if err != nil {
			return 0, err
		}
		return p.text(s), nil
	case '[':
	default:
		return 0, errors.New("not a string or array")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		return 0, err
	}
	var n int64
	for i, item := range items {
		switch k := kind(item); {
		case k == '"':
			var s string
			if err := json.Unmarshal(item, &s); err != nil {
				return 0, err
			}
			n += p.text(s)
		case k == '-' || k >= '0' && k <= '9':
			n++ // a token id
		case k == '[':
			var tokens []int64
			if err := json.Unmarshal(item, &tokens); err != nil {
				return 0, fmt.Errorf("[%d]: %w", i, err)
			}
			n += int64(len(tokens))
		default:
			return 0, fmt.Errorf("[%d]: not a string, token or token array", i)
		}
	}
	return n, nil
}

// ---- /v1/moderations ----

func (p prompter) moderations(body []byte) (int64, error) {
	var req inputRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, err
	}
	switch kind(req.Input) {
	case '"', 0, 'n':
		return p.input(req.Input)
	case '[':
		n, err := p.content(req.Input) // strings or parts
		if err != nil {
			return 0, fmt.Errorf("input: %w", err)
		}
		return n, nil
	default:
		return 0, errors.New("input: not a string or array")
	}
}

// ---- /v1/responses ----

type responsesRequest struct {
	Instructions json.RawMessage `json:"instructions"`
	Input        json.RawMessage `json:"input"`
	Tools        json.RawMessage `json:"tools"`
	ToolChoice   json.RawMessage `json:"tool_choice"`
	Text         *struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	Prompt json.RawMessage `json:"prompt"`
}

// responsesItem is one input item; which fields are set depends on Type.
type responsesItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Input     string          `json:"input"` // custom tool calls
	Output    json.RawMessage `json:"output"`
}

func (p prompter) responses(body []byte) (int64, error) {
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, err
	}
	n := int64(replyPriming)
	switch kind(req.Instructions) {
	case 0, 'n':
	case '"':
		var s string
		if err := json.Unmarshal(req.Instructions, &s); err != nil {
			return 0, fmt.Errorf("instructions: %w", err)
		}
		n += perMessage + p.text("developer") + p.text(s)
	default:
		return 0, errors.New("instructions: not a string")
	}
	switch kind(req.Input) {
	case 0, 'n':
	case '"':
		var s string
		if err := json.Unmarshal(req.Input, &s); err != nil {
			return 0, fmt.Errorf("input: %w", err)
		}
		n += perMessage + p.text("user") + p.text(s)
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(req.Input, &items); err != nil {
			return 0, fmt.Errorf("input: %w", err)
		}
		for i, raw := range items {
			c, err := p.responsesItem(raw)
			if err != nil {
				return 0, fmt.Errorf("input[%d]: %w", i, err)
			}
			n += c
		}
	default:
		return 0, errors.New("input: not a string or array")
	}
	n += p.defs(req.Tools) + p.raw(req.ToolChoice) + p.raw(req.Prompt)
	if req.Text != nil && !isNull(req.Text.Format) {
		n += p.raw(req.Text.Format) + schemaOverhead
	}
	return n, nil
}

func (p prompter) responsesItem(raw json.RawMessage) (int64, error) {
	var it responsesItem
	if err := json.Unmarshal(raw, &it); err != nil {
		return 0, err
	}
	switch it.Type {
	case "", "message":
		c, err := p.content(it.Content)
		if err != nil {
			return 0, fmt.Errorf("content: %w", err)
		}
		return perMessage + p.text(it.Role) + c, nil
	case "function_call", "custom_tool_call":
		return perMessage + perToolCall + p.text(it.Name) + p.text(it.Arguments) + p.text(it.Input), nil
	case "function_call_output", "custom_tool_call_output":
		c, err := p.content(it.Output)
		if err != nil {
			c = p.raw(it.Output)
		}
		return perMessage + c, nil
	default:
		// Reasoning, references, built-in tool calls and items yet to
		// come: their JSON.
		return perMessage + p.raw(raw), nil
	}
}
