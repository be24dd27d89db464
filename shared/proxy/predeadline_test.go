package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/user"
)

// deadlineStore is a fakeStore that records the contexts the proxy gives
// it, and fails the test for store work before forwarding without a
// deadline.
type deadlineStore struct {
	*fakeStore
	t  *testing.T
	mu sync.Mutex
	// pre is the context of the first Reserve: forward's pre-forward one.
	pre         context.Context
	getProvider []context.Context
	after       []string // the work after forwarding that found its context done
}

func (s *deadlineStore) bad(what string, ctx context.Context) {
	if ctx.Err() != nil {
		s.mu.Lock()
		s.after = append(s.after, what+": "+ctx.Err().Error())
		s.mu.Unlock()
	}
}

func (s *deadlineStore) Reserve(ctx context.Context, r *budget.Reservation) error {
	s.mu.Lock()
	if s.pre == nil {
		s.pre = ctx
	}
	s.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		s.t.Error("Reserve without a deadline")
	}
	return s.fakeStore.Reserve(ctx, r)
}

func (s *deadlineStore) GetProvider(ctx context.Context, id string) (*provider.Setting, error) {
	s.mu.Lock()
	s.getProvider = append(s.getProvider, ctx)
	s.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		s.t.Errorf("GetProvider(%s) without a deadline", id)
	}
	s.bad("GetProvider", ctx)
	return s.fakeStore.GetProvider(ctx, id)
}

func (s *deadlineStore) GetUser(ctx context.Context, id string) (*user.User, error) {
	if _, ok := ctx.Deadline(); !ok {
		s.t.Error("GetUser without a deadline")
	}
	return s.fakeStore.GetUser(ctx, id)
}

func (s *deadlineStore) Settle(ctx context.Context, r *budget.Reservation, ev *ledger.Event) error {
	s.bad("Settle", ctx)
	return s.fakeStore.Settle(ctx, r, ev)
}

func (s *deadlineStore) Counters(ctx context.Context, cs []budget.Charge) ([]int64, error) {
	time.Sleep(30 * time.Millisecond) // after forward's cancel
	s.bad("Counters", ctx)
	return s.fakeStore.Counters(ctx, cs)
}

func (s *deadlineStore) Release(ctx context.Context, r *budget.Reservation) error {
	s.bad("Release", ctx)
	return s.fakeStore.Release(ctx, r)
}

// TestPreForwardDeadline: forward's one deadline (Config.ReserveTimeout)
// bounds the store's work before forwarding (the reserve, the owners, the
// provider setting read fresh), is done once the request is forwarded, and
// nothing after (the limit headers' read, a failover's fresh read, the
// settle) runs under it: a failover's read has a deadline of its own.
func TestPreForwardDeadline(t *testing.T) {
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError) // the first attempt fails: failover
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	defer up.Close()
	id, token := apikey.Generate()
	k := &apikey.Key{ID: id, Hash: apikey.Hash(token), SettingIDs: []string{"p1", "p2"}, RateLimitOverTime: 1000, RateLimitUnit: "m"}
	fs := &fakeStore{
		keys: map[string]*apikey.Key{id: k},
		providers: map[string]*provider.Setting{
			"p1": {ID: "p1", Provider: provider.OpenAI, BaseURL: up.URL + "/v1", SecretID: "sec1"},
			"p2": {ID: "p2", Provider: provider.OpenAI, BaseURL: up.URL + "/v1", SecretID: "sec1"},
		},
		users:    map[string]*user.User{},
		counters: map[counterID]int64{},
		open:     map[string]*budget.Reservation{},
		recorded: make(chan struct{}, 100),
	}
	s := &deadlineStore{fakeStore: fs, t: t}
	prices, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{
		Keys: s, Providers: s, Limiter: s, Owners: s,
		Secrets: fakeSecrets{"sec1": providerKey}, Prices: prices, Tokenizer: wordTokenizer{},
		IdleTimeout: 2 * time.Second, MaxBodyBytes: 1 << 16, ReserveTimeout: 2 * time.Second,
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	fs.waitEvent(t)
	if got := calls.Load(); got != 2 {
		t.Fatalf("upstream called %d times, want 2 (a failover)", got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pre == nil || s.pre.Err() == nil {
		t.Fatal("the pre-forward context is not done after the request")
	}
	fs.mu.Lock()
	reads := fs.reads
	fs.mu.Unlock()
	if reads == 0 {
		t.Error("no limit headers' read: the key has no limited counter")
	}
	if len(s.after) > 0 {
		t.Fatalf("work under a done context: %v", s.after)
	}
	if len(s.getProvider) < 2 {
		t.Fatalf("%d fresh reads, want the first and the failover's", len(s.getProvider))
	}
	// The cache's fetches (route's settings) have a deadline of their own
	// (cache.TTL: 10 s); the fresh read in reserveWhileLoading has forward's.
	last := s.getProvider[len(s.getProvider)-1]
	d2, _ := s.pre.Deadline()
	shared := false
	for _, c := range s.getProvider {
		if d, _ := c.Deadline(); d.Equal(d2) {
			shared = true
		}
	}
	if !shared {
		t.Error("no fresh read had the pre-forward deadline")
	}
	if dl, _ := last.Deadline(); !dl.After(d2) {
		t.Errorf("the failover's read has the pre-forward deadline (%v), want its own", dl)
	}
}
