package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/infra/teststack"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/dynamo/dynamotest"
	"github.com/stipend/stipend/shared/testclock"
)

// TestTyposAreRefusedEverywhere sends a misspelt field to every admin route
// that takes a body, through the real handler on DynamoDB Local: each answers
// 400 invalid_request naming the field, and nothing changes (the keys, users,
// providers and organisation read back as before).
func TestTyposAreRefusedEverywhere(t *testing.T) {
	const adminKey = "adm-refusals-0123456789abcdef0123"
	store := dynamotest.Store(t, localtest.StartDynamoDB(t), "refusals")
	clock := testclock.Running(testclock.Now(t))
	srv := httptest.NewServer(admin.New(admin.Config{
		Store: store, Secrets: teststack.NewMapSecrets(nil), SecretPrefix: "stipend/refusals/",
		AdminKey: func(context.Context) (string, error) { return adminKey, nil },
		Now:      clock.Now,
	}))
	t.Cleanup(srv.Close)

	call := func(t *testing.T, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		if out == nil {
			out = map[string]any{"raw": string(b)}
		}
		return res.StatusCode, out
	}
	mustOK := func(t *testing.T, method, path, body string) map[string]any {
		t.Helper()
		status, out := call(t, method, path, body)
		if status != 200 {
			t.Fatalf("%s %s: %d %v", method, path, status, out)
		}
		return out
	}

	// What there is to change: a provider, a key, a user, the organisation.
	prov := mustOK(t, "POST", "/api/v1/providers", `{"name":"openai","provider":"openai","apiKey":"sk-x"}`)
	pid, _ := prov["id"].(string)
	key := mustOK(t, "POST", "/api/v1/secret-keys", `{"name":"k","providerSettingIds":["`+pid+`"],"costLimitInUsdLifetime":1}`)
	kid, _ := key["id"].(string)
	mustOK(t, "POST", "/api/v1/users", `{"userId":"s1","name":"Ada","ttl":"never"}`)
	mustOK(t, "PATCH", "/api/v1/organization", `{"costLimitInUsd":50}`)

	snapshot := func(t *testing.T) string {
		t.Helper()
		var b strings.Builder
		for _, p := range []string{"/api/v1/providers", "/api/v1/secret-keys?includeArchived=true", "/api/v1/users", "/api/v1/organization"} {
			out := mustOK(t, "GET", p, "")
			j, _ := json.Marshal(out)
			b.Write(j)
		}
		return b.String()
	}
	before := snapshot(t)

	routes := []struct {
		method, path, body, field string
	}{
		{"POST", "/api/v1/providers", `{"name":"n","provider":"openai","apiKey":"k","baseUrll":"http://x"}`, "baseUrll"},
		{"PATCH", "/api/v1/providers/" + pid, `{"nmae":"renamed"}`, "nmae"},
		{"POST", "/api/v1/secret-keys", `{"name":"k2","providerSettingIds":["` + pid + `"],"costLimitInUsdLifetme":1}`, "costLimitInUsdLifetme"},
		{"PATCH", "/api/v1/secret-keys/" + kid, `{"costLimitInUsdLifetme":100}`, "costLimitInUsdLifetme"},
		{"DELETE", "/api/v1/secret-keys/" + kid, `{"revokedReasn":"typo"}`, "revokedReasn"},
		{"POST", "/api/v1/secret-keys/bulk", `{"defaults":{"providerSettingIds":["` + pid + `"],"costLimitInUsdLifetme":1},"students":[{"userId":"s9","name":"Zed"}]}`, "costLimitInUsdLifetme"},
		{"POST", "/api/v1/secret-keys/bulk-update", `{"keyIds":["` + kid + `"],"set":{"costLimitInUsdLifetme":9}}`, "costLimitInUsdLifetme"},
		{"POST", "/api/v1/secret-keys/bulk-revoke", `{"keyIds":["` + kid + `"],"reasn":"x"}`, "reasn"},
		{"POST", "/api/v1/users", `{"userId":"s2","name":"Bo","ttl":"never","costLimitInUsdd":1}`, "costLimitInUsdd"},
		{"PATCH", "/api/v1/users/s1", `{"costLimitInUsdd":1}`, "costLimitInUsdd"},
		{"PATCH", "/api/v1/organization", `{"costLimitInUsdLifetime":5}`, "costLimitInUsdLifetime"},
		{"POST", "/api/v1/reporting/events", `{"start":0,"end":60,"increment":60,"keyIds":["` + kid + `"],"groupby":["model"]}`, "groupby"},
		{"POST", "/api/v1/reporting/events-by-day", `{"start":0,"end":1,"keyIds":["` + kid + `"],"incremnt":60}`, "incremnt"},
		{"POST", "/key/generate", `{"models":["gpt-4o-mini"],"max_budgett":1}`, "max_budgett"},
		{"POST", "/key/generate", `{"models":["gpt-4o-mini"],"rpm_limit":10}`, "rpm_limit"}, // LiteLLM's, not supported: refused
		{"POST", "/user/new", `{"user_id":"u9","max_budgt":1}`, "max_budgt"},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path+" "+rt.field, func(t *testing.T) {
			status, out := call(t, rt.method, rt.path, rt.body)
			e, _ := out["error"].(map[string]any)
			msg, _ := e["message"].(string)
			if status != 400 || e["code"] != "invalid_request" || !strings.Contains(msg, rt.field) {
				t.Errorf("status %d, body %v; want 400 invalid_request naming %q", status, out, rt.field)
			}
		})
	}
	if after := snapshot(t); after != before {
		t.Errorf("refused requests changed something:\nbefore %s\nafter  %s", before, after)
	}

	t.Run("metadata and allowedModels are checked", func(t *testing.T) {
		deep := `{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}`
		for _, tc := range []struct{ body, field, says string }{
			{`{"name":"m","providerSettingIds":["` + pid + `"],"metadata":` + deep + `}`, "metadata", "nested"},
			{`{"name":"m","providerSettingIds":["` + pid + `"],"metadata":{"x":"` + strings.Repeat("a", 9000) + `"}}`, "metadata", "bytes"},
			{`{"name":"m","providerSettingIds":["` + pid + `"],"metadata":{"n":12345678901234567890}}`, "metadata", "2^53"},
			{`{"name":"m","providerSettingIds":["` + pid + `"],"allowedModels":["gpt-4o-mini","gtp-4o"]}`, "allowedModels", `"gtp-4o"`},
		} {
			status, out := call(t, "POST", "/api/v1/secret-keys", tc.body)
			e, _ := out["error"].(map[string]any)
			msg, _ := e["message"].(string)
			if status != 400 || e["param"] != tc.field || !strings.Contains(msg, tc.says) {
				t.Errorf("%.80s: %d %.300v; want 400 on %s saying %q", tc.body, status, out, tc.field, tc.says)
			}
		}
		// An alias may be allowed by name; a priced model and a dated name pass.
		mustOK(t, "POST", "/api/v1/secret-keys", `{"name":"ok","providerSettingIds":["`+pid+`"],"allowedModels":["gpt-3.5-turbo","gpt-4o-mini-2024-07-18"],"aliases":{"gpt-3.5-turbo":"gpt-4o-mini"},"metadata":{"a":{"b":{"c":{"d":1}}}}}`)
	})
}
