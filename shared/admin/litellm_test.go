package admin

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/litellm"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/provider"
)

// liteExpires is how LiteLLM writes an expiry d after testNow.
func liteExpires(d time.Duration) string {
	return testNow.Add(d).UTC().Format("2006-01-02T15:04:05.000000+00:00")
}

// rawJSON decodes a response into a generic object, checking the status.
func rawJSON(t *testing.T, e *env, method, path, body string, status int) map[string]any {
	t.Helper()
	var m map[string]any
	decode(t, e.do(t, method, path, body), status, &m)
	return m
}

// keyOf returns the stored key a plaintext names.
func (e *env) keyOf(t *testing.T, plain any) *apikey.Key {
	t.Helper()
	s, _ := plain.(string)
	id, err := apikey.Parse(s)
	if err != nil {
		t.Fatalf("key %q is not a stipend key: %v", plain, err)
	}
	return e.store.key(t, id)
}

// TestKeyGenerateSeedExamples sends the /key/generate bodies of seed 002
// and checks the response and the stored key field by field.
func TestKeyGenerateSeedExamples(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		expires  any // the response's expires
		models   []string
		aliases  map[string]string
		metadata map[string]any
		ttl      string
	}{
		{
			name: "quick start",
			// The seed names claude-2, which stipend cannot price (see
			// TestKeyGenerateRefusesUnpricedModels); a current Claude stands in.
			body:     `{"models": ["gpt-3.5-turbo", "gpt-4", "claude-3-5-haiku"], "duration": "20m","metadata": {"user": "ishaan@berri.ai", "team": "core-infra"}}`,
			expires:  liteExpires(20 * time.Minute),
			models:   []string{"gpt-3.5-turbo", "gpt-4", "claude-3-5-haiku"},
			metadata: map[string]any{"user": "ishaan@berri.ai", "team": "core-infra"},
			ttl:      "20m",
		},
		{
			name: "keys that don't expire",
			// The seed's "azure-models" is a LiteLLM model group; stipend
			// names models (or aliases), so an alias stands in.
			body:    `{"models": ["mistral-7b"], "aliases": {"mistral-7b": "gpt-3.5-turbo"}, "duration": null}`,
			expires: nil,
			models:  []string{"mistral-7b"},
			aliases: map[string]string{"mistral-7b": "gpt-3.5-turbo"},
		},
		{
			name: "upgrade/downgrade models",
			body: `{
	"models": ["gpt-4o-mini"], 
	"aliases": {"gpt-3.5-turbo": "gpt-4o-mini"}, 
	"duration": "30min"
}`,
			expires: liteExpires(30 * time.Minute),
			models:  []string{"gpt-4o-mini"},
			aliases: map[string]string{"gpt-3.5-turbo": "gpt-4o-mini"},
			ttl:     "30m",
		},
		{
			name:    "no duration: one hour",
			body:    `{}`,
			expires: liteExpires(time.Hour),
			models:  []string{},
			ttl:     "1h",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			got := rawJSON(t, e, "POST", "/key/generate", tc.body, 200)
			keys := slices.Sorted(mapKeys(got))
			if !reflect.DeepEqual(keys, []string{"expires", "key", "key_name", "user_id"}) {
				t.Errorf("response fields %v", keys)
			}
			if !reflect.DeepEqual(got["expires"], tc.expires) || got["user_id"] != nil || got["key_name"] != "LiteLLM key" {
				t.Errorf("response %v", got)
			}
			k := e.keyOf(t, got["key"])
			if k.Hash != apikey.Hash(got["key"].(string)) {
				t.Errorf("hash does not match the key")
			}
			if !reflect.DeepEqual(response.NonEmpty(k.AllowedModels), tc.models) || !reflect.DeepEqual(k.Aliases, tc.aliases) ||
				k.TTL != tc.ttl || len(k.SettingIDs) != 0 || // none named: routed among every setting k.KeyRetrievalMethod != form.RetrieveOnce ||
				k.CostLimitLifetime != 0 || k.UserID != "" || k.Sealed != "" {
				t.Errorf("stored %+v", k)
			}
			if tc.metadata != nil && !reflect.DeepEqual(k.Metadata, tc.metadata) {
				t.Errorf("metadata %v", k.Metadata)
			}
			if want := tc.expires; want == nil && k.ExpiresAt != 0 || want != nil && k.ExpiresAt == 0 {
				t.Errorf("expiresAt %d", k.ExpiresAt)
			}
			// The native API shows the aliases too.
			var views []keyView
			decode(t, e.do(t, "GET", "/api/v1/secret-keys/"+k.ID, ""), 200, &views)
			if want := tc.aliases; want == nil && len(views[0].Aliases) != 0 || want != nil && !reflect.DeepEqual(views[0].Aliases, want) {
				t.Errorf("view aliases %v", views[0].Aliases)
			}
		})
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestKeyGenerateFields(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, e *env, resp map[string]any, k *apikey.Key)
	}{
		{"durations", `{"duration":"2hours"}`, func(t *testing.T, e *env, _ map[string]any, k *apikey.Key) {
			if k.TTL != "2h" || k.ExpiresAt != testNow.Add(2*time.Hour).Unix() {
				t.Errorf("ttl %q expires %d", k.TTL, k.ExpiresAt)
			}
		}},
		{"weeks", `{"duration":"2w"}`, func(t *testing.T, e *env, _ map[string]any, k *apikey.Key) {
			if k.TTL != "14d" {
				t.Errorf("ttl %q", k.TTL)
			}
		}},
		{"seconds", `{"duration":"30s"}`, func(t *testing.T, e *env, resp map[string]any, k *apikey.Key) {
			if resp["expires"] != liteExpires(30*time.Second) {
				t.Errorf("expires %v", resp["expires"])
			}
		}},
		{"max budget", `{"max_budget":12.5}`, func(t *testing.T, e *env, _ map[string]any, k *apikey.Key) {
			if k.CostLimitLifetime != 12*money.Dollar+50*money.Cent {
				t.Errorf("limit %v", k.CostLimitLifetime)
			}
		}},
		{"zero budget allows no spend", `{"max_budget":0}`, func(t *testing.T, e *env, _ map[string]any, k *apikey.Key) {
			if k.CostLimitLifetime != litellm.ZeroBudget {
				t.Errorf("limit %v", k.CostLimitLifetime)
			}
		}},
		{"key alias names the key", `{"key_alias":"alice's laptop"}`, func(t *testing.T, e *env, resp map[string]any, k *apikey.Key) {
			if k.Name != "alice's laptop" || resp["key_name"] != "alice's laptop" {
				t.Errorf("name %q, key_name %v", k.Name, resp["key_name"])
			}
		}},
		{"existing user", `{"user_id":"u2"}`, func(t *testing.T, e *env, resp map[string]any, k *apikey.Key) {
			if k.UserID != "u2" || resp["user_id"] != "u2" || e.store.user(t, "u2").ID != "id-u2" {
				t.Errorf("user %q / %v", k.UserID, resp["user_id"])
			}
		}},
		{"unknown user is created", `{"user_id":"newbie@school.edu"}`, func(t *testing.T, e *env, resp map[string]any, k *apikey.Key) {
			u := e.store.user(t, "newbie@school.edu")
			if u.CostLimitLifetime != 0 || u.Revoked || u.Name != "newbie@school.edu" || u.ExpiresAt != 0 {
				t.Errorf("implicit user %+v", u)
			}
			if k.UserID != "newbie@school.edu" || k.Name != "LiteLLM key for newbie@school.edu" || resp["user_id"] != "newbie@school.edu" {
				t.Errorf("key %+v", k)
			}
		}},
		{"chosen providers", `{"stipend_provider_setting_ids":["p2","p2"]}`, func(t *testing.T, e *env, _ map[string]any, k *apikey.Key) {
			if !reflect.DeepEqual(k.SettingIDs, []string{"p2"}) {
				t.Errorf("settings %v", k.SettingIDs)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			e.store.providers["p2"] = &provider.Setting{ID: "p2", Name: "p2", Provider: provider.Anthropic}
			if !strings.Contains(tc.body, "stipend_provider_setting_ids") {
				delete(e.store.providers, "p2")
			}
			resp := rawJSON(t, e, "POST", "/key/generate", tc.body, 200)
			tc.check(t, e, resp, e.keyOf(t, resp["key"]))
		})
	}
}

