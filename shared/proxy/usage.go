package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/provider"
)

func providerAuthorize(h http.Header, kind, apiKey string) { provider.Authorize(h, kind, apiKey) }

// usageJSON covers the usage shapes of chat/completions/embeddings
// (prompt_tokens...), the Responses API and Anthropic (input_tokens...).
type usageJSON struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	InputTokens         int64 `json:"input_tokens"`
	OutputTokens        int64 `json:"output_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	InputTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
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
	// Anthropic reports cache reads and writes beside input_tokens.
	out.PromptTokens += u.CacheReadInputTokens + u.CacheCreationInputTokens
	out.CachedTokens += u.CacheReadInputTokens
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

var (
	usageKey   = []byte(`"usage"`)
	emptyChoic = []byte(`"choices":[]`)
)

// isUsageOnlyChunk reports the final chunk that include_usage adds: no
// choices, only usage.
func isUsageOnlyChunk(data []byte) bool {
	return bytes.Contains(data, emptyChoic) && bytes.Contains(data, usageKey)
}

// inspect reads usage and generated text from one event or body.
func (m *meter) inspect(data []byte) {
	if len(data) == 0 || data[0] != '{' {
		return // "[DONE]", comments, keep-alives
	}
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return // not ours to judge; the client got it verbatim
	}
	for _, c := range p.Choices {
		m.text.WriteString(c.Text)
		m.text.WriteString(c.Delta.Content)
		m.text.WriteString(c.Delta.Refusal)
		for _, tc := range c.Delta.ToolCalls {
			m.text.WriteString(tc.Function.Name)
			m.text.WriteString(tc.Function.Arguments)
		}
	}
	switch p.Type {
	case "response.output_text.delta", "response.function_call_arguments.delta":
		var s string
		if json.Unmarshal(p.Delta, &s) == nil {
			m.text.WriteString(s)
		}
	case "content_block_delta": // Anthropic
		var d struct {
			Text        string `json:"text"`
			PartialJSON string `json:"partial_json"`
			Thinking    string `json:"thinking"`
		}
		if json.Unmarshal(p.Delta, &d) == nil {
			m.text.WriteString(d.Text + d.PartialJSON + d.Thinking)
		}
	}
	switch {
	case p.Usage != nil && (p.Usage.PromptTokens|p.Usage.CompletionTokens|p.Usage.InputTokens|p.Usage.OutputTokens) != 0:
		m.mergeUsage(p.Usage.toUsage())
	case p.Response != nil && p.Response.Usage != nil:
		m.mergeUsage(p.Response.Usage.toUsage())
	case p.Message != nil && p.Message.Usage != nil: // Anthropic message_start
		m.mergeUsage(p.Message.Usage.toUsage())
	}
}

// mergeUsage keeps the largest figure seen for each count: Anthropic sends
// input tokens in message_start and output tokens in message_delta, others
// send one final usage.
func (m *meter) mergeUsage(u ledger.Usage) {
	if m.usage == nil {
		m.usage = &ledger.Usage{}
	}
	m.usage.PromptTokens = max(m.usage.PromptTokens, u.PromptTokens)
	m.usage.CachedTokens = max(m.usage.CachedTokens, u.CachedTokens)
	m.usage.CompletionTokens = max(m.usage.CompletionTokens, u.CompletionTokens)
}
