package proxy

import (
	"testing"

	"github.com/stipend/stipend/shared/provider"
)

func TestServes(t *testing.T) {
	openai := &provider.Setting{Provider: provider.OpenAI}
	azure := &provider.Setting{Provider: provider.Azure, Deployments: map[string]string{"my-model": "dep"}}
	claude := &provider.Setting{Provider: provider.Anthropic}
	vllm := &provider.Setting{Provider: provider.OpenAICompatible, Prices: map[string]provider.Rates{"llama-3.1-8b-instruct": {}}}
	listed := &provider.Setting{Provider: provider.OpenAI, AllowedModels: []string{"gpt-4o"}}
	tests := []struct {
		p     *provider.Setting
		model string
		path  string
		want  bool
	}{
		{openai, "gpt-4o-mini", "/v1/chat/completions", true},
		{openai, "o3-mini", "/v1/responses", true},
		{openai, "omni-moderation-latest", "/v1/moderations", true},
		{openai, "text-embedding-3-small", "/v1/embeddings", true},
		{openai, "claude-haiku-4-5", "/v1/chat/completions", false},
		{openai, "llama-3.1-8b-instruct", "/v1/chat/completions", false},
		{openai, "gpt-4o-mini", "/v1/messages", false},
		{azure, "gpt-4o-mini", "/v1/chat/completions", true},
		{azure, "my-model", "/v1/chat/completions", true}, // by its deployments
		{azure, "gpt-4o-mini", "/v1/responses", false},    // no deployment URL for it
		{claude, "claude-haiku-4-5", "/v1/messages", true},
		{claude, "gpt-4o-mini", "/v1/messages", false},
		{claude, "claude-haiku-4-5", "/v1/embeddings", false},
		{vllm, "llama-3.1-8b-instruct", "/v1/chat/completions", true}, // by its prices
		{vllm, "gpt-4o-mini", "/v1/chat/completions", false},          // no family
		{listed, "gpt-4o", "/v1/chat/completions", true},
		{listed, "gpt-4o-mini", "/v1/chat/completions", false}, // allowedModels restrict
	}
	for _, tt := range tests {
		if got := serves(tt.p, tt.model, tt.path); got != tt.want {
			t.Errorf("%s serves %s on %s = %v, want %v", tt.p.Provider, tt.model, tt.path, got, tt.want)
		}
	}
}
