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
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/testclock"
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
		if r.status != http.StatusForbidden || !bytes.Contains(r.body, []byte("model_not_allowed")) {
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

// newRoutingEnv is a proxy whose table holds, beside the default OpenAI
// setting (itProviderID), an Anthropic setting and an OpenAI-compatible
// server (vLLM) that only its own prices name, all at the fake upstream.
func newRoutingEnv(t *testing.T, endpoint, table string, opts itOptions) *itEnv {
	e := newITEnvWith(t, endpoint, table, time.Time{}, opts)
	e.addSetting(provider.Setting{ID: "claude", Name: "claude", Provider: provider.Anthropic, BaseURL: e.upURL + "/v1"})
	e.addSetting(provider.Setting{ID: "vllm", Name: "vllm", Provider: provider.OpenAICompatible, BaseURL: e.upURL + "/v1",
		Prices: map[string]provider.Rates{"llama-3.1-8b-instruct": {Input: 100_000, CachedInput: 100_000, CacheWrite: 100_000, Output: 200_000}}})
	return e
}

func chatFor(model string) []byte {
	return []byte(`{"model":"` + model + `","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}`)
}

func TestIntegrationRoutingAndPrices(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	e := newRoutingEnv(t, endpoint, "it-routing", itOptions{})
	e.addSetting(provider.Setting{ID: "openai-2", Name: "second account", Provider: provider.OpenAI, BaseURL: e.upURL + "/v1"})

	// A LiteLLM /key/generate key names no setting: it reaches every one.
	adm := admin.New(admin.Config{Store: e.store, AdminKey: func(context.Context) (string, error) { return "admin-key", nil }, Now: e.clock.Now})
	req := httptest.NewRequest(http.MethodPost, "/key/generate", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer admin-key")
	rec := httptest.NewRecorder()
	adm.ServeHTTP(rec, req)
	var gen struct{ Key string }
	if err := json.Unmarshal(rec.Body.Bytes(), &gen); rec.Code != 200 || err != nil {
		t.Fatalf("/key/generate with settings of three kinds: %d %s", rec.Code, rec.Body)
	}
	id, err := apikey.Parse(gen.Key)
	if err != nil {
		t.Fatal(err)
	}
	lite := itKey{id: id, plain: gen.Key}

	t.Run("a LiteLLM key routed by model to each kind", func(t *testing.T) {
		used := map[string]int{}
		for range 16 {
			r := e.post(itChatPath, lite.plain, chatFor("gpt-4o-mini"))
			if r.status != 200 {
				t.Fatalf("gpt-4o-mini: %d %s", r.status, r.body)
			}
		}
		r := e.post("/v1/messages", lite.plain, []byte(`{"model":"claude-haiku-4-5","max_tokens":50,"messages":[{"role":"user","content":"hello"}]}`))
		if r.status != 200 {
			t.Fatalf("claude: %d %s", r.status, r.body)
		}
		r = e.post(itChatPath, lite.plain, chatFor("llama-3.1-8b-instruct"))
		if r.status != 200 {
			t.Fatalf("llama: %d %s", r.status, r.body)
		}
		for _, ev := range e.events(lite) {
			used[ev.Model+" via "+ev.ProviderID]++
			switch {
			case ev.Model == "gpt-4o-mini" && ev.ProviderID != itProviderID && ev.ProviderID != "openai-2",
				ev.Model == "claude-haiku-4-5" && ev.ProviderID != "claude",
				ev.Model == "llama-3.1-8b-instruct" && ev.ProviderID != "vllm":
				t.Errorf("%s went to %s", ev.Model, ev.ProviderID)
			}
			if ev.Model == "llama-3.1-8b-instruct" {
				// Only the setting's prices price it: $0.10 in, $0.20 out per 1M tokens.
				want := money.Nanos((ev.Usage.PromptTokens*100_000 + ev.Usage.CompletionTokens*200_000 + 999) / 1000)
				if ev.Usage.CompletionTokens == 0 || ev.Cost != want || ev.ReservedCost < ev.Cost {
					t.Errorf("llama: usage %+v cost %d reserved %d, want cost %d", ev.Usage, ev.Cost, ev.ReservedCost, want)
				}
				t.Logf("llama-3.1-8b-instruct on vllm: usage %+v cost $%s (reserved $%s)", ev.Usage, ev.Cost, ev.ReservedCost)
			}
		}
		// Spread at random over the two OpenAI settings.
		if used["gpt-4o-mini via "+itProviderID] == 0 || used["gpt-4o-mini via openai-2"] == 0 {
			t.Errorf("16 requests not spread over both OpenAI settings: %v", used)
		}
		t.Logf("routed: %v", used)
	})

	t.Run("refusals", func(t *testing.T) {
		onlyClaude := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"claude"} })
		tests := []struct {
			name, key, path, model string
			status                 int
			code                   string
		}{
			{"no setting of the key serves it", onlyClaude.plain, itChatPath, "gpt-4o-mini", 403, "model_not_allowed"},
			// Only a setting this key cannot use prices it.
			{"a vLLM model without the vLLM setting", onlyClaude.plain, itChatPath, "llama-3.1-8b-instruct", 400, "model_not_priced"},
			{"nobody prices it", lite.plain, itChatPath, "mistral-large-2", 400, "model_not_priced"},
			{"Messages API for an OpenAI model", lite.plain, "/v1/messages", "gpt-4o-mini", 403, "model_not_allowed"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.post(tt.path, tt.key, chatFor(tt.model))
				if r.status != tt.status || !bytes.Contains(r.body, []byte(tt.code)) && r.header.Get("X-Stipend-Error-Code") != tt.code ||
					!bytes.Contains(r.body, []byte(tt.model)) {
					t.Fatalf("%d %s", r.status, r.body)
				}
			})
		}
	})

	t.Run("GET /v1/models lists what the key can reach", func(t *testing.T) {
		onlyVLLM := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"vllm"} })
		for _, tt := range []struct {
			key       string
			want, not []string
		}{
			{lite.plain, []string{"gpt-4o-mini", "claude-haiku-4-5", "llama-3.1-8b-instruct", "text-embedding-3-small"}, nil},
			{onlyVLLM.plain, []string{"llama-3.1-8b-instruct"}, []string{"gpt-4o-mini", "claude-haiku-4-5"}},
		} {
			req, _ := http.NewRequest(http.MethodGet, e.proxy.URL+"/v1/models", nil)
			req.Header.Set("Authorization", "Bearer "+tt.key)
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var list struct{ Data []struct{ ID string } }
			_ = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			ids := map[string]bool{}
			for _, m := range list.Data {
				ids[m.ID] = true
			}
			for _, m := range tt.want {
				if !ids[m] {
					t.Errorf("%s missing from %d models", m, len(ids))
				}
			}
			for _, m := range tt.not {
				if ids[m] {
					t.Errorf("%s listed", m)
				}
			}
		}
	})
	e.noOpenReservations()
}

