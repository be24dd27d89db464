package admin

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
)

// createKey creates a key through the API and returns the response.
func (e *env) createKey(t *testing.T, body string) createdKey {
	t.Helper()
	var c createdKey
	decode(t, e.do(t, "POST", "/api/v1/secret-keys", body), 200, &c)
	return c
}

const fullKeyBody = `{
	"name": "Class of 2026",
	"providerSettingIds": ["p1", "p2", "p1"],
	"ttl": "2h",
	"rateLimitOverTime": 10,
	"rateLimitUnit": "h",
	"costLimitInUsdPerMonth": 100,
	"costLimitInUsdLifetime": "250.5",
	"costLimitInUsdOverTime": 0.000001,
	"costLimitInUsdUnit": "d",
	"keyRetrievalMethod": "ONCE_PER_VIEWER",
	"allowedModels": ["gpt-4o-mini"],
	"allowedPaths": [{"path": "/v1/chat/completions", "method": "post"}],
	"modelLimits": {"gpt-4o-mini": {"rpm": 60, "tpm": 100000}},
	"userId": "student-7",
	"shouldLogRequest": true,
	"shouldLogResponse": false,
	"moderation": true,
	"tags": ["cs101"],
	"metadata": {"section": "A", "seat": 12}
}`

func TestCreateKey(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	e.addProvider("p2")

	rec := e.do(t, "POST", "/api/v1/secret-keys", fullKeyBody)
	var c createdKey
	decode(t, rec, 200, &c)
	var raw map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &raw)
	if org, ok := raw["organizationId"]; !ok || org != "" {
		t.Errorf("organizationId = %v, %v", org, ok)
	}

	// The plaintext is a well-formed stipend key naming the new key's id.
	id, err := apikey.Parse(c.Key)
	if err != nil || id != c.ID || c.KeyID != c.ID {
		t.Fatalf("key %q: id %q, err %v; response id %q keyId %q", c.Key, id, err, c.ID, c.KeyID)
	}
	stored := e.store.key(t, c.ID)
	if stored.Hash != apikey.Hash(c.Key) {
		t.Errorf("stored hash %q != Hash(key)", stored.Hash)
	}
	if b, _ := json.Marshal(stored); strings.Contains(string(b), c.Key) {
		t.Errorf("plaintext stored")
	}

	want := apikey.Key{
		ID: c.ID, Name: "Class of 2026", Hash: stored.Hash, Tags: []string{"cs101"},
		SettingIDs: []string{"p1", "p2"}, CreatedAt: testNow.Unix(), UpdatedAt: testNow.Unix(),
		TTL: "2h", ExpiresAt: testNow.Add(2 * time.Hour).Unix(),
		CostLimitLifetime: 250*money.Dollar + 50*money.Cent, CostLimitPerMonth: 100 * money.Dollar,
		CostLimitOverTime: money.Micro, CostLimitUnit: "d",
		RateLimitOverTime: 10, RateLimitUnit: "h",
		AllowedModels: []string{"gpt-4o-mini"},
		AllowedPaths:  []apikey.PathRule{{Path: "/v1/chat/completions", Method: "POST"}},
		ModelLimits:   map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 60, TPM: 100000}},
		UserID:        "student-7", ShouldLogRequest: true, Moderation: true,
		KeyRetrievalMethod: form.RetrieveOncePerViewer,
		Metadata:           map[string]any{"section": "A", "seat": float64(12)},
		Version:            1,
	}
	if !reflect.DeepEqual(*stored, want) {
		t.Errorf("stored\n %+v\nwant\n %+v", *stored, want)
	}
	if !reflect.DeepEqual(c.keyView, viewOf(&want)) {
		t.Errorf("response view\n %+v\nwant\n %+v", c.keyView, viewOf(&want))
	}
	// Money comes back as exact decimal dollars.
	if !strings.Contains(rec.Body.String(), `"costLimitInUsd":250.5,`) ||
		!strings.Contains(rec.Body.String(), `"costLimitInUsdOverTime":0.000001,`) {
		t.Errorf("costs in %s", rec.Body)
	}

	// Reading never shows the plaintext or the hash.
	for _, path := range []string{"/api/v1/secret-keys", "/api/v1/secret-keys/" + c.ID} {
		rec := e.do(t, "GET", path, "")
		decode(t, rec, 200, nil)
		body := rec.Body.String()
		if strings.Contains(body, c.Key) || strings.Contains(body, stored.Hash) || strings.Contains(body, `"key"`) {
			t.Errorf("GET %s shows the key or its hash: %s", path, body)
		}
		var views []keyView
		_ = json.Unmarshal(rec.Body.Bytes(), &views)
		if len(views) != 1 || !reflect.DeepEqual(views[0], viewOf(&want)) {
			t.Errorf("GET %s = %+v", path, views)
		}
	}
	if strings.Contains(e.logs.String(), c.Key) {
		t.Errorf("plaintext key in logs")
	}
}

