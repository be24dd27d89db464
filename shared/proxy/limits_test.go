package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/user"
)

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`

func TestLimitsRejectAndHeaders(t *testing.T) {
	no := false
	tests := []struct {
		name       string
		mutate     func(*apikey.Key)
		body       string
		calls      int // requests sent; the last one is checked
		status     int
		code       string
		retryAfter bool
	}{
		{"spend that cannot fit", func(k *apikey.Key) { k.CostLimitLifetime = money.Micro; k.LowerMaxTokens = &no }, chatBody, 1, 429, "insufficient_quota", false},
		{"too little left even to lower", func(k *apikey.Key) { k.CostLimitLifetime = 100 }, chatBody, 1, 429, "insufficient_quota", false},
		{"rate limit", func(k *apikey.Key) { k.RateLimitOverTime, k.RateLimitUnit = 2, "m" }, chatBody, 3, 429, "rate_limit_exceeded", true},
		{"model rpm", func(k *apikey.Key) { k.ModelLimits = map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 1}} }, chatBody, 2, 429, "rate_limit_exceeded", true},
		{"model tpm below one request", func(k *apikey.Key) { k.ModelLimits = map[string]apikey.ModelLimit{"gpt-4o-mini": {TPM: 10}} }, chatBody, 1, 429, "rate_limit_exceeded", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, jsonBody(t, "chat.json"), tt.mutate)
			var resp *http.Response
			for i := 0; i < tt.calls; i++ {
				resp = e.do("POST", "/v1/chat/completions", "Bearer "+e.key, tt.body)
				if i < tt.calls-1 {
					if resp.StatusCode != 200 {
						t.Fatalf("call %d: status %d", i, resp.StatusCode)
					}
					e.store.waitEvent(t)
				}
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Retry-After"); (got != "") != tt.retryAfter {
				t.Fatalf("Retry-After = %q", got)
			} else if tt.retryAfter {
				if n, err := strconv.Atoi(got); err != nil || n < 1 || n > 60 {
					t.Fatalf("Retry-After = %q, want 1..60 seconds", got)
				}
			}
			if got := errorCode(t, resp); got != tt.code {
				t.Fatalf("code = %q, want %q", got, tt.code)
			}
			e.store.mu.Lock()
			defer e.store.mu.Unlock()
			if len(e.store.open) != 0 {
				t.Fatalf("%d reservations left open", len(e.store.open))
			}
		})
	}
}

func TestRateLimitHeaders(t *testing.T) {
	e := newEnv(t, jsonBody(t, "chat.json"), func(k *apikey.Key) {
		k.RateLimitOverTime, k.RateLimitUnit = 10, "m"
		k.CostLimitLifetime = money.Dollar
		k.ModelLimits = map[string]apikey.ModelLimit{"gpt-4o-mini": {TPM: 100000}}
	})
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := resp.Header
	if h.Get("X-Ratelimit-Limit-Requests") != "10" || h.Get("X-Ratelimit-Remaining-Requests") != "9" || h.Get("X-Ratelimit-Reset-Requests") == "" {
		t.Fatalf("request headers: %v", h)
	}
	if h.Get("X-Ratelimit-Limit-Tokens") != "100000" || h.Get("X-Ratelimit-Remaining-Tokens") == "" {
		t.Fatalf("token headers: %v", h)
	}
	left, err := money.Parse(h.Get("X-Stipend-Budget-Remaining"))
	if err != nil || left <= 0 || left >= money.Dollar {
		t.Fatalf("budget remaining %q", h.Get("X-Stipend-Budget-Remaining"))
	}
	ev := e.store.waitEvent(t)
	// After settling, the key's lifetime counter holds exactly the actual cost.
	e.store.mu.Lock()
	committed := e.store.counters[counterID{budget.KeyOwner(e.keyID), budget.LifetimeSpend()}]
	e.store.mu.Unlock()
	if committed != int64(ev.Cost) || ev.ReservedCost < ev.Cost || ev.Overrun {
		t.Fatalf("committed %d, event cost %d reserved %d", committed, ev.Cost, ev.ReservedCost)
	}
}

func TestLowersMaxTokensToFit(t *testing.T) {
	// $0.001 left: gpt-4o-mini's 16384-token maximum costs ~$0.0098, but
	// ~1600 output tokens fit.
	e := newEnv(t, jsonBody(t, "chat.json"), func(k *apikey.Key) { k.CostLimitLifetime = money.Dollar / 1000 })
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lowered, _ := strconv.ParseInt(resp.Header.Get("X-Stipend-Max-Tokens-Lowered"), 10, 64)
	if lowered < 16 || lowered > 1666 {
		t.Fatalf("lowered to %d", lowered)
	}
	e.mu.Lock()
	var sent struct {
		MaxCompletionTokens int64 `json:"max_completion_tokens"`
	}
	json.Unmarshal(e.lastBody, &sent)
	e.mu.Unlock()
	if sent.MaxCompletionTokens != lowered {
		t.Fatalf("upstream got max_completion_tokens %d, header says %d", sent.MaxCompletionTokens, lowered)
	}
	ev := e.store.waitEvent(t)
	if ev.ReservedCost > money.Dollar/1000 {
		t.Fatalf("reserved %s above the limit", ev.ReservedCost)
	}
}

func TestUserAndOrgLimits(t *testing.T) {
	tests := []struct {
		name   string
		user   *user.User
		org    user.Org
		status int
		code   string
	}{
		{"revoked user", &user.User{UserID: "u1", Revoked: true}, user.Org{}, 401, "key_revoked"},
		{"user budget", &user.User{UserID: "u1", CostLimitLifetime: 1}, user.Org{}, 429, "insufficient_quota"},
		{"user rate", &user.User{UserID: "u1", RateLimitOverTime: 1, RateLimitUnit: "s"}, user.Org{}, 200, ""},
		{"org budget", nil, user.Org{CostLimitLifetime: 1, Version: 1}, 429, "insufficient_quota"},
		{"org month", nil, user.Org{CostLimitPerMonth: 1, Version: 1}, 429, "insufficient_quota"},
	}
	no := false
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, jsonBody(t, "chat.json"), func(k *apikey.Key) {
				k.LowerMaxTokens = &no
				if tt.user != nil {
					k.UserID = tt.user.UserID
				}
			})
			if tt.user != nil {
				e.store.users[tt.user.UserID] = tt.user
			}
			e.store.org = tt.org
			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, chatBody)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.code != "" && errorCode(t, resp) != tt.code {
				t.Fatal("wrong code")
			}
		})
	}
}

func TestKeyInfo(t *testing.T) {
	e := newEnv(t, jsonBody(t, "chat.json"), func(k *apikey.Key) {
		k.Name = "alice"
		k.CostLimitPerMonth = money.Dollar / 5
		k.RateLimitOverTime, k.RateLimitUnit = 5, "m"
	})
	e.do("POST", "/v1/chat/completions", "Bearer "+e.key, chatBody)
	ev := e.store.waitEvent(t)
	resp := e.do("GET", "/v1/key/info", "Bearer "+e.key, "")
	body, _ := io.ReadAll(resp.Body)
	var info struct {
		KeyID, Name         string
		SpendInUsd          money.Nanos
		SpendThisMonthInUsd money.Nanos
		Limits              []struct {
			Scope     string
			Remaining json.Number
		}
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	if info.KeyID != e.keyID || info.Name != "alice" || info.SpendInUsd != ev.Cost || info.SpendThisMonthInUsd != ev.Cost || len(info.Limits) != 2 {
		t.Fatalf("info = %s", body)
	}
	if strings.Contains(string(body), "hash") || strings.Contains(string(body), e.key) {
		t.Fatalf("secret material in key info: %s", body)
	}
}

func TestCountersReadOnlyWithLimits(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*apikey.Key)
		reads  int
	}{
		{"no limits: no read", func(*apikey.Key) {}, 0},
		{"a limit: one read for the headers", func(k *apikey.Key) { k.RateLimitOverTime, k.RateLimitUnit = 10, "m" }, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, jsonBody(t, "chat.json"), tt.mutate)
			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, chatBody)
			e.store.waitEvent(t)
			e.store.mu.Lock()
			reads := e.store.reads
			e.store.mu.Unlock()
			if resp.StatusCode != 200 || reads != tt.reads {
				t.Fatalf("status %d, %d counter reads, want %d", resp.StatusCode, reads, tt.reads)
			}
			if got := resp.Header.Get("X-Ratelimit-Limit-Requests") != ""; got != (tt.reads > 0) {
				t.Fatalf("rate limit headers present = %v", got)
			}
		})
	}
}

// TestWorstCaseCoversCacheWrites: a prompt may be billed entirely as cache
// writes (Anthropic: 1.25x input, 2x for a 1-hour write), so the
// reservation prices it so.
func TestWorstCaseCoversCacheWrites(t *testing.T) {
	table, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	const fiveMin = `{"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}`
	const oneHour = `{"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`
	for _, tt := range []struct {
		model, body string
		perToken    func(pricing.Price) int64
	}{
		{"claude-sonnet-4-5", fiveMin, func(p pricing.Price) int64 { return p.CacheWrite }},
		{"claude-sonnet-4-5", oneHour, func(p pricing.Price) int64 { return 2 * p.Input }},
		{"gpt-4o-mini", oneHour, func(p pricing.Price) int64 { return p.Input }},
	} {
		price, _ := table.Lookup(tt.model)
		mt := int64(100)
		req := &request{Model: tt.model, MaxTokens: &mt}
		w := worstCase("/v1/messages", req, []byte(tt.body), 1000, price)
		if want := money.Nanos((1000*tt.perToken(price) + 100*price.Output + 999) / 1000); w.cost != want {
			t.Errorf("%s %s: worst case $%s, want $%s", tt.model, tt.body, w.cost, want)
		}
	}
}
