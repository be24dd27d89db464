package secrecy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/teststack"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/proxy"
)

// The known secrets. Their tails are distinctive: no id, hash or timestamp
// contains them by chance.
const (
	providerKey = "sk-proj-LEAKTEST-good-provider-key-7QXJ9WZKV4"
	wrongKey    = "sk-proj-LEAKTEST-stale-provider-key-3MPLR8TYHC"
	adminKey    = "adm-LEAKTEST-admin-key-5GNBV2XQDZ"
)

// vault is the Secrets Manager stand-in both handlers share.
type vault struct {
	mu sync.Mutex
	m  map[string]string
}

func (v *vault) Put(_ context.Context, name, value string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m["arn:"+name] = value
	return "arn:" + name, nil
}

func (v *vault) Get(_ context.Context, id string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.m[id]
	if !ok {
		return "", fmt.Errorf("secret %s not found", id)
	}
	return s, nil
}

// logBuffer collects the slog output of both handlers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// exchange is one request a client made and what it got back.
type exchange struct {
	label, method, url string
	status             int
	header             http.Header
	body               string
	// mayShow is the one secret this answer may carry on purpose: the
	// plaintext of a key just created, shown once.
	mayShow string
}

// openaiUpstream answers like OpenAI: the good key is served by the fake
// upstream, any other gets OpenAI's 401, which names the key it was sent by
// its first and last characters.
func openaiUpstream(good string, fake http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if got != good {
			masked := got
			if len(got) > 12 {
				masked = got[:8] + strings.Repeat("*", len(got)-12) + got[len(got)-4:]
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`, masked)
			return
		}
		fake.ServeHTTP(w, r)
	})
}

// typo changes one character in the middle of a key's secret part (its
// last character carries padding bits, so it may not change the key).
func typo(k string) string {
	i := len(k) - 10
	c := byte('b')
	if k[i] == c {
		c = 'c'
	}
	return k[:i] + string(c) + k[i+1:]
}

func TestSecretsNeverLeave(t *testing.T) {
	secrets := &vault{m: map[string]string{}}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st := teststack.Start(t, teststack.Options{
		Table: "secrecy", Secrets: secrets, Strikes: true,
		Upstream:     fakeupstream.Options{Interval: -1, Chunks: 3},
		WrapUpstream: func(fake http.Handler) http.Handler { return openaiUpstream(providerKey, fake) },
		Proxy:        func(c *proxy.Config) { c.KeyTTL, c.Log = time.Millisecond, log },
		AdminKey:     adminKey,
		Admin:        func(c *admin.Config) { c.SecretPrefix, c.Log = "stipend/secrecy/", log },
	})
	px, adm := st.Proxy, st.Admin
	upURL := st.UpstreamURL

	var seen []*exchange
	do := func(label, method, url string, header map[string]string, body string) *exchange {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		x := &exchange{label: label, method: method, url: url, status: resp.StatusCode, header: resp.Header, body: string(b)}
		seen = append(seen, x)
		return x
	}
	asAdmin := map[string]string{"Authorization": "Bearer " + adminKey}
	want := func(x *exchange, status int) {
		t.Helper()
		if x.status != status {
			t.Fatalf("%s: %d %s, want %d", x.label, x.status, x.body, status)
		}
	}
	idOf := func(x *exchange, field string) string {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(x.body), &v); err != nil {
			t.Fatalf("%s: %v in %s", x.label, err, x.body)
		}
		s, _ := v[field].(string)
		return s
	}

	// The admin registers a good and a stale provider key, with typos on the way.
	want(do("provider without auth", "POST", adm.URL+"/api/v1/providers", nil,
		`{"name":"p","provider":"openai","apiKey":"`+providerKey+`"}`), 401)
	want(do("provider, admin key mistyped", "POST", adm.URL+"/api/v1/providers",
		map[string]string{"Authorization": "Bearer " + adminKey + "x"}, `{"name":"p","provider":"openai","apiKey":"`+providerKey+`"}`), 401)
	want(do("provider, admin key in x-api-key", "GET", adm.URL+"/api/v1/providers", map[string]string{"X-Api-Key": adminKey}, ""), 401)
	want(do("provider, misspelt field", "POST", adm.URL+"/api/v1/providers", asAdmin,
		`{"name":"p","provider":"openai","apikey":"`+providerKey+`","baseUrl":"`+upURL+`/v1"}`), 400)
	want(do("provider, key in the wrong field", "POST", adm.URL+"/api/v1/providers", asAdmin,
		`{"name":"p","provider":"`+providerKey+`","apiKey":"`+providerKey+`"}`), 400)
	want(do("provider, key as the base URL", "POST", adm.URL+"/api/v1/providers", asAdmin,
		`{"name":"p","provider":"openai","apiKey":"x","baseUrl":"`+providerKey+`"}`), 400)
	want(do("provider, broken JSON", "POST", adm.URL+"/api/v1/providers", asAdmin,
		`{"name":"p","provider":"openai","apiKey":"`+providerKey+`",`), 400)
	good := do("provider", "POST", adm.URL+"/api/v1/providers", asAdmin,
		`{"name":"good","provider":"openai","apiKey":"`+providerKey+`","baseUrl":"`+upURL+`/v1"}`)
	want(good, 200)
	goodID := idOf(good, "id")
	stale := do("stale provider", "POST", adm.URL+"/api/v1/providers", asAdmin,
		`{"name":"stale","provider":"openai","apiKey":"`+wrongKey+`","baseUrl":"`+upURL+`/v1"}`)
	want(stale, 200)
	staleID := idOf(stale, "id")
	want(do("provider key rotated", "PATCH", adm.URL+"/api/v1/providers/"+goodID, asAdmin, `{"apiKey":"`+providerKey+`"}`), 200)
	want(do("providers listed", "GET", adm.URL+"/api/v1/providers", asAdmin, ""), 200)

	// Keys: one logging bodies on the good provider, one on the stale.
	newKey := func(name, setting string) (id, plain string) {
		x := do("create key "+name, "POST", adm.URL+"/api/v1/secret-keys", asAdmin,
			`{"name":"`+name+`","providerSettingIds":["`+setting+`"],"shouldLogRequest":true,"shouldLogResponse":true,"costLimitInUsdLifetime":1}`)
		want(x, 200)
		id, plain = idOf(x, "keyId"), idOf(x, "key")
		if plain == "" || id == "" {
			t.Fatalf("create key: %s", x.body)
		}
		x.mayShow = plain
		return id, plain
	}
	goodKeyID, goodKey := newKey("student", goodID)
	staleKeyID, staleKey := newKey("stale", staleID)
	proxyKeys := []string{goodKey, staleKey}
	want(do("key, misspelt limit", "PATCH", adm.URL+"/api/v1/secret-keys/"+goodKeyID, asAdmin, `{"costLimitInUsdLifetme":2}`), 400)
	want(do("key, proxy key as a name", "PATCH", adm.URL+"/api/v1/secret-keys/"+goodKeyID, asAdmin, `{"name":5,"tags":["`+goodKey+`"]}`), 400)
	want(do("admin API with a proxy key", "GET", adm.URL+"/api/v1/secret-keys", map[string]string{"Authorization": "Bearer " + goodKey}, ""), 401)
	want(do("unknown admin route", "GET", adm.URL+"/api/v1/secret-key/"+goodKey, asAdmin, ""), 404)
	want(do("wrong method", "DELETE", adm.URL+"/api/v1/providers/"+providerKey, asAdmin, ""), 405)
	do("key read by its plaintext", "GET", adm.URL+"/api/v1/secret-keys/"+goodKey, asAdmin, "")
	do("key patched by its plaintext", "PATCH", adm.URL+"/api/v1/secret-keys/"+goodKey, asAdmin, `{"name":"x"}`)
	do("events by a plaintext key", "GET", adm.URL+"/api/v1/events?keyIds="+goodKey, asAdmin, "")
	do("events with a key as cursor", "GET", adm.URL+"/api/v1/events?all=true&cursor="+goodKey, asAdmin, "")
	do("user named by a provider key", "GET", adm.URL+"/api/v1/users/"+providerKey, asAdmin, "")

	// Proxy traffic.
	chat := func(stream bool, content string) string {
		return fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"messages":[{"role":"user","content":%q}]}`, stream, content)
	}
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	want(do("chat", "POST", px.URL+"/v1/chat/completions", bearer(goodKey), chat(false, "hello")), 200)
	want(do("chat streamed", "POST", px.URL+"/v1/chat/completions", bearer(goodKey), chat(true, "hello again")), 200)
	want(do("chat with the key in x-api-key", "POST", px.URL+"/v1/chat/completions", map[string]string{"X-Api-Key": goodKey}, chat(false, "hi")), 200)
	want(do("upstream answers 401", "POST", px.URL+"/v1/chat/completions", bearer(staleKey), chat(false, "hi")), 502)
	want(do("upstream answers 401, streamed", "POST", px.URL+"/v1/chat/completions", bearer(staleKey), chat(true, "hi")), 502)
	do("upstream error", "POST", px.URL+"/v1/chat/completions", bearer(goodKey), chat(false, "fake:status=500"))
	want(do("bad JSON", "POST", px.URL+"/v1/chat/completions", bearer(goodKey), `{"model":`), 400)
	want(do("unknown model", "POST", px.URL+"/v1/chat/completions", bearer(goodKey), `{"model":"gpt-9","messages":[]}`), 400)
	want(do("wrong type", "POST", px.URL+"/v1/chat/completions", bearer(goodKey), `{"model":"gpt-4o-mini","messages":"x","stream":"yes"}`), 400)
	want(do("proxy key mistyped", "POST", px.URL+"/v1/chat/completions", bearer(typo(goodKey)), chat(false, "hi")), 401)
	want(do("proxy key with a space", "POST", px.URL+"/v1/chat/completions", bearer(goodKey+" "+goodKey), chat(false, "hi")), 401)
	want(do("admin key at the proxy", "POST", px.URL+"/v1/chat/completions", bearer(adminKey), chat(false, "hi")), 401)
	want(do("provider key at the proxy", "POST", px.URL+"/v1/chat/completions", bearer(providerKey), chat(false, "hi")), 401)
	want(do("unknown proxy route", "POST", px.URL+"/v1/"+goodKey, bearer(goodKey), chat(false, "hi")), 404)
	do("provider key as a model", "POST", px.URL+"/v1/chat/completions", bearer(goodKey), `{"model":"`+providerKey+`","messages":[]}`)
	want(do("key info", "GET", px.URL+"/v1/key/info", bearer(goodKey), ""), 200)
	want(do("models", "GET", px.URL+"/v1/models", bearer(goodKey), ""), 200)
	modID, modKey := newKey("moderated", goodID)
	proxyKeys = append(proxyKeys, modKey)
	want(do("moderation on, one strike", "PATCH", adm.URL+"/api/v1/secret-keys/"+modID, asAdmin, `{"moderation":true,"moderationStrikeLimit":1}`), 200)
	want(do("flagged", "POST", px.URL+"/v1/chat/completions", bearer(modKey), chat(false, "fake:flag this")), 400)
	want(do("suspended", "POST", px.URL+"/v1/chat/completions", bearer(modKey), chat(true, "hi")), 401)
	want(do("suspended key read", "GET", adm.URL+"/api/v1/secret-keys/"+modID, asAdmin, ""), 200)
	want(do("suspension lifted", "PATCH", adm.URL+"/api/v1/secret-keys/"+modID, asAdmin, `{"suspended":false}`), 200)
	want(do("revoke", "PATCH", adm.URL+"/api/v1/secret-keys/"+staleKeyID, asAdmin, `{"revoked":true,"revokedReason":"leak test"}`), 200)
	want(do("revoked key", "POST", px.URL+"/v1/chat/completions", bearer(staleKey), chat(false, "hi")), 401)

	// What the admin reads back.
	want(do("key read", "GET", adm.URL+"/api/v1/secret-keys/"+goodKeyID, asAdmin, ""), 200)
	want(do("keys listed", "GET", adm.URL+"/api/v1/secret-keys", asAdmin, ""), 200)
	events := do("events", "GET", adm.URL+"/api/v1/events?all=true&limit=100", asAdmin, "")
	want(events, 200)
	audit := do("audit", "GET", adm.URL+"/api/v1/audit?limit=100", asAdmin, "")
	want(audit, 200)
	if !strings.Contains(events.body, "hello again") || strings.Count(events.body, `"keyId"`) < 5 {
		t.Fatalf("the events should hold the logged bodies of every request: %.500s", events.body)
	}
	if strings.Count(audit.body, `"action"`) < 8 {
		t.Fatalf("the audit trail should hold every change: %.500s", audit.body)
	}
	time.Sleep(50 * time.Millisecond) // let any log line after a response land

	type needle struct{ what, s string }
	var needles []needle
	for _, s := range []struct{ what, v string }{{"provider key", providerKey}, {"stale provider key", wrongKey}, {"admin key", adminKey}} {
		// The last 4 characters are what OpenAI's masked "sk-proj-****ZKV4" shows.
		needles = append(needles, needle{s.what, s.v}, needle{s.what + " tail", s.v[len(s.v)-4:]})
	}
	for _, k := range proxyKeys {
		_, secret, _ := strings.Cut(k, "_")
		needles = append(needles, needle{"proxy key", k}, needle{"proxy key's secret part", secret[:12]}, needle{"proxy key tail", k[len(k)-8:]})
	}
	check := func(where, text, allowed string) {
		t.Helper()
		if allowed != "" {
			text = strings.ReplaceAll(text, allowed, "<shown once>")
		}
		for _, n := range needles {
			if i := strings.Index(text, n.s); i >= 0 {
				lo, hi := max(0, i-120), min(len(text), i+len(n.s)+40)
				t.Errorf("%s holds the %s: …%s…", where, n.what, text[lo:hi])
			}
		}
	}
	for _, x := range seen {
		var hdr strings.Builder
		_ = x.header.Write(&hdr)
		check(fmt.Sprintf("the answer to %q (%s %s, %d)", x.label, x.method, x.url, x.status), hdr.String()+"\n"+x.body, x.mayShow)
	}
	logText := logs.String()
	for i, line := range strings.Split(logText, "\n") {
		check(fmt.Sprintf("log line %d", i+1), line, "")
	}
	if !strings.Contains(logText, "provider") {
		t.Errorf("the handlers logged nothing about the failures; the log scan proves nothing:\n%s", logText)
	}
	t.Logf("scanned %d answers, %d log lines, %d bytes of events, %d bytes of audit entries",
		len(seen), strings.Count(logText, "\n"), len(events.body), len(audit.body))
}