func TestCreateKeyDefaults(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	rec := e.do(t, "POST", "/api/v1/secret-keys", `{"name":"n","providerSettingIds":["p1"]}`)
	decode(t, rec, 200, nil)
	var raw map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &raw)
	for field, want := range map[string]any{
		"tags": []any{}, "settingIds": []any{"p1"}, "allowedModels": []any{}, "allowedPaths": []any{},
		"modelLimits": map[string]any{}, "metadata": map[string]any{}, "keyRetrievalMethod": "ONCE",
		"ttl": "", "expiresAt": float64(0), "revoked": false, "revokedReason": "",
		"costLimitInUsd": float64(0), "rateLimitOverTime": float64(0), "rateLimitUnit": "",
		"lowerMaxTokens": true,
	} {
		if !reflect.DeepEqual(raw[field], want) {
			t.Errorf("%s = %#v, want %#v", field, raw[field], want)
		}
	}
	if _, ok := raw["metrics"]; ok {
		t.Errorf("metrics without includeMetrics")
	}
	// The key works once: two creations give different keys.
	c2 := e.createKey(t, `{"name":"n","providerSettingIds":["p1"]}`)
	if c2.Key == raw["key"] || c2.ID == raw["id"] {
		t.Errorf("keys repeat")
	}
}

