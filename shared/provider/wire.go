package provider

// Wire formats: what stipend reads from and rewrites in the providers' own
// request and response bodies. The proxy forwards bodies verbatim otherwise.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/stipend/stipend/shared/ledger"
)

// IsClaude reports whether model is one of Anthropic's (a "claude-" name).
func IsClaude(model string) bool { return strings.HasPrefix(model, "claude-") }

// IsOpenAIFamily reports the model families OpenAI and Azure OpenAI serve:
// gpt-*, chatgpt-*, o<digit>* (o1, o3, o4-mini), text-embedding-*, the
// moderation models (*-moderation-*) and OpenAI's other model names
// (davinci-002, babbage-002, codex-*, computer-use-*).
func IsOpenAIFamily(model string) bool {
	for _, prefix := range []string{"gpt-", "chatgpt-", "text-embedding-", "davinci-", "babbage-", "codex-", "computer-use-"} {
		if strings.HasPrefix(model, prefix) {
			return true
		}
	}
	if strings.Contains(model, "-moderation-") {
		return true
	}
	return len(model) > 1 && model[0] == 'o' && model[1] >= '0' && model[1] <= '9'
}

// ServesFamily reports whether a setting of kind serves model by its kind
// alone: Claude models on Anthropic, OpenAI's families on OpenAI and Azure.
// An OpenAI-compatible server serves only the models its setting names
// (allowedModels or prices), never a family.
func ServesFamily(kind, model string) bool {
	switch kind {
	case Anthropic:
		return IsClaude(model)
	case OpenAI, Azure:
		return IsOpenAIFamily(model)
	}
	return false
}

// StreamUsageOnRequest reports the APIs (chat completions, completions)
// whose streams report usage only when the request sets
// stream_options.include_usage.
func StreamUsageOnRequest(path string) bool {
	return path == "/v1/chat/completions" || path == "/v1/completions"
}

// WithIncludeUsage returns body with stream_options.include_usage set, so
// that a stream ends with a usage chunk.
func WithIncludeUsage(body []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	opts := map[string]json.RawMessage{}
	if raw, ok := obj["stream_options"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &opts); err != nil {
			return nil, errors.New("stream_options is not an object")
		}
	}
	opts["include_usage"] = json.RawMessage("true")
	b, _ := json.Marshal(opts)
	obj["stream_options"] = b
	return json.Marshal(obj)
}

var (
	usageKey   = []byte(`"usage"`)
	emptyChoic = []byte(`"choices":[]`)
)

// IsUsageOnlyChunk reports the final chunk that include_usage adds: no
// choices, only usage.
func IsUsageOnlyChunk(data []byte) bool {
	return bytes.Contains(data, emptyChoic) && bytes.Contains(data, usageKey)
}

