package admin

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/provider"
)

const providerSecret = "sk-proj-UPSTREAM-very-secret-0123456789"

func TestProviderCreateListPatch(t *testing.T) {
	e := newEnv(t)
	var bodies []string
	check := func(rec interface{ String() string }) {
		bodies = append(bodies, rec.String())
	}

	rec := e.do(t, "POST", "/api/v1/providers",
		`{"name":"OpenAI main","provider":"openai","apiKey":"`+providerSecret+`"}`)
	var created provider.Setting
	decode(t, rec, 200, &created)
	check(rec.Body)
	if created.ID == "" || created.Name != "OpenAI main" || created.Provider != "openai" ||
		created.CreatedAt != testNow.Unix() || created.UpdatedAt != testNow.Unix() {
		t.Fatalf("created = %+v", created)
	}
	if created.AllowedModels == nil || len(created.AllowedModels) != 0 {
		t.Errorf("allowedModels = %#v, want []", created.AllowedModels)
	}
	if !strings.Contains(rec.Body.String(), `"allowedModels":[]`) {
		t.Errorf("allowedModels not [] in %s", rec.Body)
	}
	// The secret went to Secrets Manager under the prefix + id, and the
	// setting names it by the returned ARN.
	if len(e.secrets.puts) != 1 || e.secrets.puts[0].name != "stipend/provider/"+created.ID ||
		e.secrets.puts[0].value != providerSecret {
		t.Fatalf("puts = %+v", e.secrets.puts)
	}
	stored := e.store.providers[created.ID]
	if !strings.HasPrefix(stored.SecretID, "arn:aws:secretsmanager:") || !strings.Contains(stored.SecretID, created.ID) {
		t.Errorf("SecretID = %q", stored.SecretID)
	}

	rec = e.do(t, "POST", "/api/v1/providers",
		`{"name":"Azure","provider":"azure","apiKey":"az-key","baseUrl":"https://x.openai.azure.com","apiVersion":"2024-10-21","deployments":{"gpt-4o":"class-4o"},"allowedModels":["gpt-4o"]}`)
	var azure provider.Setting
	decode(t, rec, 200, &azure)
	check(rec.Body)
	if azure.BaseURL != "https://x.openai.azure.com" || len(azure.AllowedModels) != 1 ||
		azure.APIVersion != "2024-10-21" || azure.Deployments["gpt-4o"] != "class-4o" ||
		e.store.providers[azure.ID].Deployments["gpt-4o"] != "class-4o" {
		t.Errorf("azure = %+v", azure)
	}

	rec = e.do(t, "GET", "/api/v1/providers", "")
	var list []provider.Setting
	decode(t, rec, 200, &list)
	check(rec.Body)
	if len(list) != 2 {
		t.Fatalf("list = %+v", list)
	}

	// PATCH changes only the fields present.
	rec = e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"name":"Renamed"}`)
	var patched provider.Setting
	decode(t, rec, 200, &patched)
	check(rec.Body)
	if patched.Name != "Renamed" || patched.Provider != "openai" || patched.CreatedAt != created.CreatedAt {
		t.Errorf("patched = %+v", patched)
	}
	if len(e.secrets.puts) != 2 { // create openai + create azure; the rename wrote no secret
		t.Errorf("puts after rename = %d", len(e.secrets.puts))
	}
	if got := e.store.providers[created.ID].SecretID; got != stored.SecretID {
		t.Errorf("SecretID changed by rename: %q", got)
	}

	// A new apiKey is a new version of the same secret.
	rec = e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"apiKey":"`+providerSecret+`-v2","allowedModels":["gpt-4o-mini"]}`)
	decode(t, rec, 200, &patched)
	check(rec.Body)
	last := e.secrets.puts[len(e.secrets.puts)-1]
	if last.name != "stipend/provider/"+created.ID || last.value != providerSecret+"-v2" {
		t.Errorf("last put = %+v", last)
	}
	if patched.Name != "Renamed" || len(patched.AllowedModels) != 1 || patched.AllowedModels[0] != "gpt-4o-mini" {
		t.Errorf("patched = %+v", patched)
	}

	wantError(t, e.do(t, "PATCH", "/api/v1/providers/nope", `{"name":"x"}`), 404, apierror.CodeNotFound, "")
	wantError(t, e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"provider":"anthropic"}`), 400, apierror.CodeInvalidRequest, "provider")
	wantError(t, e.do(t, "PATCH", "/api/v1/providers/"+azure.ID, `{"baseUrl":""}`), 400, apierror.CodeInvalidRequest, "baseUrl")
	wantError(t, e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"apiKey":""}`), 400, apierror.CodeInvalidRequest, "apiKey")
	wantError(t, e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"apiVersion":"2024-10-21"}`), 400, apierror.CodeInvalidRequest, "apiVersion")
	wantError(t, e.do(t, "PATCH", "/api/v1/providers/"+azure.ID, `{"apiVersion":""}`), 400, apierror.CodeInvalidRequest, "apiVersion")
	// Ceilings are set, shown and removed with 0.
	rec = e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"requestsPerMinute":500,"tokensPerMinute":200000}`)
	decode(t, rec, 200, &patched)
	if st := e.store.providers[created.ID]; st.RequestsPerMinute != 500 || st.TokensPerMinute != 200000 || !strings.Contains(rec.Body.String(), `"requestsPerMinute":500`) {
		t.Errorf("ceilings: %s", rec.Body)
	}
	decode(t, e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"requestsPerMinute":0}`), 200, &patched)
	if st := e.store.providers[created.ID]; st.RequestsPerMinute != 0 || st.TokensPerMinute != 200000 {
		t.Errorf("ceilings after removing one: %+v", st)
	}
	// PATCH of deployments replaces them and is shown back.
	rec = e.do(t, "PATCH", "/api/v1/providers/"+azure.ID, `{"deployments":{"gpt-4o-mini":"mini"},"apiVersion":"2024-06-01"}`)
	decode(t, rec, 200, &patched)
	if patched.APIVersion != "2024-06-01" || len(patched.Deployments) != 1 || patched.Deployments["gpt-4o-mini"] != "mini" {
		t.Errorf("patched azure = %+v", patched)
	}

	for _, b := range bodies {
		if strings.Contains(b, "sk-proj-UPSTREAM") || strings.Contains(b, "az-key") || strings.Contains(b, "secretsmanager") {
			t.Errorf("a secret or its id leaked: %s", b)
		}
	}
	if strings.Contains(e.logs.String(), "sk-proj-UPSTREAM") {
		t.Errorf("secret in logs: %s", e.logs)
	}
}

func TestProviderListEmpty(t *testing.T) {
	e := newEnv(t)
	rec := e.do(t, "GET", "/api/v1/providers", "")
	decode(t, rec, 200, nil)
	if strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("empty list = %s", rec.Body)
	}
}

func TestProviderValidation(t *testing.T) {
	tests := []struct {
		name, body, param, msg string
	}{
		{"missing name", `{"provider":"openai","apiKey":"k"}`, "name", "name is required"},
		{"blank name", `{"name":"  ","provider":"openai","apiKey":"k"}`, "name", "name is required"},
		{"name not a string", `{"name":5,"provider":"openai","apiKey":"k"}`, "name", "name must be"},
		{"missing provider", `{"name":"n","apiKey":"k"}`, "provider", "provider must be one of"},
		{"unknown provider", `{"name":"n","provider":"cohere","apiKey":"k"}`, "provider", "provider must be one of"},
		{"missing apiKey", `{"name":"n","provider":"openai"}`, "apiKey", "apiKey is required"},
		{"apiKey not a string", `{"name":"n","provider":"openai","apiKey":123}`, "apiKey", "apiKey must be"},
		{"azure without baseUrl", `{"name":"n","provider":"azure","apiKey":"k","apiVersion":"2024-10-21"}`, "baseUrl", "baseUrl is required"},
		{"azure without apiVersion", `{"name":"n","provider":"azure","apiKey":"k","baseUrl":"https://x.openai.azure.com"}`, "apiVersion", "apiVersion is required"},
		{"azure bad apiVersion", `{"name":"n","provider":"azure","apiKey":"k","baseUrl":"https://x.openai.azure.com","apiVersion":"latest"}`, "apiVersion", "apiVersion is required"},
		{"azure baseUrl with /openai", `{"name":"n","provider":"azure","apiKey":"k","baseUrl":"https://x.openai.azure.com/openai/v1","apiVersion":"2024-10-21"}`, "baseUrl", "resource endpoint"},
		{"azure blank deployment", `{"name":"n","provider":"azure","apiKey":"k","baseUrl":"https://x.openai.azure.com","apiVersion":"2024-10-21","deployments":{"gpt-4o":""}}`, "deployments", "deployment names"},
		{"deployments not an object", `{"name":"n","provider":"azure","apiKey":"k","baseUrl":"https://x.openai.azure.com","apiVersion":"2024-10-21","deployments":["a"]}`, "deployments", "deployments must be"},
		{"apiVersion on openai", `{"name":"n","provider":"openai","apiKey":"k","apiVersion":"2024-10-21"}`, "apiVersion", "only to azure"},
		{"deployments on anthropic", `{"name":"n","provider":"anthropic","apiKey":"k","deployments":{"a":"b"}}`, "deployments", "only to azure"},
		{"negative ceiling", `{"name":"n","provider":"openai","apiKey":"k","requestsPerMinute":-1}`, "requestsPerMinute", "from 0"},
		{"fractional ceiling", `{"name":"n","provider":"openai","apiKey":"k","tokensPerMinute":1.5}`, "tokensPerMinute", "whole number"},
		{"unknown field", `{"name":"n","provider":"azure","apiKey":"k","baseUrl":"https://x.openai.azure.com","apiVersion":"2024-10-21","deployment":{"a":"b"}}`, "deployment", "deployment"},
		{"compatible without baseUrl", `{"name":"n","provider":"openai-compatible","apiKey":"k"}`, "baseUrl", "baseUrl is required"},
		{"relative baseUrl", `{"name":"n","provider":"openai-compatible","apiKey":"k","baseUrl":"/v1"}`, "baseUrl", "absolute http(s) URL"},
		{"ftp baseUrl", `{"name":"n","provider":"openai","apiKey":"k","baseUrl":"ftp://x.com/v1"}`, "baseUrl", "absolute http(s) URL"},
		{"baseUrl with credentials", `{"name":"n","provider":"openai","apiKey":"k","baseUrl":"https://u:p@x.com/v1"}`, "baseUrl", "credentials"},
		{"baseUrl with query", `{"name":"n","provider":"azure","apiKey":"k","baseUrl":"https://x.com/v1?api-version=1"}`, "baseUrl", "query"},
		{"allowedModels not a list", `{"name":"n","provider":"openai","apiKey":"k","allowedModels":"gpt-4o"}`, "allowedModels", "allowedModels must be"},
		{"allowedModels with blank", `{"name":"n","provider":"openai","apiKey":"k","allowedModels":[""]}`, "allowedModels", "non-empty model names"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			b := wantError(t, e.do(t, "POST", "/api/v1/providers", tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if !strings.Contains(b.Error.Message, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", b.Error.Message, tc.msg)
			}
			if len(e.secrets.puts) != 0 || len(e.store.providers) != 0 {
				t.Errorf("a rejected request stored something")
			}
		})
	}
}

func TestProviderSecretsUnavailable(t *testing.T) {
	e := newEnv(t)
	e.secrets.fail = errors.New("secretsmanager: AccessDenied")
	rec := e.do(t, "POST", "/api/v1/providers", `{"name":"n","provider":"openai","apiKey":"`+providerSecret+`"}`)
	wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
	if strings.Contains(rec.Body.String(), "AccessDenied") || len(e.store.providers) != 0 {
		t.Errorf("body %s, providers %d", rec.Body, len(e.store.providers))
	}
}

func TestProviderPrices(t *testing.T) {
	e := newEnv(t)
	var openai struct{ ID string }
	decode(t, e.do(t, "POST", "/api/v1/providers", `{"name":"o","provider":"openai","apiKey":"k"}`), 200, &openai)
	keyBody := `{"name":"k","providerSettingIds":["` + openai.ID + `"],"allowedModels":["llama-3.1-8b-instruct"]}`
	// Before any setting prices it, a key may not name the model.
	wantError(t, e.do(t, "POST", "/api/v1/secret-keys", keyBody), 400, apierror.CodeInvalidRequest, "allowedModels")
	rosterBody := `{"defaults": {"providerSettingIds": ["` + openai.ID + `"], "allowedModels": ["llama-3.1-8b-instruct"]}, "students": [{"userId": "s1", "name": "A"}]}`
	wantProblems(t, e.post(t, "/api/v1/secret-keys/bulk", "application/json", "", rosterBody))

	rec := e.do(t, "POST", "/api/v1/providers", `{"name":"vllm","provider":"openai-compatible","apiKey":"k","baseUrl":"http://gpu:8000/v1",
		"prices":{"llama-3.1-8b-instruct":{"input":0.10,"output":0.2,"cachedInput":0.05},"gpt-4o-mini":{"input":1e-1,"output":0.000001}}}`)
	var created struct {
		ID     string
		Prices map[string]map[string]json.Number
	}
	decode(t, rec, 200, &created)
	// Stored as integers: pico-dollars per token (micro-dollars per 1M tokens).
	stored := e.store.providers[created.ID].Prices
	if stored["llama-3.1-8b-instruct"] != (provider.Rates{Input: 100_000, CachedInput: 50_000, CacheWrite: 100_000, Output: 200_000}) ||
		stored["gpt-4o-mini"].Output != 1 {
		t.Fatalf("stored prices %+v", stored)
	}
	// Shown back as the exact decimals.
	if got := created.Prices["llama-3.1-8b-instruct"]; got["input"] != "0.1" || got["output"] != "0.2" || got["cachedInput"] != "0.05" {
		t.Errorf("shown prices %s", rec.Body)
	}
	if got := created.Prices["gpt-4o-mini"]["output"]; got != "0.000001" {
		t.Errorf("shown output %q", got)
	}
	// Now a key may name it, alone or through a roster.
	decode(t, e.do(t, "POST", "/api/v1/secret-keys", keyBody), 200, nil)
	e.roster(t, rosterBody)

	// PATCH replaces the prices; {} clears them.
	rec = e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"prices":{}}`)
	decode(t, rec, 200, nil)
	if len(e.store.providers[created.ID].Prices) != 0 || strings.Contains(rec.Body.String(), "prices") {
		t.Errorf("prices not cleared: %s", rec.Body)
	}

	for _, bad := range []string{
		`{"m":{"input":-0.1,"output":1}}`,
		`{"m":{"input":0.0000001,"output":1}}`,
		`{"m":{"input":"0.1","output":1}}`,
		`{"m":{"input":1}}`,
		`{"m":{"input":1,"output":1,"cachedInput":2}}`,
		`{"m":{"input":1e400,"output":1}}`,
		`{"m":{"input":1001,"output":1}}`,
		`{"m":{"input":1,"output":1,"cached":0.5}}`,
		`["m"]`,
	} {
		wantError(t, e.do(t, "PATCH", "/api/v1/providers/"+created.ID, `{"prices":`+bad+`}`), 400, apierror.CodeInvalidRequest, "prices")
	}
}

// TestAzureAPIVersionMatchesPattern checks validAzureAPIVersion accepts
// exactly what the pattern it replaced matches, on edge cases and random
// strings over the characters the pattern tells apart.
func TestAzureAPIVersionMatchesPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^20[0-9]{2}-[01][0-9]-[0-3][0-9](-preview)?$`)
	cases := []string{"", "2024-10-21", "2024-10-21-preview", "2024-10-21-previe", "2024-10-21preview", "2024-1-21",
		"1024-10-21", "2124-10-21", "2024-20-21", "2024-19-39", "2024-10-41", "2024-10-21-preview-preview",
		"-preview", "2024-10-21 ", "2024/10/21", "2099-19-39-preview", "20a4-10-21", "2024-10-2x"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := []byte("2024-10-21-preview")
		if rng.IntN(2) == 0 {
			b = b[:10]
		}
		for range 1 + rng.IntN(2) {
			b[rng.IntN(len(b))] = "0123456789-ap /"[rng.IntN(15)]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		if got, want := validAzureAPIVersion(s), pattern.MatchString(s); got != want {
			t.Errorf("%q: %v, the pattern says %v", s, got, want)
		}
	}
}
