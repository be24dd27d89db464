package provider

import (
	"net/http"
	"testing"
)

func TestEndpoint(t *testing.T) {
	azure := Setting{Provider: Azure, BaseURL: "https://school.openai.azure.com/", APIVersion: "2024-10-21",
		Deployments: map[string]string{"gpt-4o-mini": "class-mini"}}
	tests := []struct {
		s       Setting
		path, q string
		model   string
		want    string
		wantErr bool
	}{
		{Setting{Provider: OpenAI}, "/v1/chat/completions", "", "gpt-4o", "https://api.openai.com/v1/chat/completions", false},
		{Setting{Provider: OpenAICompatible, BaseURL: "http://127.0.0.1:9999/v1/"}, "/v1/models", "a=b", "", "http://127.0.0.1:9999/v1/models?a=b", false},
		{Setting{Provider: OpenAICompatible}, "/v1/models", "", "", "", true},
		// Azure: the model's deployment, or the model as its own deployment, and the api-version.
		{azure, "/v1/chat/completions", "", "gpt-4o-mini", "https://school.openai.azure.com/openai/deployments/class-mini/chat/completions?api-version=2024-10-21", false},
		{azure, "/v1/embeddings", "", "text-embedding-3-small", "https://school.openai.azure.com/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21", false},
		{azure, "/v1/completions", "api-version=1999-01-01", "gpt-3.5-turbo-instruct", "https://school.openai.azure.com/openai/deployments/gpt-3.5-turbo-instruct/completions?api-version=2024-10-21", false},
		{azure, "/v1/chat/completions", "", "a/b", "https://school.openai.azure.com/openai/deployments/a%2Fb/chat/completions?api-version=2024-10-21", false},
		{azure, "/v1/responses", "", "gpt-4o", "", true},
	}
	for _, tt := range tests {
		got, err := tt.s.Endpoint(tt.path, tt.q, tt.model)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
}

func TestAuthorize(t *testing.T) {
	for kind, header := range map[string]string{OpenAI: "Authorization", Azure: "Api-Key", Anthropic: "X-Api-Key", OpenAICompatible: "Authorization"} {
		h := http.Header{}
		Authorize(h, kind, "k")
		if h.Get(header) == "" {
			t.Errorf("%s: %s not set: %v", kind, header, h)
		}
	}
}