// usageJSON covers the usage shapes of chat/completions/embeddings
// (prompt_tokens...), the Responses API and Anthropic (input_tokens...).
type usageJSON struct {
	PromptTokens             int64          `json:"prompt_tokens"`
	CompletionTokens         int64          `json:"completion_tokens"`
	InputTokens              int64          `json:"input_tokens"`
	OutputTokens             int64          `json:"output_tokens"`
	PromptTokensDetails      *tokensDetails `json:"prompt_tokens_details"`
	InputTokensDetails       *tokensDetails `json:"input_tokens_details"`
	CacheReadInputTokens     int64          `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int64          `json:"cache_creation_input_tokens"`
	// CacheCreation splits the writes by lifetime (Anthropic).
	CacheCreation *cacheCreation `json:"cache_creation"`
}

// tokensDetails is the part of prompt_tokens_details and
// input_tokens_details that prices read.
type tokensDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// cacheCreation is the part of Anthropic's cache_creation that prices read.
type cacheCreation struct {
	Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
}

func (u *usageJSON) toUsage() ledger.Usage {
	out := ledger.Usage{
		PromptTokens:     u.PromptTokens + u.InputTokens,
		CompletionTokens: u.CompletionTokens + u.OutputTokens,
	}
	if d := u.PromptTokensDetails; d != nil {
		out.CachedTokens += d.CachedTokens
	}
	if d := u.InputTokensDetails; d != nil {
		out.CachedTokens += d.CachedTokens
	}
	// Anthropic reports cache reads and writes beside input_tokens; writes
	// have their own price (pricing.Price.CacheWrite).
	out.PromptTokens += u.CacheReadInputTokens + u.CacheCreationInputTokens
	out.CachedTokens += u.CacheReadInputTokens
	out.CacheWriteTokens += u.CacheCreationInputTokens
	if c := u.CacheCreation; c != nil {
		out.CacheWrite1hTokens = min(c.Ephemeral1h, out.CacheWriteTokens)
	}
	return out
}

// payload is what stipend reads from a response body or a stream event.
type payload struct {
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Content   string `json:"content"`
			Refusal   string `json:"refusal"`
			ToolCalls []struct {
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *usageJSON `json:"usage"`
	// Responses API and Anthropic stream events.
	Type     string          `json:"type"`
	Delta    json.RawMessage `json:"delta"`
	Response *struct {
		Usage *usageJSON `json:"usage"`
	} `json:"response"`
	Message *struct {
		Usage *usageJSON `json:"usage"`
	} `json:"message"`
}

// ReadPayload reads one response body or stream event's data: it returns
// the usage it reports, or nil, and when it reports none it writes the
// generated text it carries (content, refusals, tool calls, Responses API
// and Anthropic deltas, thinking) to text, from which the usage can be
// estimated. Data that is not a JSON object ("[DONE]", comments,
// keep-alives, anything unreadable) carries neither. A usage in a
// top-level "usage" member (a whole non-streamed answer, the last event of
// a stream) is read without decoding the rest (topUsage), and the text of
// a plain chat completion chunk is found in place (plainChunk).
func ReadPayload(data []byte, text io.StringWriter) *ledger.Usage {
	if len(data) == 0 || data[0] != '{' {
		return nil
	}
	if plainChunk(data, text) {
		return nil // a plain chunk reports no usage
	}
	if u := topUsage(data); u != nil {
		return u
	}
	return decodePayload(data, text)
}

// decodePayload is ReadPayload by decoding all of data, a JSON object.
func decodePayload(data []byte, text io.StringWriter) *ledger.Usage {
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return nil // not ours to judge; the client got it verbatim
	}
	for _, c := range p.Choices {
		_, _ = text.WriteString(c.Text)
		_, _ = text.WriteString(c.Delta.Content)
		_, _ = text.WriteString(c.Delta.Refusal)
		for _, tc := range c.Delta.ToolCalls {
			_, _ = text.WriteString(tc.Function.Name)
			_, _ = text.WriteString(tc.Function.Arguments)
		}
	}
	switch p.Type {
	case "response.output_text.delta", "response.function_call_arguments.delta":
		var s string
		if json.Unmarshal(p.Delta, &s) == nil {
			_, _ = text.WriteString(s)
		}
	case "content_block_delta": // Anthropic
		var d struct {
			Text        string `json:"text"`
			PartialJSON string `json:"partial_json"`
			Thinking    string `json:"thinking"`
		}
		if json.Unmarshal(p.Delta, &d) == nil {
			_, _ = text.WriteString(d.Text + d.PartialJSON + d.Thinking)
		}
	}
	var u ledger.Usage
	switch {
	case p.Usage != nil && (p.Usage.PromptTokens|p.Usage.CompletionTokens|p.Usage.InputTokens|p.Usage.OutputTokens) != 0:
		u = p.Usage.toUsage()
	case p.Response != nil && p.Response.Usage != nil:
		u = p.Response.Usage.toUsage()
	case p.Message != nil && p.Message.Usage != nil: // Anthropic message_start
		u = p.Message.Usage.toUsage()
	default:
		return nil
	}
	return &u
}

// MergeUsage folds a usage report into the ones seen before (nil: none),
// keeping the largest figure seen for each count: Anthropic sends input
// tokens in message_start and output tokens in message_delta, the others
// send one final usage.
func MergeUsage(seen *ledger.Usage, u ledger.Usage) *ledger.Usage {
	if seen == nil {
		seen = &ledger.Usage{}
	}
	seen.PromptTokens = max(seen.PromptTokens, u.PromptTokens)
	seen.CachedTokens = max(seen.CachedTokens, u.CachedTokens)
	seen.CacheWriteTokens = max(seen.CacheWriteTokens, u.CacheWriteTokens)
	seen.CacheWrite1hTokens = max(seen.CacheWrite1hTokens, u.CacheWrite1hTokens)
	seen.CompletionTokens = max(seen.CompletionTokens, u.CompletionTokens)
	return seen
}
