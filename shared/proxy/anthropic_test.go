package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/provider"
)

func TestAnthropicMessages(t *testing.T) {
	const body = `{"model":"claude-3-5-haiku-20241022","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hello"}]}`
	t.Run("streams and meters an Anthropic provider", func(t *testing.T) {
		e := newEnv(t, replay(t, "anthropic_stream.sse"))
		e.store.providers["p1"].Provider = provider.Anthropic
		req, _ := http.NewRequest("POST", e.proxy.URL+"/v1/messages", strings.NewReader(body))
		req.Header.Set("x-api-key", e.key) // as Anthropic's SDK sends it
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(got), "event: message_stop") {
			t.Fatalf("status %d body %s", resp.StatusCode, got)
		}
		e.mu.Lock()
		up := e.lastReq
		e.mu.Unlock()
		if up.URL.Path != "/v1/messages" || up.Header.Get("X-Api-Key") != providerKey || up.Header.Get("Anthropic-Version") == "" || up.Header.Get("Authorization") != "" {
			t.Fatalf("upstream request %s %v", up.URL.Path, up.Header)
		}
		ev := e.store.waitEvent(t)
		// $0.80 / $4.00 per 1M tokens: 25 in, 15 out.
		if ev.Usage != (ledger.Usage{PromptTokens: 25, CompletionTokens: 15}) || ev.Cost != 25*800+15*4000 || ev.Estimated {
			t.Fatalf("event %+v", ev)
		}
		if ev.ReservedCost < ev.Cost {
			t.Fatalf("reserved %d below cost %d", ev.ReservedCost, ev.Cost)
		}
	})
	t.Run("refused for a non-Anthropic provider", func(t *testing.T) {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) { t.Error("forwarded") })
		resp := e.do("POST", "/v1/messages", "Bearer "+e.key, body)
		var b struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 403 || resp.Header.Get("X-Stipend-Error-Code") != "model_not_allowed" ||
			b.Type != "error" || b.Error.Type != "permission_error" || !strings.Contains(b.Error.Message, "/v1/messages") {
			t.Fatalf("status %d %v body %+v", resp.StatusCode, resp.Header, b)
		}
	})
}

func TestModelsFollowTheProvider(t *testing.T) {
	tests := []struct {
		kind                string
		wantGPT, wantClaude bool
	}{
		{provider.OpenAI, true, false},
		{provider.Azure, true, false},
		{provider.Anthropic, false, true},
		// An OpenAI-compatible server serves only what its setting names.
		{provider.OpenAICompatible, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			e := newEnv(t, nil)
			e.store.providers["p1"].Provider = tt.kind
			resp := e.do("GET", "/v1/models", "Bearer "+e.key, "")
			b, _ := io.ReadAll(resp.Body)
			if gpt := strings.Contains(string(b), `"gpt-4o-mini"`); gpt != tt.wantGPT {
				t.Errorf("gpt-4o-mini listed = %v", gpt)
			}
			if claude := strings.Contains(string(b), `"claude-3-5-haiku"`); claude != tt.wantClaude {
				t.Errorf("claude-3-5-haiku listed = %v", claude)
			}
		})
	}
}