func TestKeyGenerateProviderChoice(t *testing.T) {
	openai := func(id, base string) *provider.Setting {
		return &provider.Setting{ID: id, Name: id, Provider: provider.OpenAI, BaseURL: base}
	}
	tests := []struct {
		name      string
		providers []*provider.Setting
		body      string
		want      []string // nil: a 400
		msg       string
	}{
		{"none", nil, `{}`, nil, "create one with POST /api/v1/providers"},
		// Naming none, the key is routed by model among every setting.
		{"one", []*provider.Setting{openai("a", "")}, `{}`, []string{}, ""},
		{"interchangeable", []*provider.Setting{openai("a", ""), openai("b", "")}, `{}`, []string{}, ""},
		{"different base URLs", []*provider.Setting{openai("a", ""), openai("b", "https://other.example/v1")}, `{}`, []string{}, ""},
		{"different kinds", []*provider.Setting{openai("a", ""), {ID: "c", Provider: provider.Anthropic}}, `{}`, []string{}, ""},
		{"named", []*provider.Setting{openai("a", ""), {ID: "c", Provider: provider.Anthropic}}, `{"stipend_provider_setting_ids":["c"]}`, []string{"c"}, ""},
		{"named unknown", []*provider.Setting{openai("a", "")}, `{"stipend_provider_setting_ids":["ghost"]}`, nil, `"ghost" does not exist`},
		{"named empty", []*provider.Setting{openai("a", "")}, `{"stipend_provider_setting_ids":[]}`, nil, "non-empty list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			for _, p := range tc.providers {
				e.store.providers[p.ID] = p
			}
			rec := e.do(t, "POST", "/key/generate", tc.body)
			if tc.want == nil {
				b := wantError(t, rec, 400, apierror.CodeInvalidRequest, "stipend_provider_setting_ids")
				if !strings.Contains(b.Error.Message, tc.msg) {
					t.Errorf("message %q lacks %q", b.Error.Message, tc.msg)
				}
				if len(e.store.keys) != 0 {
					t.Errorf("key stored")
				}
				return
			}
			var resp map[string]any
			decode(t, rec, 200, &resp)
			k := e.keyOf(t, resp["key"])
			if !reflect.DeepEqual(k.SettingIDs, tc.want) && (len(k.SettingIDs) != 0 || len(tc.want) != 0) {
				t.Errorf("settings %v, want %v", k.SettingIDs, tc.want)
			}
		})
	}
}

