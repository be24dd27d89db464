package proxy

import (
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/pricing"
)

// TestAliases: the fake upstream receives the alias's target, which is
// priced, and the event records both the target and the requested model.
func TestAliases(t *testing.T) {
	prices, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	chat := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"temperature":0.2}`
	}
	tests := []struct {
		name      string
		allowed   []string
		aliases   map[string]string
		body      string
		status    int
		code      string
		upstream  string // the model upstream receives
		requested string // the event's RequestedModel
	}{
		{"seed: models lists the target", []string{"gpt-4o-mini"}, map[string]string{"gpt-3.5-turbo": "gpt-4o-mini"},
			chat("gpt-3.5-turbo"), 200, "", "gpt-4o-mini", "gpt-3.5-turbo"},
		{"models lists the requested name", []string{"gpt-3.5-turbo"}, map[string]string{"gpt-3.5-turbo": "gpt-4o-mini"},
			chat("gpt-3.5-turbo"), 200, "", "gpt-4o-mini", "gpt-3.5-turbo"},
		{"no allowlist", nil, map[string]string{"mistral-7b": "gpt-4o-mini"},
			chat("mistral-7b"), 200, "", "gpt-4o-mini", "mistral-7b"},
		{"upgrade", nil, map[string]string{"gpt-4o-mini": "gpt-4o"},
			chat("gpt-4o-mini"), 200, "", "gpt-4o", "gpt-4o-mini"},
		{"one level only", nil, map[string]string{"a": "gpt-4o-mini", "gpt-4o-mini": "gpt-4o"},
			chat("a"), 200, "", "gpt-4o-mini", "a"},
		{"other models untouched", []string{"gpt-4o"}, map[string]string{"gpt-3.5-turbo": "gpt-4o-mini"},
			chat("gpt-4o"), 200, "", "gpt-4o", ""},
		{"self alias is no alias", nil, map[string]string{"gpt-4o": "gpt-4o"},
			chat("gpt-4o"), 200, "", "gpt-4o", ""},
		{"neither name allowed", []string{"o1"}, map[string]string{"gpt-3.5-turbo": "gpt-4o-mini"},
			chat("gpt-3.5-turbo"), 403, "model_not_allowed", "", ""},
		{"target not priced", nil, map[string]string{"gpt-3.5-turbo": "my-own-model"},
			chat("gpt-3.5-turbo"), 400, "model_not_priced", "", ""},
		{"unaliased name still checked", []string{"gpt-4o-mini"}, map[string]string{"gpt-3.5-turbo": "gpt-4o-mini"},
			chat("gpt-4o"), 403, "model_not_allowed", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, jsonBody(t, "chat.json"), func(k *apikey.Key) {
				k.AllowedModels, k.Aliases = tc.allowed, tc.aliases
			})
			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, tc.body)
			if resp.StatusCode != tc.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.code != "" {
				if code := errorCode(t, resp); code != tc.code {
					t.Fatalf("code %q, want %q", code, tc.code)
				}
				e.mu.Lock()
				called := e.lastReq != nil
				e.mu.Unlock()
				if called {
					t.Errorf("upstream called")
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			ev := e.store.waitEvent(t)
			e.mu.Lock()
			var sent map[string]any
			_ = json.Unmarshal(e.lastBody, &sent)
			raw := string(e.lastBody)
			e.mu.Unlock()
			if sent["model"] != tc.upstream {
				t.Errorf("upstream got model %v, want %q", sent["model"], tc.upstream)
			}
			// The rest of the body is passed on as sent; an unaliased body
			// is not even re-encoded.
			if sent["temperature"] != 0.2 || !reflect.DeepEqual(sent["messages"], []any{map[string]any{"role": "user", "content": "hi"}}) {
				t.Errorf("upstream body %s", raw)
			}
			if tc.requested == "" && raw != tc.body {
				t.Errorf("unaliased body changed: %s", raw)
			}
			if ev.Model != tc.upstream || ev.RequestedModel != tc.requested {
				t.Errorf("event model %q requested %q, want %q and %q", ev.Model, ev.RequestedModel, tc.upstream, tc.requested)
			}
			price, _ := prices.Lookup(tc.upstream)
			if ev.Cost != price.Cost(ev.Usage) || ev.Cost == 0 {
				t.Errorf("cost %v, want the target's price %v", ev.Cost, price.Cost(ev.Usage))
			}
		})
	}
}

func TestAliasStream(t *testing.T) {
	e := newEnv(t, replay(t, "chat_stream.sse"), func(k *apikey.Key) {
		k.Aliases = map[string]string{"class-model": "gpt-4o-mini"}
	})
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key,
		`{"model":"class-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.Copy(io.Discard, resp.Body)
	ev := e.store.waitEvent(t)
	e.mu.Lock()
	var sent struct {
		Model         string
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	_ = json.Unmarshal(e.lastBody, &sent)
	e.mu.Unlock()
	if sent.Model != "gpt-4o-mini" || !sent.StreamOptions.IncludeUsage {
		t.Errorf("upstream body %+v", sent)
	}
	if ev.Model != "gpt-4o-mini" || ev.RequestedModel != "class-model" || !ev.Stream {
		t.Errorf("event %+v", ev)
	}
}

func TestModelsListsAliases(t *testing.T) {
	e := newEnv(t, nil, func(k *apikey.Key) {
		k.AllowedModels = []string{"gpt-4o-mini"}
		k.Aliases = map[string]string{"gpt-3.5-turbo": "gpt-4o-mini", "zzz": "gpt-4o", "gpt-4o-mini": "gpt-4o-mini"}
	})
	resp := e.do("GET", "/v1/models", "Bearer "+e.key, "")
	var out struct{ Data []struct{ ID string } }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range out.Data {
		ids = append(ids, m.ID)
	}
	// zzz maps to a model the key may not use, and is not requestable.
	if want := []string{"gpt-4o-mini", "gpt-3.5-turbo"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("models %v, want %v", ids, want)
	}
}

func TestAliasHelpers(t *testing.T) {
	key := &apikey.Key{AllowedModels: []string{"a"}, Aliases: map[string]string{"x": "a", "y": "b"}}
	names := withAliases(key, key.AllowedModels)
	if !reflect.DeepEqual(names, []string{"a", "x"}) || !reflect.DeepEqual(key.AllowedModels, []string{"a"}) {
		t.Errorf("withAliases = %v; key's list now %v", names, key.AllowedModels)
	}
	tests := []struct {
		body, want string
		fail       bool
	}{
		{`{"model":"x","n":1}`, `{"model":"a","n":1}`, false},
		{`{"n":1}`, `{"model":"a","n":1}`, false},
		{`[1]`, ``, true},
		{`null`, ``, true},
	}
	for _, tc := range tests {
		got, err := setStringField([]byte(tc.body), "model", "a")
		if (err != nil) != tc.fail || !tc.fail && string(got) != tc.want {
			t.Errorf("setStringField(%s) = %s, %v", tc.body, got, err)
		}
	}
	if got, _ := setStringField([]byte(`{}`), "model", `q"uote</`); !strings.Contains(string(got), `"q\"uote\u003c/"`) {
		t.Errorf("not escaped: %s", got)
	}
	req := &request{Model: "y"}
	requested, body, err := applyAlias(key, req, []byte(`{"model":"y"}`))
	if err != nil || requested != "y" || req.Model != "b" || string(body) != `{"model":"b"}` {
		t.Errorf("applyAlias = %q, %s, %v; req.Model %q", requested, body, err, req.Model)
	}
	if modelAllowed(key, "y", "b") || !modelAllowed(key, "x", "a") || !modelAllowed(key, "a", "a") {
		t.Errorf("modelAllowed")
	}
	if _, _, err := applyAlias(key, &request{Model: "y"}, []byte(`[]`)); err == nil {
		t.Errorf("applyAlias on a non-object body succeeded")
	}
}