// TestIntegrationFailover: a setting that fails before any byte reached the
// client is replaced once by another eligible setting, under the one
// reservation; a setting that fails after the first byte is never retried.
func TestIntegrationFailover(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	e := newITEnvWith(t, endpoint, "it-failover", time.Time{}, itOptions{config: func(c *proxy.Config) {
		c.Client = proxy.NewUpstreamClient(proxy.Timeouts{Dial: time.Second, TLSHandshake: time.Second, ResponseHeader: 300 * time.Millisecond, IdleConn: time.Second})
	}})

	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more: connect errors
	overloaded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, `{"error":{"message":"overloaded","type":"server_error"}}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(overloaded.Close)
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, `{"error":{"message":"rate limited","type":"rate_limit_error"}}`, http.StatusTooManyRequests)
	}))
	t.Cleanup(limited.Close)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // no headers within the client's ResponseHeader timeout
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	// cut streams the recorded start of a stream, then breaks the connection.
	cutStream, err := os.ReadFile("testdata/chat_stream_cut.sse")
	if err != nil {
		t.Fatal(err)
	}
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(cutStream)
		http.NewResponseController(w).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(cut.Close)
	for id, url := range map[string]string{"down": down.URL, "overloaded": overloaded.URL, "limited": limited.URL, "slow": slow.URL, "cut": cut.URL} {
		e.addSetting(provider.Setting{ID: id, Name: id, Provider: provider.OpenAI, BaseURL: url + "/v1"})
	}

	for _, bad := range []string{"down", "overloaded", "limited", "slow"} {
		t.Run("first setting "+bad+": retried once on the other", func(t *testing.T) {
			key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{bad, itProviderID}; k.CostLimitLifetime = money.Dollar })
			const n = 12
			for i := range n {
				r := e.post(itChatPath, key.plain, chatFor("gpt-4o-mini"))
				if r.status != http.StatusOK || !bytes.Contains(r.body, []byte("data: [DONE]")) {
					t.Fatalf("request %d: %d %s", i, r.status, r.body)
				}
			}
			var retried int
			var spent money.Nanos
			// Only the slow setting may have processed (and billed) the
			// prompt before it failed: a retried event is charged it too.
			mayHaveBilled := bad == "slow"
			var once, twice []*ledger.Event
			for _, ev := range e.events(key) {
				spent += ev.Cost
				if ev.ProviderID != itProviderID || ev.Status != 200 || ev.ReservedCost < ev.Cost || ev.Incomplete {
					t.Errorf("event %+v", ev)
				}
				switch ev.Attempts {
				case 2:
					retried++
					twice = append(twice, ev)
				case 1:
					once = append(once, ev)
				default:
					t.Errorf("attempts %d", ev.Attempts)
				}
			}
			if retried == 0 || retried == n {
				t.Errorf("%d of %d requests retried; the first setting is chosen at random", retried, n)
			}
			if len(once) > 0 {
				base := once[0]
				for _, ev := range twice {
					// The dropped attempt's prompt is stipend's own count of it.
					charged := ev.Usage.PromptTokens > base.Usage.PromptTokens && ev.Cost > base.Cost && ev.Estimated
					same := ev.Usage == base.Usage && ev.Cost == base.Cost && ev.Estimated == base.Estimated
					if mayHaveBilled && !charged || !mayHaveBilled && !same {
						t.Errorf("retried event: prompt %d, estimated %v, cost %d; one attempt: prompt %d, cost %d",
							ev.Usage.PromptTokens, ev.Estimated, ev.Cost, base.Usage.PromptTokens, base.Cost)
					}
				}
			}
			// One reservation per request, settled to what was served.
			if tot := e.totals("KEY#"+key.id, budget.LifetimeCounter); tot.Cost != spent || tot.Requests != n {
				t.Errorf("lifetime counter %+v, events %d", tot, spent)
			}
			t.Logf("%s first: %d of %d requests failed over, all served; spent $%s", bad, retried, n, spent)
		})
	}

	t.Run("both fail: the last answer reaches the client", func(t *testing.T) {
		key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"limited", "overloaded"} })
		r := e.post(itChatPath, key.plain, chatFor("gpt-4o-mini"))
		ev := e.onlyEvent(key)
		if r.status != ev.Status || (r.status != 429 && r.status != 503) || r.header.Get("Retry-After") != "7" || ev.Attempts != 2 || ev.Cost != 0 {
			t.Fatalf("%d %v %s; event %+v", r.status, r.header, r.body, ev)
		}
	})

	t.Run("never a retry after the first byte", func(t *testing.T) {
		key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"cut", itProviderID} })
		from := len(e.up.Requests())
		const n = 12
		var cutSeen int
		for range n {
			r := e.post(itChatPath, key.plain, chatFor("gpt-4o-mini"))
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if !bytes.Contains(r.body, []byte("data: [DONE]")) {
				cutSeen++
				if !bytes.Contains(r.body, []byte(`"Hello"`)) {
					t.Fatalf("cut stream not passed through: %s", r.body)
				}
			}
		}
		evs := e.events(key)
		var viaCut int
		for _, ev := range evs {
			if ev.ProviderID == "cut" {
				viaCut++
				if ev.Attempts != 1 || !ev.Incomplete || !ev.Estimated || ev.Cost == 0 {
					t.Errorf("cut event %+v", ev)
				}
			}
		}
		upstream := len(e.up.Requests()) - from
		if viaCut == 0 || viaCut != cutSeen || upstream != n-viaCut {
			t.Fatalf("%d cut events, %d cut streams seen, fake upstream got %d of %d requests", viaCut, cutSeen, upstream, n)
		}
		t.Logf("%d of %d streams cut after the first byte, none retried", viaCut, n)
	})
	e.noOpenReservations()
}

// TestIntegrationProviderCeilings: a setting's requestsPerMinute and
// tokensPerMinute are shared by every key that uses it and exact under
// concurrency; a request over one is a 429 with Retry-After, never charged.
func TestIntegrationProviderCeilings(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	// A fixed clock: every request falls in one minute's window.
	e := newITEnvWith(t, endpoint, "it-ceilings", testclock.Now(t), itOptions{})
	body := chatFor("gpt-4o-mini")
	price, _ := e.prices.Lookup("gpt-4o-mini")
	n, err := e.tok.Prompt(price.Encoding, itChatPath, body)
	if err != nil {
		t.Fatal(err)
	}
	worstTokens := n + 50
	e.addSetting(provider.Setting{ID: "rpm", Name: "rpm", Provider: provider.OpenAI, BaseURL: e.upURL + "/v1", RequestsPerMinute: 7})
	e.addSetting(provider.Setting{ID: "tpm", Name: "tpm", Provider: provider.OpenAI, BaseURL: e.upURL + "/v1", TokensPerMinute: worstTokens*9 + worstTokens/2})

	for _, tt := range []struct {
		setting string
		want    int
	}{{"rpm", 7}, {"tpm", 9}} {
		t.Run(tt.setting, func(t *testing.T) {
			keys := make([]itKey, 4)
			for i := range keys {
				keys[i] = e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{tt.setting} })
			}
			const total = 40
			results := e.burst(total, func(i int) string { return keys[i%len(keys)].plain }, body)
			var served, limited int
			for _, r := range results {
				switch {
				case r.status == 200 && r.done:
					served++
				case r.status == 429 && r.code == "rate_limit_exceeded" && r.retryAfter != "":
					limited++
				default:
					t.Fatalf("%+v", r)
				}
			}
			evs := e.events(keys...)
			var tokens int64
			for _, ev := range evs {
				tokens += ev.Usage.Total()
			}
			// Requests per minute: exactly the ceiling. Tokens per minute: at
			// least the ceiling's worth of worst cases, and what was served
			// never above the ceiling (a settled request gives back what it
			// did not use, so a late one may still fit).
			exact := tt.setting == "rpm" && served == tt.want ||
				tt.setting == "tpm" && served >= tt.want && tokens <= worstTokens*9+worstTokens/2
			if !exact || limited != total-served || len(evs) != served {
				t.Fatalf("%d served (%d tokens), %d limited, %d events; want %d served", served, tokens, limited, len(evs), tt.want)
			}
			t.Logf("%s ceiling shared by 4 keys: %d concurrent requests, %d served, %d refused with 429", tt.setting, total, served, limited)
		})
	}
	e.noOpenReservations()
}
