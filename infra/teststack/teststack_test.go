package teststack

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/proxy"
)

// TestStart: a stack with a provider setting and the admin API serves a
// chat completion through the proxy with the upstream's key from Secrets,
// and the admin API (behind its key) lists that setting; every proxy
// instance serves the same store.
func TestStart(t *testing.T) {
	var configured bool
	e := Start(t, Options{
		Upstream:   fakeupstream.Options{APIKey: "sk-upstream", Interval: -1, Chunks: 2},
		ProviderID: "p1", AdminKey: "adm-key", Proxies: 2,
		Proxy: func(*proxy.Config) { configured = true },
	})
	if !configured || len(e.Proxies) != 2 || e.Proxy != e.Proxies[0] || e.Admin == nil || e.AdminHandler == nil {
		t.Fatalf("env: configured %v, %d proxies, admin %v", configured, len(e.Proxies), e.Admin != nil)
	}
	id, plain := apikey.Generate()
	if err := e.Store.CreateKey(context.Background(), &apikey.Key{ID: id, Name: "k", Hash: apikey.Hash(plain),
		SettingIDs: []string{"p1"}, CreatedAt: time.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	for i, p := range e.Proxies {
		req, _ := http.NewRequest("POST", p.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+plain)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("proxy %d: %d %s", i, res.StatusCode, b)
		}
	}
	e.Wait()
	if n := len(e.Upstream.Requests()); n != 2 {
		t.Errorf("upstream saw %d requests, want 2", n)
	}

	req, _ := http.NewRequest("GET", e.Admin.URL+"/api/v1/providers", nil)
	req.Header.Set("Authorization", "Bearer adm-key")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"id":"p1"`) {
		t.Errorf("providers: %d %s", res.StatusCode, b)
	}
}
