package proxy_test

// Integration tests of the provider kinds, routing, custom prices and
// failover: the real proxy over DynamoDB Local, the real price table and
// tokenizer, and the fake upstream speaking OpenAI, Azure and Anthropic.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
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

// anthropicError is Anthropic's error body.
type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestIntegrationAnthropic(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	e := newITEnv(t, endpoint, "it-anthropic", time.Time{})
	e.addSetting(provider.Setting{ID: "claude", Name: "claude", Provider: provider.Anthropic, BaseURL: e.upURL + "/v1"})
	const model = "claude-sonnet-4-5"
	cached := `{"model":"` + model + `","max_tokens":200,"stream":true,"system":[{"type":"text","text":"` + longPrompt(300) +
		`","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hello"}]}`

	t.Run("cache writes billed at their own price, reads at theirs", func(t *testing.T) {
		key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"claude"} })
		price, _ := e.prices.Lookup(model)
		var evs []*ledger.Event
		for range 2 { // the first writes the cache, the second reads it
			r := e.post("/v1/messages", key.plain, []byte(cached), "x-api-key", key.plain, "Authorization", "")
			if r.status != http.StatusOK || !bytes.Contains(r.body, []byte("message_stop")) {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
		}
		for _, ev := range e.events(key) {
			evs = append(evs, ev)
		}
		var write, read *ledger.Event
		for _, ev := range evs {
			if ev.Usage.CacheWriteTokens > 0 {
				write = ev
			}
			if ev.Usage.CachedTokens > 0 {
				read = ev
			}
		}
		if write == nil || read == nil {
			t.Fatalf("events %+v %+v: want one cache write, one cache read", evs[0], evs[1])
		}
		plain := write.Usage.PromptTokens - write.Usage.CacheWriteTokens
		want := money.Nanos((plain*price.Input + write.Usage.CacheWriteTokens*price.CacheWrite + write.Usage.CompletionTokens*price.Output + 999) / 1000)
		if price.CacheWrite*4 != price.Input*5 || write.Cost != want {
			t.Fatalf("cache write: usage %+v cost %d, want %d (write price %d = 1.25 x %d)", write.Usage, write.Cost, want, price.CacheWrite, price.Input)
		}
		if write.ReservedCost < write.Cost || read.ReservedCost < read.Cost {
			t.Fatalf("reserved below cost: %d < %d or %d < %d", write.ReservedCost, write.Cost, read.ReservedCost, read.Cost)
		}
		if read.Cost >= write.Cost {
			t.Fatalf("cache read %d not cheaper than write %d", read.Cost, write.Cost)
		}
		t.Logf("cache write: %+v $%s (reserved $%s); cache read: %+v $%s", write.Usage, write.Cost, write.ReservedCost, read.Usage, read.Cost)
	})

	t.Run("errors in Anthropic's shape, stipend's code in a header", func(t *testing.T) {
		tests := []struct {
			name   string
			key    string
			body   string
			status int
			typ    string
			code   string
		}{
			{"unknown key", "sk-stipend-nope", `{"model":"` + model + `","max_tokens":10,"messages":[]}`, 401, "authentication_error", "invalid_api_key"},
			{"unpriced model", "", `{"model":"claude-unknown-9","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, 400, "invalid_request_error", "model_not_priced"},
			{"malformed", "", `{"model":`, 400, "invalid_request_error", "invalid_request"},
			{"spend limit", "poor", `{"model":"` + model + `","max_tokens":1000,"messages":[{"role":"user","content":"x"}]}`, 429, "rate_limit_error", "insufficient_quota"},
		}
		ok := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"claude"} })
		poor := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"claude"}; k.CostLimitLifetime = 1; noLowering(k) })
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				key := tt.key
				switch key {
				case "":
					key = ok.plain
				case "poor":
					key = poor.plain
				}
				r := e.post("/v1/messages", key, []byte(tt.body), "x-api-key", key, "Authorization", "")
				var b anthropicError
				if err := json.Unmarshal(r.body, &b); err != nil {
					t.Fatalf("body %s: %v", r.body, err)
				}
				if r.status != tt.status || b.Type != "error" || b.Error.Type != tt.typ || b.Error.Message == "" ||
					r.header.Get("X-Stipend-Error-Code") != tt.code {
					t.Fatalf("status %d code %q body %s", r.status, r.header.Get("X-Stipend-Error-Code"), r.body)
				}
			})
		}
	})
}
