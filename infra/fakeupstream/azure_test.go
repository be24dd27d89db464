package fakeupstream

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestAzureDeployments(t *testing.T) {
	f := newFixture(t, Options{APIKey: "az-key", Chunks: 2, Interval: -1,
		Deployments: map[string]string{"class-mini": "gpt-4o-mini", "emb": "text-embedding-3-small", "old": "gpt-3.5-turbo-instruct"}})
	key := http.Header{"Api-Key": {"az-key"}}
	chat := map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi there"}}}
	tests := []struct {
		name, path string
		header     http.Header
		body       any
		status     int
		model      string // response model, for 200
		code       string // error code, otherwise
	}{
		{"chat", "/openai/deployments/class-mini/chat/completions?api-version=2024-10-21", key, chat, 200, "gpt-4o-mini", ""},
		{"chat body model ignored", "/openai/deployments/class-mini/chat/completions?api-version=2024-10-21", key,
			map[string]any{"model": "gpt-4o", "messages": chat["messages"]}, 200, "gpt-4o-mini", ""},
		{"preview version", "/openai/deployments/class-mini/chat/completions?api-version=2025-04-01-preview", key, chat, 200, "gpt-4o-mini", ""},
		{"completions", "/openai/deployments/old/completions?api-version=2024-10-21", key, map[string]any{"prompt": "say"}, 200, "gpt-3.5-turbo-instruct", ""},
		{"embeddings", "/openai/deployments/emb/embeddings?api-version=2024-10-21", key, map[string]any{"input": "a b"}, 200, "text-embedding-3-small", ""},
		{"no api-version", "/openai/deployments/class-mini/chat/completions", key, chat, 400, "", "BadRequest"},
		{"unknown api-version", "/openai/deployments/class-mini/chat/completions?api-version=2019-01-01", key, chat, 400, "", "BadRequest"},
		{"wrong key", "/openai/deployments/class-mini/chat/completions?api-version=2024-10-21", http.Header{"Api-Key": {"nope"}}, chat, 401, "", "401"},
		{"bearer is not api-key", "/openai/deployments/class-mini/chat/completions?api-version=2024-10-21", http.Header{"Authorization": {"Bearer az-key"}}, chat, 401, "", "401"},
		{"unknown deployment", "/openai/deployments/nope/chat/completions?api-version=2024-10-21", key, chat, 404, "", "DeploymentNotFound"},
		{"unknown operation", "/openai/deployments/class-mini/images/generations?api-version=2024-10-21", key, chat, 404, "", "404"},
		{"upstream status", "/openai/deployments/class-mini/chat/completions?api-version=2024-10-21", key,
			map[string]any{"messages": []any{map[string]any{"role": "user", "content": "fake:status=429"}}}, 429, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := readJSON(t, f.do(t, context.Background(), http.MethodPost, tt.path, tt.body, tt.header), tt.status)
			switch {
			case tt.status == 200:
				if get(t, m, "model") != tt.model {
					t.Errorf("model %v, want %q", m["model"], tt.model)
				}
			case tt.code != "":
				if get(t, m, "error", "code") != tt.code || has(get(t, m, "error"), "type") {
					t.Errorf("error %v, want code %q in Azure's shape", m, tt.code)
				}
			}
		})
	}
	// The recorded request kept its query and header.
	reqs := f.fake.Requests()
	if r := reqs[0]; !strings.HasPrefix(r.Path, "/openai/deployments/class-mini/") || r.Header.Get("Api-Key") != "az-key" {
		t.Errorf("recorded %+v", r)
	}
}

// TestAzureStream: a deployment streams like OpenAI, with the deployment's
// model and usage when asked.
func TestAzureStream(t *testing.T) {
	f := newFixture(t, Options{Chunks: 2, Interval: -1})
	body := map[string]any{"stream": true, "stream_options": map[string]any{"include_usage": true},
		"messages": []any{map[string]any{"role": "user", "content": "hi"}}}
	resp := f.do(t, context.Background(), http.MethodPost, "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21", body, nil)
	events, err := readEvents(resp)
	if err != nil || len(events) < 3 || events[len(events)-1].data != "[DONE]" {
		t.Fatalf("events %v, %v", events, err)
	}
	last := events[len(events)-2].json(t)
	if get(t, last, "model") != "gpt-4o-mini" || num(t, get(t, last, "usage", "completion_tokens")) != 2 {
		t.Errorf("usage chunk %v", last)
	}
}