func TestKeyGenerateValidation(t *testing.T) {
	tests := []struct{ name, body, param string }{
		{"duration without unit", `{"duration":"3600"}`, "duration"},
		{"duration zero", `{"duration":"0h"}`, "duration"},
		{"duration unknown unit", `{"duration":"3y"}`, "duration"},
		{"duration empty", `{"duration":""}`, "duration"},
		{"duration number", `{"duration":3600}`, "duration"},
		{"duration huge", `{"duration":"999999999d"}`, "duration"},
		{"models not a list", `{"models":"gpt-4"}`, "models"},
		{"empty model name", `{"models":[""]}`, "models"},
		{"aliases not strings", `{"aliases":{"a":1}}`, "aliases"},
		{"alias to nothing", `{"aliases":{"a":" "}}`, "aliases"},
		{"negative budget", `{"max_budget":-1}`, "max_budget"},
		{"budget text", `{"max_budget":"lots"}`, "max_budget"},
		{"bad user id", `{"user_id":"has space"}`, "user_id"},
		{"metadata not an object", `{"metadata":[1]}`, "metadata"},
		{"empty key alias", `{"key_alias":""}`, "key_alias"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			users := len(e.store.users)
			wantError(t, e.do(t, "POST", "/key/generate", tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if len(e.store.keys) != 0 || len(e.store.users) != users {
				t.Errorf("something was stored")
			}
		})
	}
	e := newEnv(t)
	wantError(t, e.do(t, "POST", "/key/generate", `[1]`), 400, apierror.CodeInvalidRequest, "")
	wantError(t, e.do(t, "POST", "/key/generate", `{"duration":"`+strings.Repeat("1", request.MaxBodyBytes)+`"}`), 413, apierror.CodeRequestTooLarge, "")
	wantError(t, e.doAuth(t, "POST", "/key/generate", `{}`, "Bearer sk-1234"), 401, apierror.CodeInvalidAPIKey, "")
}

func TestKeyInfo(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	gen := rawJSON(t, e, "POST", "/key/generate", `{"models": ["gpt-3.5-turbo", "gpt-4", "claude-3-5-haiku"], "aliases": {"mistral-7b": "gpt-3.5-turbo"}, "duration": "20m", "metadata": {"team": "core"}, "max_budget": 10, "user_id": "u2"}`, 200)
	plain := gen["key"].(string)
	k := e.keyOf(t, plain)
	e.store.setTotals(k.ID, ledger.Totals{Cost: 106500 * money.Nano, Committed: 200000 * money.Nano, Requests: 3})

	rec := e.do(t, "GET", "/key/info?key="+url.QueryEscape(plain), "")
	var got map[string]any
	decode(t, rec, 200, &got)
	if got["key"] != plain || len(got) != 2 {
		t.Errorf("top level %v", got)
	}
	info, _ := got["info"].(map[string]any)
	want := map[string]any{
		"token":      k.ID,
		"spend":      0.0001065,
		"expires":    liteExpires(20 * time.Minute),
		"models":     []any{"gpt-3.5-turbo", "gpt-4", "claude-3-5-haiku"},
		"aliases":    map[string]any{"mistral-7b": "gpt-3.5-turbo"},
		"config":     map[string]any{},
		"user_id":    "u2",
		"max_budget": float64(10),
		"metadata":   map[string]any{"team": "core"},
		"key_name":   "LiteLLM key for u2",
	}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("info\n %v\nwant\n %v", info, want)
	}
	if !strings.Contains(rec.Body.String(), `"spend":0.0001065`) {
		t.Errorf("spend is not exact dollars: %s", rec.Body)
	}

	// A key that never expires, with no models, aliases or budget.
	gen = rawJSON(t, e, "POST", "/key/generate", `{"duration": null}`, 200)
	got = rawJSON(t, e, "GET", "/key/info?key="+gen["key"].(string), "", 200)
	info = got["info"].(map[string]any)
	if info["expires"] != nil || info["spend"] != float64(0) || !reflect.DeepEqual(info["models"], []any{}) ||
		!reflect.DeepEqual(info["aliases"], map[string]any{}) || info["max_budget"] != nil || info["user_id"] != nil {
		t.Errorf("bare info %v", info)
	}
	// max_budget 0 reads back as 0.
	gen = rawJSON(t, e, "POST", "/key/generate", `{"max_budget": 0}`, 200)
	got = rawJSON(t, e, "GET", "/key/info?key="+gen["key"].(string), "", 200)
	if got["info"].(map[string]any)["max_budget"] != float64(0) {
		t.Errorf("zero budget reads back as %v", got["info"])
	}

	// Errors: the key must be given, well-formed, known and match its hash.
	id, _ := apikey.Parse(plain)
	_, other := apikey.Generate()
	forged := apikey.Prefix + id + "_" + strings.Split(other, "_")[1]
	for _, tc := range []struct {
		name, query string
		status      int
		code        string
	}{
		{"missing", "", 400, apierror.CodeInvalidRequest},
		{"empty", "?key=", 400, apierror.CodeInvalidRequest},
		{"malformed", "?key=sk-1234", 404, apierror.CodeNotFound},
		{"unknown", "?key=" + other, 404, apierror.CodeNotFound},
		{"wrong secret for the id", "?key=" + forged, 404, apierror.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, "GET", "/key/info"+tc.query, "")
			wantError(t, rec, tc.status, tc.code, "key")
			if strings.Contains(rec.Body.String(), "sk-") {
				t.Errorf("error echoes the key: %s", rec.Body)
			}
		})
	}
	wantError(t, e.doAuth(t, "GET", "/key/info?key="+plain, "", "Bearer "+plain), 401, apierror.CodeInvalidAPIKey, "")

	e.store.fail = errors.New("dynamodb: 10.0.0.7")
	rec = e.do(t, "GET", "/key/info?key="+plain, "")
	wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
	if strings.Contains(e.logs.String(), plain) || strings.Contains(e.logs.String(), forged) {
		t.Errorf("logs show a key")
	}
}

