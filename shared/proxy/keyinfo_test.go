package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
)

// RecentEvents serves the fake store's events of keyID, newest first.
func (s *fakeStore) RecentEvents(_ context.Context, keyID string, limit int) ([]*ledger.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*ledger.Event{}
	for _, ev := range slices.Backward(s.events) {
		if ev.KeyID == keyID && len(out) < limit {
			c := *ev
			out = append(out, &c)
		}
	}
	return out, nil
}

// withHistory serves e's proxy again, with the fake store as its event history.
func withHistory(t *testing.T, e *env) {
	prices, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	e.proxy.Close()
	e.proxy = httptest.NewServer(New(Config{
		Keys: e.store, Providers: e.store, Limiter: e.store, Owners: e.store, History: e.store,
		Secrets: fakeSecrets{"sec1": providerKey}, Prices: prices, Tokenizer: wordTokenizer{},
	}))
	t.Cleanup(e.proxy.Close)
}

// TestSelfServiceAlwaysAllowed: a key limited to chat completions (as a
// roster key made as the README shows) may still read its own info and
// models; other paths stay refused.
func TestSelfServiceAlwaysAllowed(t *testing.T) {
	e := newEnv(t, jsonBody(t, "chat.json"), func(k *apikey.Key) {
		k.AllowedPaths = []apikey.PathRule{{Method: "POST", Path: "/v1/chat/completions"}}
		k.AllowedModels = []string{"gpt-4o-mini"}
	})
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/v1/key/info", 200},
		{"GET", "/v1/models", 200},
		{"POST", "/v1/chat/completions", 200},
		{"POST", "/v1/embeddings", 403},
	} {
		body := ""
		if tt.method == "POST" {
			body = chatBody
		}
		resp := e.do(tt.method, tt.path, "Bearer "+e.key, body)
		if resp.StatusCode != tt.status {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, b, tt.status)
		}
		if tt.method == "POST" && tt.status == 200 {
			e.store.waitEvent(t)
		}
	}
}

// TestKeyInfoRecentEvents: GET /v1/key/info lists the key's own latest
// events, newest first, without bodies or other keys' events.
func TestKeyInfoRecentEvents(t *testing.T) {
	e := newEnv(t, jsonBody(t, "chat.json"))
	withHistory(t, e)
	e.store.mu.Lock()
	e.store.events = append(e.store.events,
		&ledger.Event{ID: "other", KeyID: "someone-else", Model: "gpt-4o", Status: 200, CreatedAt: 1_000},
		&ledger.Event{ID: "old", KeyID: e.keyID, Model: "gpt-4o-mini", Status: 429, CreatedAt: 2_000, ErrorCode: "rate_limit_exceeded"})
	e.store.mu.Unlock()
	for range recentEventLimit + 2 {
		e.do("POST", "/v1/chat/completions", "Bearer "+e.key, strings.Replace(chatBody, `"messages"`, `"user":"x","messages"`, 1))
		e.store.waitEvent(t)
	}
	resp := e.do("GET", "/v1/key/info", "Bearer "+e.key, "")
	raw, _ := io.ReadAll(resp.Body)
	var info struct {
		RecentEvents []struct {
			CreatedAt                      int64
			Model                          string
			Status                         int
			PromptTokens, CompletionTokens int64
			CostInUsd                      money.Nanos
		}
	}
	if err := json.Unmarshal(raw, &info); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s: %v", resp.StatusCode, raw, err)
	}
	if len(info.RecentEvents) != recentEventLimit {
		t.Fatalf("%d recent events, want %d: %s", len(info.RecentEvents), recentEventLimit, raw)
	}
	first := info.RecentEvents[0]
	if first.Model != "gpt-4o-mini" || first.Status != 200 || first.PromptTokens == 0 || first.CostInUsd == 0 || first.CreatedAt == 0 {
		t.Fatalf("newest event %+v", first)
	}
	if strings.Contains(string(raw), "someone-else") || strings.Contains(string(raw), `"gpt-4o"`) || strings.Contains(string(raw), "Body") {
		t.Fatalf("another key's event or a body in %s", raw)
	}
}