func TestCreateKeyValidation(t *testing.T) {
	tests := []struct {
		name, body, param, msg string
	}{
		{"missing name", `{"providerSettingIds":["p1"]}`, "name", "name is required"},
		{"missing providers", `{"name":"n"}`, "providerSettingIds", "providerSettingIds is required"},
		{"empty providers", `{"name":"n","providerSettingIds":[]}`, "providerSettingIds", "non-empty list"},
		{"providers not a list", `{"name":"n","providerSettingIds":"p1"}`, "providerSettingIds", "providerSettingIds must be"},
		{"unknown provider id", `{"name":"n","providerSettingIds":["p1","ghost"]}`, "providerSettingIds", `"ghost" does not exist`},
		{"bad ttl unit", `{"name":"n","providerSettingIds":["p1"],"ttl":"1w"}`, "ttl", "ttl must be a positive integer followed by s, m, h or d"},
		{"zero ttl", `{"name":"n","providerSettingIds":["p1"],"ttl":"0h"}`, "ttl", "ttl must be"},
		{"ttl not a string", `{"name":"n","providerSettingIds":["p1"],"ttl":3600}`, "ttl", "ttl must be"},
		{"bad rate unit", `{"name":"n","providerSettingIds":["p1"],"rateLimitOverTime":5,"rateLimitUnit":"w"}`, "rateLimitUnit", "rateLimitUnit must be one of s, m, h, d"},
		{"rate without unit", `{"name":"n","providerSettingIds":["p1"],"rateLimitOverTime":5}`, "rateLimitUnit", "rateLimitUnit is required when rateLimitOverTime"},
		{"negative rate", `{"name":"n","providerSettingIds":["p1"],"rateLimitOverTime":-1,"rateLimitUnit":"m"}`, "rateLimitOverTime", "rateLimitOverTime must be a non-negative integer"},
		{"fractional rate", `{"name":"n","providerSettingIds":["p1"],"rateLimitOverTime":1.5,"rateLimitUnit":"m"}`, "rateLimitOverTime", "non-negative integer"},
		{"negative lifetime", `{"name":"n","providerSettingIds":["p1"],"costLimitInUsdLifetime":-5}`, "costLimitInUsdLifetime", "costLimitInUsdLifetime must be a non-negative number of US dollars"},
		{"negative monthly", `{"name":"n","providerSettingIds":["p1"],"costLimitInUsdPerMonth":-0.01}`, "costLimitInUsdPerMonth", "non-negative number of US dollars"},
		{"non-numeric cost", `{"name":"n","providerSettingIds":["p1"],"costLimitInUsdLifetime":"ten"}`, "costLimitInUsdLifetime", "non-negative number of US dollars"},
		{"too precise cost", `{"name":"n","providerSettingIds":["p1"],"costLimitInUsdLifetime":0.0000000001}`, "costLimitInUsdLifetime", "US dollars"},
		{"cost as bool", `{"name":"n","providerSettingIds":["p1"],"costLimitInUsdPerMonth":true}`, "costLimitInUsdPerMonth", "US dollars"},
		{"bad cost unit", `{"name":"n","providerSettingIds":["p1"],"costLimitInUsdOverTime":5,"costLimitInUsdUnit":"y"}`, "costLimitInUsdUnit", "one of m, h, d, mo"},
		{"cost over time without unit", `{"name":"n","providerSettingIds":["p1"],"costLimitInUsdOverTime":5}`, "costLimitInUsdUnit", "costLimitInUsdUnit is required"},
		{"bad path", `{"name":"n","providerSettingIds":["p1"],"allowedPaths":[{"path":"/admin","method":"GET"}]}`, "allowedPaths", "path starts with /v1/"},
		{"bad path method", `{"name":"n","providerSettingIds":["p1"],"allowedPaths":[{"path":"/v1/models","method":"FETCH"}]}`, "allowedPaths", "not an HTTP method"},
		{"paths not objects", `{"name":"n","providerSettingIds":["p1"],"allowedPaths":["/v1/models"]}`, "allowedPaths", "allowedPaths must be"},
		{"negative model limit", `{"name":"n","providerSettingIds":["p1"],"modelLimits":{"gpt-4o":{"rpm":-1}}}`, "modelLimits", "non-negative integers"},
		{"model limits not an object", `{"name":"n","providerSettingIds":["p1"],"modelLimits":[1]}`, "modelLimits", "modelLimits must be"},
		{"metadata not an object", `{"name":"n","providerSettingIds":["p1"],"metadata":"x"}`, "metadata", "metadata must be a JSON object"},
		{"tags not strings", `{"name":"n","providerSettingIds":["p1"],"tags":[1]}`, "tags", "tags must be a list of strings"},
		{"bool as string", `{"name":"n","providerSettingIds":["p1"],"moderation":"yes"}`, "moderation", "true or false"},
		{"unknown retrieval", `{"name":"n","providerSettingIds":["p1"],"keyRetrievalMethod":"ALWAYS"}`, "keyRetrievalMethod", "ONCE, ONCE_PER_VIEWER or ANYTIME_BY_VIEWER"},
		{"anytime without a vault", `{"name":"n","providerSettingIds":["p1"],"keyRetrievalMethod":"ANYTIME_BY_VIEWER"}`, "keyRetrievalMethod", "key retrieval is not configured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			b := wantError(t, e.do(t, "POST", "/api/v1/secret-keys", tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if !strings.Contains(b.Error.Message, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", b.Error.Message, tc.msg)
			}
			if len(e.store.keys) != 0 {
				t.Errorf("a rejected key was stored")
			}
		})
	}
}

func TestCreateKeyLenientNumbers(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	c := e.createKey(t, `{"name":"n","providerSettingIds":["p1"],"rateLimitOverTime":10.0,"rateLimitUnit":"m","ttl":"7d","costLimitInUsdLifetime":1e2}`)
	k := e.store.key(t, c.ID)
	if k.RateLimitOverTime != 10 || k.CostLimitLifetime != 100*money.Dollar || k.ExpiresAt != testNow.Add(7*24*time.Hour).Unix() {
		t.Errorf("key = %+v", k)
	}
}

