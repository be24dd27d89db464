package proxy_test

// Integration tests of the provider kinds, routing, custom prices and
// failover: the real proxy over DynamoDB Local, the real price table and
// tokenizer, and the fake upstream speaking OpenAI, Azure and Anthropic.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/provider"
)

// addSetting stores a provider setting whose key is the fake upstream's.
func (e *itEnv) addSetting(s provider.Setting) {
	e.t.Helper()
	s.SecretID, s.CreatedAt = itSecretID, e.clock.Now().Unix()
	if err := e.store.CreateProvider(context.Background(), &s); err != nil {
		e.t.Fatal(err)
	}
}

// reply is what a client saw of one request.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to path with key (as Authorization: Bearer) and waits
// until the proxy handler, and so the settle, has returned.
func (e *itEnv) post(path, key string, body []byte, header ...string) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.proxy.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.inflight.Wait()
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// onlyEvent returns the one event of key.
func (e *itEnv) onlyEvent(key itKey) *ledger.Event {
	e.t.Helper()
	evs := e.events(key)
	if len(evs) != 1 {
		e.t.Fatalf("%d events, want 1", len(evs))
	}
	for _, ev := range evs {
		return ev
	}
	return nil
}

// wantCost checks that ev's cost is its usage at model's embedded price.
func (e *itEnv) wantCost(ev *ledger.Event, model string) {
	e.t.Helper()
	price, ok := e.prices.Lookup(model)
	if !ok {
		e.t.Fatalf("%s has no price", model)
	}
	if ev.Usage.PromptTokens == 0 || ev.Usage.CompletionTokens == 0 || ev.Cost != price.Cost(ev.Usage) {
		e.t.Fatalf("event usage %+v cost %d, want %d at %s's price", ev.Usage, ev.Cost, price.Cost(ev.Usage), model)
	}
}

func TestIntegrationAzure(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	e := newITEnvWith(t, endpoint, "it-azure", time.Time{}, itOptions{upstream: func(o *fakeupstream.Options) {
		// The fake's deployments: class-mini serves gpt-4o-mini, and
		// text-embedding-3-small is its own deployment.
		o.Deployments = map[string]string{"class-mini": "gpt-4o-mini", "text-embedding-3-small": "text-embedding-3-small"}
	}})
	e.addSetting(provider.Setting{ID: "azure", Name: "azure", Provider: provider.Azure, BaseURL: e.upURL,
		APIVersion: "2024-10-21", Deployments: map[string]string{"gpt-4o-mini": "class-mini"}})

	tests := []struct {
		name, path, model string
		body              string
		wantPath          string
	}{
		{"chat, streamed, by deployment", "/v1/chat/completions", "gpt-4o-mini",
			`{"model":"gpt-4o-mini","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}`,
			"/openai/deployments/class-mini/chat/completions"},
		{"chat, buffered", "/v1/chat/completions", "gpt-4o-mini",
			`{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}`,
			"/openai/deployments/class-mini/chat/completions"},
		{"embeddings, the model is its own deployment", "/v1/embeddings", "text-embedding-3-small",
			`{"model":"text-embedding-3-small","input":"hello there"}`,
			"/openai/deployments/text-embedding-3-small/embeddings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"azure"} })
			from := len(e.up.Requests())
			r := e.post(tt.path, key.plain, []byte(tt.body))
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := e.up.Requests()[from:]
			if len(got) != 1 || got[0].Path != tt.wantPath || got[0].Header.Get("Api-Key") != itUpstreamKey || got[0].Header.Get("Authorization") != "" {
				t.Fatalf("upstream saw %d requests, first %s %v", len(got), got[0].Path, got[0].Header)
			}
			ev := e.onlyEvent(key)
			if ev.Model != tt.model || ev.ProviderID != "azure" || ev.Status != 200 {
				t.Fatalf("event %+v", ev)
			}
			if tt.path == "/v1/embeddings" {
				price, _ := e.prices.Lookup(tt.model)
				if ev.Usage.PromptTokens == 0 || ev.Cost != price.Cost(ev.Usage) {
					t.Fatalf("event usage %+v cost %d", ev.Usage, ev.Cost)
				}
				return
			}
			e.wantCost(ev, tt.model)
			t.Logf("%s: usage %+v cost $%s", tt.name, ev.Usage, ev.Cost)
		})
	}
	t.Run("a path Azure deployments do not serve", func(t *testing.T) {
		key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"azure"} })
		r := e.post("/v1/responses", key.plain, []byte(`{"model":"gpt-4o-mini","input":"hi","max_output_tokens":20}`))
		if r.status != http.StatusBadRequest {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}