func TestUserNew(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	// The seed's example.
	rec := e.do(t, "POST", "/user/new", `{"models": ["gpt-4o-mini"], "max_budget": 0, "user_id": "krrish3@berri.ai"}`)
	var got map[string]any
	decode(t, rec, 200, &got)
	if keys := slices.Sorted(mapKeys(got)); !reflect.DeepEqual(keys, []string{"expires", "key", "max_budget", "user_id"}) {
		t.Errorf("response fields %v", keys)
	}
	if got["user_id"] != "krrish3@berri.ai" || got["max_budget"] != float64(0) || got["expires"] != liteExpires(time.Hour) {
		t.Errorf("response %v", got)
	}
	k := e.keyOf(t, got["key"])
	u := e.store.user(t, "krrish3@berri.ai")
	if k.UserID != u.UserID || k.CostLimitLifetime != 0 || !reflect.DeepEqual(k.AllowedModels, []string{"gpt-4o-mini"}) {
		t.Errorf("key %+v", k)
	}
	if u.CostLimitLifetime != litellm.ZeroBudget || u.Name != "krrish3@berri.ai" {
		t.Errorf("user %+v: a max_budget of 0 must allow no spend", u)
	}

	// The budget is the user's, shared by the keys /key/generate adds.
	got = rawJSON(t, e, "POST", "/user/new", `{"user_id":"s1","max_budget":25,"duration":null}`, 200)
	if got["max_budget"] != float64(25) || got["expires"] != nil {
		t.Errorf("response %v", got)
	}
	if u := e.store.user(t, "s1"); u.CostLimitLifetime != 25*money.Dollar {
		t.Errorf("user limit %v", u.CostLimitLifetime)
	}
	second := rawJSON(t, e, "POST", "/key/generate", `{"user_id":"s1"}`, 200)
	if k2 := e.keyOf(t, second["key"]); k2.UserID != "s1" || k2.CostLimitLifetime != 0 {
		t.Errorf("second key %+v", k2)
	}
	if u := e.store.user(t, "s1"); u.CostLimitLifetime != 25*money.Dollar {
		t.Errorf("user limit changed to %v", u.CostLimitLifetime)
	}

	// No user_id: one is generated; no max_budget: no limit, shown as null.
	got = rawJSON(t, e, "POST", "/user/new", `{}`, 200)
	id, _ := got["user_id"].(string)
	if id == "" || got["max_budget"] != nil || e.store.user(t, id).CostLimitLifetime != 0 {
		t.Errorf("generated user %v", got)
	}

	// Errors.
	n := len(e.store.keys)
	wantError(t, e.do(t, "POST", "/user/new", `{"user_id":"s1"}`), 409, CodeConflict, "user_id")
	wantError(t, e.do(t, "POST", "/user/new", `{"user_id":"s2","max_budget":-3}`), 400, apierror.CodeInvalidRequest, "max_budget")
	wantError(t, e.do(t, "POST", "/user/new", `{"user_id":"s3","duration":"soon"}`), 400, apierror.CodeInvalidRequest, "duration")
	wantError(t, e.do(t, "POST", "/user/new", `{"user_id":"bad id"}`), 400, apierror.CodeInvalidRequest, "user_id")
	for _, id := range []string{"s2", "s3"} {
		e.store.mu.Lock()
		_, ok := e.store.users[id]
		e.store.mu.Unlock()
		if ok {
			t.Errorf("user %s created by a rejected request", id)
		}
	}
	if len(e.store.keys) != n {
		t.Errorf("keys created by rejected requests")
	}
	if strings.Contains(e.logs.String(), "sk-stp-") {
		t.Errorf("logs show a key")
	}
}