func TestPatchKeyChangesOnlyNamedFields(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	e.addProvider("p2")
	c := e.createKey(t, fullKeyBody)
	before := e.store.key(t, c.ID)

	later := testNow.Add(time.Hour)
	e.configure(func(c *Config) { c.Now = func() time.Time { return later } })

	tests := []struct {
		name   string
		body   string
		change func(k *apikey.Key)
	}{
		{"nothing", `{}`, func(k *apikey.Key) {}},
		{"revoke", `{"revoked":true,"revokedReason":"left the class"}`, func(k *apikey.Key) {
			k.Revoked, k.RevokedReason = true, "left the class"
		}},
		{"reason alone while revoked", `{"revokedReason":"graduated"}`, func(k *apikey.Key) {
			k.Revoked, k.RevokedReason = true, "graduated"
		}},
		{"un-revoke clears the reason", `{"revoked":false}`, func(k *apikey.Key) {
			k.Revoked, k.RevokedReason = false, ""
		}},
		{"reason alone while active is ignored", `{"revokedReason":"x"}`, func(k *apikey.Key) {}},
		{"name and limits", `{"name":"Renamed","rateLimitOverTime":0,"costLimitInUsdLifetime":0}`, func(k *apikey.Key) {
			k.Name, k.RateLimitOverTime, k.CostLimitLifetime = "Renamed", 0, 0
		}},
		{"ttl counts from now", `{"ttl":"30m"}`, func(k *apikey.Key) {
			k.TTL, k.ExpiresAt = "30m", later.Add(30*time.Minute).Unix()
		}},
		{"empty ttl removes expiry", `{"ttl":""}`, func(k *apikey.Key) { k.TTL, k.ExpiresAt = "", 0 }},
		{"providers", `{"providerSettingIds":["p2"]}`, func(k *apikey.Key) { k.SettingIDs = []string{"p2"} }},
		{"lists and maps", `{"allowedModels":[],"tags":["a","b"],"metadata":{"x":"y"},"modelLimits":{},"allowedPaths":[]}`, func(k *apikey.Key) {
			k.AllowedModels, k.Tags, k.Metadata = []string{}, []string{"a", "b"}, map[string]any{"x": "y"}
			k.ModelLimits, k.AllowedPaths = map[string]apikey.ModelLimit{}, []apikey.PathRule{}
		}},
		{"booleans and user", `{"shouldLogRequest":false,"moderation":false,"userId":"u2"}`, func(k *apikey.Key) {
			k.ShouldLogRequest, k.Moderation, k.UserID = false, false, "u2"
		}},
		{"unit only, with rate 0", `{"rateLimitUnit":"s","costLimitInUsdUnit":"mo"}`, func(k *apikey.Key) {
			k.RateLimitUnit, k.CostLimitUnit = "s", "mo"
		}},
		{"same retrieval method is fine", `{"keyRetrievalMethod":"ONCE_PER_VIEWER"}`, func(k *apikey.Key) {}},
	}
	cur := before
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, tc.body)
			var v keyView
			decode(t, rec, 200, &v)
			want := cloneKey(cur)
			tc.change(want)
			want.UpdatedAt = later.Unix()
			want.Version = cur.Version + 1
			got := e.store.key(t, c.ID)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("stored\n %+v\nwant\n %+v", *got, *want)
			}
			if !reflect.DeepEqual(v, viewOf(want)) {
				t.Errorf("response\n %+v\nwant\n %+v", v, viewOf(want))
			}
			if strings.Contains(rec.Body.String(), got.Hash) {
				t.Errorf("hash in PATCH response")
			}
			cur = got
		})
	}
}

