package provider

import (
	"net/http"
	"testing"
)

func TestEndpoint(t *testing.T) {
	tests := []struct {
		s       Setting
		path, q string
		want    string
		wantErr bool
	}{
		{Setting{Provider: OpenAI}, "/v1/chat/completions", "", "https://api.openai.com/v1/chat/completions", false},
		{Setting{Provider: OpenAICompatible, BaseURL: "http://127.0.0.1:9999/v1/"}, "/v1/models", "a=b", "http://127.0.0.1:9999/v1/models?a=b", false},
		{Setting{Provider: OpenAICompatible}, "/v1/models", "", "", true},
	}
	for _, tt := range tests {
		got, err := tt.s.Endpoint(tt.path, tt.q)
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