// TestLiteResponsesAreJSON: every LiteLLM route answers JSON that a Python
// client's json.loads reads back to the documented keys.
func TestLiteResponsesAreJSON(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	for _, body := range []string{`{"duration":null}`, `{"duration":"1h","user_id":"x"}`} {
		rec := e.do(t, "POST", "/key/generate", body)
		if !json.Valid(rec.Body.Bytes()) || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("response %s", rec.Body)
		}
	}
}

// TestKeyGenerateRefusesUnpricedModels sends seed 002's bodies whose model
// names stipend cannot serve (LiteLLM model groups, retired models): each is
// refused, naming the model, and no key is made.
func TestKeyGenerateRefusesUnpricedModels(t *testing.T) {
	for _, body := range []string{
		`{"models": ["gpt-3.5-turbo", "gpt-4", "claude-2"], "duration": "20m"}`,
		`{"models": ["azure-models"], "aliases": {"mistral-7b": "gpt-3.5-turbo"}, "duration": null}`,
		`{"models": ["my-free-tier"], "aliases": {"gpt-3.5-turbo": "my-free-tier"}, "duration": "30min"}`,
	} {
		e := newEnv(t)
		e.addProvider("p1")
		rec := e.do(t, "POST", "/key/generate", body)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"param":"models"`) || !strings.Contains(rec.Body.String(), "not a model stipend can price") {
			t.Errorf("%s: %d %s", body, rec.Code, rec.Body)
		}
		if len(e.store.keys) != 0 {
			t.Errorf("%s: a key was made", body)
		}
	}
}