func TestPatchKeyValidation(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	c := e.createKey(t, `{"name":"n","providerSettingIds":["p1"],"rateLimitOverTime":5,"rateLimitUnit":"m"}`)
	before := e.store.key(t, c.ID)
	tests := []struct {
		name, body, param string
	}{
		{"blank name", `{"name":""}`, "name"},
		{"empty providers", `{"providerSettingIds":[]}`, "providerSettingIds"},
		{"unknown provider", `{"providerSettingIds":["ghost"]}`, "providerSettingIds"},
		{"clear unit while rate is set", `{"rateLimitUnit":""}`, "rateLimitUnit"},
		{"bad unit", `{"rateLimitUnit":"w"}`, "rateLimitUnit"},
		{"negative monthly", `{"costLimitInUsdPerMonth":-1}`, "costLimitInUsdPerMonth"},
		{"revoked not a bool", `{"revoked":"yes"}`, "revoked"},
		{"bad ttl", `{"ttl":"forever"}`, "ttl"},
		{"bad path", `{"allowedPaths":[{"path":"v1/chat/completions"}]}`, "allowedPaths"},
		{"retrieval method is fixed", `{"keyRetrievalMethod":"ONCE_PER_VIEWER"}`, "keyRetrievalMethod"},
		{"rule failure mid-list leaves all unchanged", `{"name":"new","costLimitInUsdLifetime":-1}`, "costLimitInUsdLifetime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if got := e.store.key(t, c.ID); !reflect.DeepEqual(got, before) {
				t.Errorf("a rejected PATCH changed the key: %+v", got)
			}
		})
	}
	wantError(t, e.do(t, "PATCH", "/api/v1/secret-keys/ghost", `{"revoked":true}`), 404, apierror.CodeNotFound, "")
	wantError(t, e.do(t, "GET", "/api/v1/secret-keys/ghost", ""), 404, apierror.CodeNotFound, "")
	wantError(t, e.do(t, "GET", "/api/v1/secret-keys/ghost?includeMetrics=true&start=0&end=10&increment=1", ""), 404, apierror.CodeNotFound, "")
}

func TestPatchKeyRetriesOnConflict(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	c := e.createKey(t, `{"name":"n","providerSettingIds":["p1"]}`)

	// Someone else renames the key between our read and our write: we retry
	// on the fresh copy, keeping their change and adding ours.
	e.store.conflicts = 1
	e.store.otherWriter = func(k *apikey.Key) { k.Name = "renamed by someone else" }
	rec := e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"revoked":true}`)
	var v keyView
	decode(t, rec, 200, &v)
	got := e.store.key(t, c.ID)
	if !got.Revoked || got.Name != "renamed by someone else" || v.Name != got.Name || !v.Revoked {
		t.Errorf("after retry: stored %+v, response %+v", got, v)
	}
	if e.store.updateCalls != 2 {
		t.Errorf("UpdateKey calls = %d, want 2", e.store.updateCalls)
	}

	// A key that keeps changing under us gives up with 409 after the retries.
	e.store.updateCalls = 0
	e.store.conflicts = 100
	e.store.otherWriter = nil
	wantError(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"name":"x"}`), 409, CodeConflict, "")
	if e.store.updateCalls != response.UpdateAttempts {
		t.Errorf("UpdateKey calls = %d, want %d", e.store.updateCalls, response.UpdateAttempts)
	}
}

func TestKeyListEmpty(t *testing.T) {
	e := newEnv(t)
	for _, q := range []string{"", "?includeMetrics=true&start=0&end=100"} {
		rec := e.do(t, "GET", "/api/v1/secret-keys"+q, "")
		decode(t, rec, 200, nil)
		if strings.TrimSpace(rec.Body.String()) != "[]" {
			t.Errorf("empty list%s = %s", q, rec.Body)
		}
	}
}

func TestLowerMaxTokensSetting(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	c := e.createKey(t, `{"name":"n","providerSettingIds":["p1"],"lowerMaxTokens":false}`)
	if k := e.store.key(t, c.ID); k.MayLowerMaxTokens() {
		t.Fatal("lowerMaxTokens false not stored")
	}
	decode(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"lowerMaxTokens":true}`), 200, nil)
	if k := e.store.key(t, c.ID); !k.MayLowerMaxTokens() {
		t.Fatal("lowerMaxTokens true not stored")
	}
	decode(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"lowerMaxTokens":"no"}`), 400, nil)
}
