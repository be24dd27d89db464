package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/user"
)

// ---- small hand-written fakes ----

type notFoundErr struct{}

func (notFoundErr) Error() string  { return "not found" }
func (notFoundErr) NotFound() bool { return true }

// counterID is one counter of the fake's.
type counterID struct {
	owner   budget.Owner
	counter budget.Counter
}

type fakeStore struct {
	mu        sync.Mutex
	keys      map[string]*apikey.Key
	providers map[string]*provider.Setting
	users     map[string]*user.User
	org       user.Org
	counters  map[counterID]int64 // committed
	open      map[string]*budget.Reservation
	events    []*ledger.Event
	recorded  chan struct{}
	failKeys  bool
	reads     int // Counters calls
	// beforeGetProvider and beforeReserve, when set, run first in
	// GetProvider and Reserve, outside the lock.
	beforeGetProvider func() error
	beforeReserve     func()
}

func (s *fakeStore) GetUser(_ context.Context, id string) (*user.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return nil, notFoundErr{}
	}
	return u, nil
}

func (s *fakeStore) GetOrg(context.Context) (*user.Org, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.org
	return &o, nil
}

// Reserve applies a reservation all or nothing, like the real store.
func (s *fakeStore) Reserve(_ context.Context, r *budget.Reservation) error {
	s.mu.Lock()
	hook := s.beforeReserve
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range r.Charges {
		if c.Limit > 0 && s.counters[counterID{c.Owner, c.Counter}]+c.Amount > c.Limit {
			return &budget.LimitError{Charge: c}
		}
	}
	for _, c := range r.Charges {
		s.counters[counterID{c.Owner, c.Counter}] += c.Reserved()
	}
	s.open[r.ID] = r
	return nil
}

func (s *fakeStore) Settle(_ context.Context, r *budget.Reservation, ev *ledger.Event) error {
	s.mu.Lock()
	if _, ok := s.open[r.ID]; !ok {
		s.mu.Unlock()
		return budget.ErrSettled
	}
	delete(s.open, r.ID)
	for _, c := range r.Charges {
		switch c.Kind {
		case budget.Spend:
			s.counters[counterID{c.Owner, c.Counter}] += int64(ev.Cost) - c.Reserved()
		case budget.Tokens:
			s.counters[counterID{c.Owner, c.Counter}] += ev.Usage.Total() - c.Reserved()
		}
	}
	c := *ev
	s.events = append(s.events, &c)
	s.mu.Unlock()
	s.recorded <- struct{}{}
	return nil
}

func (s *fakeStore) Release(_ context.Context, r *budget.Reservation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, r.ID)
	for _, c := range r.Charges {
		if c.Kind != budget.Requests {
			s.counters[counterID{c.Owner, c.Counter}] -= c.Reserved()
		}
	}
	return nil
}

func (s *fakeStore) Abandon(ctx context.Context, r *budget.Reservation) error {
	s.mu.Lock()
	_, open := s.open[r.ID]
	s.mu.Unlock()
	if !open {
		return nil
	}
	return s.Release(ctx, r)
}

func (s *fakeStore) Counters(_ context.Context, cs []budget.Charge) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = s.counters[counterID{c.Owner, c.Counter}]
	}
	return out, nil
}

func (s *fakeStore) GetKey(_ context.Context, id string) (*apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failKeys {
		return nil, errors.New("dynamodb: connection refused")
	}
	k, ok := s.keys[id]
	if !ok {
		return nil, notFoundErr{}
	}
	c := *k
	return &c, nil
}

func (s *fakeStore) GetProvider(_ context.Context, id string) (*provider.Setting, error) {
	s.mu.Lock()
	hook := s.beforeGetProvider
	s.mu.Unlock()
	if hook != nil {
		if err := hook(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.providers[id]
	if !ok {
		return nil, notFoundErr{}
	}
	return p, nil
}

func (s *fakeStore) ListProviders(context.Context) ([]*provider.Setting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*provider.Setting, 0, len(s.providers))
	for _, p := range s.providers {
		out = append(out, p)
	}
	return out, nil
}

// waitEvent returns the next recorded event.
func (s *fakeStore) waitEvent(t *testing.T) *ledger.Event {
	t.Helper()
	select {
	case <-s.recorded:
	case <-time.After(5 * time.Second):
		t.Fatal("no event recorded")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[len(s.events)-1]
}

type fakeSecrets map[string]string

func (f fakeSecrets) Get(_ context.Context, id string) (string, error) {
	v, ok := f[id]
	if !ok {
		return "", errors.New("no such secret")
	}
	return v, nil
}

// wordTokenizer counts one token per 4 bytes, rounded up: deterministic and fast.
type wordTokenizer struct{}

func (wordTokenizer) Prompt(_, _ string, body []byte) (int64, error) {
	return int64(len(body)+3) / 4, nil
}
func (wordTokenizer) Completion(_, text string) (int64, error) { return int64(len(text)+3) / 4, nil }

const providerKey = "sk-provider-secret-value"

type env struct {
	t        *testing.T
	store    *fakeStore
	proxy    *httptest.Server
	upstream *httptest.Server
	key      string // a valid stipend key
	keyID    string
	// upstreamFn answers upstream requests; the last request is kept.
	mu       sync.Mutex
	lastReq  *http.Request
	lastBody []byte
}

func newEnv(t *testing.T, upstream http.HandlerFunc, mutate ...func(*apikey.Key)) *env {
	t.Helper()
	e := &env{t: t}
	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.lastReq, e.lastBody = r.Clone(context.Background()), b
		e.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		upstream(w, r)
	}))
	t.Cleanup(e.upstream.Close)
	id, key := apikey.Generate()
	e.key, e.keyID = key, id
	k := &apikey.Key{ID: id, Hash: apikey.Hash(key), SettingIDs: []string{"p1"}}
	for _, m := range mutate {
		m(k)
	}
	e.store = &fakeStore{
		keys:      map[string]*apikey.Key{id: k},
		providers: map[string]*provider.Setting{"p1": {ID: "p1", Provider: provider.OpenAI, BaseURL: e.upstream.URL + "/v1", SecretID: "sec1"}},
		users:     map[string]*user.User{},
		counters:  map[counterID]int64{},
		open:      map[string]*budget.Reservation{},
		recorded:  make(chan struct{}, 100),
	}
	prices, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{
		Keys: e.store, Providers: e.store, Limiter: e.store, Owners: e.store,
		Secrets: fakeSecrets{"sec1": providerKey}, Prices: prices, Tokenizer: wordTokenizer{},
		IdleTimeout: 2 * time.Second, MaxBodyBytes: 1 << 16,
	})
	e.proxy = httptest.NewServer(h)
	t.Cleanup(e.proxy.Close)
	return e
}

func (e *env) do(method, path, auth, body string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.proxy.URL+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b struct {
		Error struct {
			Message, Type, Code string
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if b.Error.Message == "" || b.Error.Type == "" {
		t.Fatalf("incomplete error body: %+v", b)
	}
	return b.Error.Code
}

// replay serves a recorded stream from testdata, flushing after every event.
func replay(t *testing.T, file string) http.HandlerFunc {
	data, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Openai-Organization", "teachers-org")
		w.Header().Set("X-Ratelimit-Remaining-Requests", "4999")
		for _, ev := range strings.SplitAfter(string(data), "\n\n") {
			if ev == "" {
				continue
			}
			io.WriteString(w, ev)
			http.NewResponseController(w).Flush()
		}
	}
}

func jsonBody(t *testing.T, file string) http.HandlerFunc {
	data, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	}
}

// ---- tests ----

func TestAuthAndValidation(t *testing.T) {
	never := func(w http.ResponseWriter, r *http.Request) { t.Errorf("upstream called for a rejected request") }
	chat := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name   string
		mutate func(*apikey.Key)
		auth   string // "" none; "KEY" the valid key
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"missing key", nil, "", "POST", "/v1/chat/completions", chat, 401, "invalid_api_key"},
		{"malformed key", nil, "Bearer sk-proj-abc", "POST", "/v1/chat/completions", chat, 401, "invalid_api_key"},
		{"unknown key", nil, "Bearer OTHER", "POST", "/v1/chat/completions", chat, 401, "invalid_api_key"},
		{"wrong secret", nil, "Bearer WRONG", "POST", "/v1/chat/completions", chat, 401, "invalid_api_key"},
		{"basic auth", nil, "Basic abc", "POST", "/v1/chat/completions", chat, 401, "invalid_api_key"},
		{"revoked", func(k *apikey.Key) { k.Revoked = true }, "KEY", "POST", "/v1/chat/completions", chat, 401, "key_revoked"},
		{"expired", func(k *apikey.Key) { k.ExpiresAt = time.Now().Add(-time.Minute).Unix() }, "KEY", "POST", "/v1/chat/completions", chat, 401, "key_expired"},
		{"model not allowed", func(k *apikey.Key) { k.AllowedModels = []string{"gpt-4o"} }, "KEY", "POST", "/v1/chat/completions", chat, 403, "model_not_allowed"},
		{"path not allowed", func(k *apikey.Key) { k.AllowedPaths = []apikey.PathRule{{Path: "/v1/embeddings", Method: "POST"}} }, "KEY", "POST", "/v1/chat/completions", chat, 403, "path_not_allowed"},
		{"not priced", nil, "KEY", "POST", "/v1/chat/completions", `{"model":"my-own-model","messages":[]}`, 400, "model_not_priced"},
		{"no model", nil, "KEY", "POST", "/v1/chat/completions", `{"messages":[]}`, 400, "invalid_request"},
		{"moderation defaults its model", func(k *apikey.Key) { k.AllowedModels = []string{"gpt-4o-mini"} }, "KEY", "POST", "/v1/moderations", `{"input":"hi"}`, 403, "model_not_allowed"},
		{"bad json", nil, "KEY", "POST", "/v1/chat/completions", `{"model":`, 400, "invalid_request"},
		{"too large", nil, "KEY", "POST", "/v1/chat/completions", `{"model":"gpt-4o-mini","x":"` + strings.Repeat("a", 1<<16) + `"}`, 413, "request_too_large"},
		{"unknown path", nil, "KEY", "POST", "/v1/nope", chat, 404, "not_found"},
		{"no setting serves the model", func(k *apikey.Key) { k.SettingIDs = []string{"gone"} }, "KEY", "POST", "/v1/chat/completions", chat, 403, "model_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mut []func(*apikey.Key)
			if tt.mutate != nil {
				mut = append(mut, tt.mutate)
			}
			e := newEnv(t, never, mut...)
			auth := tt.auth
			switch auth {
			case "KEY":
				auth = "Bearer " + e.key
			case "Bearer OTHER":
				_, other := apikey.Generate()
				auth = "Bearer " + other
			case "Bearer WRONG":
				auth = "Bearer " + e.key[:len(e.key)-4] + "aaaa"
			}
			resp := e.do(tt.method, tt.path, auth, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if got := errorCode(t, resp); got != tt.code {
				t.Fatalf("code = %q, want %q", got, tt.code)
			}
		})
	}
}

func TestStoreDownFailsClosed(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) { t.Error("upstream called") })
	e.store.failKeys = true
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, `{"model":"gpt-4o-mini"}`)
	if resp.StatusCode != 503 || errorCode(t, resp) != "service_unavailable" {
		t.Fatalf("status = %d", resp.StatusCode)
	}
}

func TestXAPIKeyHeader(t *testing.T) {
	e := newEnv(t, jsonBody(t, "chat.json"))
	req, _ := http.NewRequest("POST", e.proxy.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[]}`))
	req.Header.Set("x-api-key", e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	e.store.waitEvent(t)
}

func TestStreamUsage(t *testing.T) {
	tests := []struct {
		name          string
		file, path    string
		body          string
		wantUsageSent bool
		wantUpstream  string // a substring the upstream body must contain
		want          ledger.Usage
		wantCost      money.Nanos
	}{
		{
			name: "chat, client did not ask for usage", file: "chat_stream.sse", path: "/v1/chat/completions",
			body:         `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}`,
			wantUpstream: `"stream_options":{"include_usage":true}`,
			want:         ledger.Usage{PromptTokens: 9, CompletionTokens: 7}, wantCost: 9*150 + 7*600,
		},
		{
			name: "chat, client asked for usage", file: "chat_stream.sse", path: "/v1/chat/completions",
			body:          `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}`,
			wantUsageSent: true, wantUpstream: `"include_usage":true`,
			want: ledger.Usage{PromptTokens: 9, CompletionTokens: 7}, wantCost: 9*150 + 7*600,
		},
		{
			name: "responses api", file: "responses_stream.sse", path: "/v1/responses",
			body:          `{"model":"gpt-4o-mini","stream":true,"input":"Hi"}`,
			wantUsageSent: true, wantUpstream: `"input":"Hi"`,
			want: ledger.Usage{PromptTokens: 12, CachedTokens: 4, CompletionTokens: 2}, wantCost: 8*150 + 4*75 + 2*600,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, replay(t, tt.file))
			req, _ := http.NewRequest("POST", e.proxy.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+e.key)
			req.Header.Set("X-Custom-Id", "student-7")
			req.Header.Set("OpenAI-Organization", "someone-elses-org")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if resp.Header.Get("Openai-Organization") != "" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "" {
				t.Fatalf("provider account headers leaked: %v", resp.Header)
			}
			if sent := strings.Contains(string(got), `"usage":{"`); sent != tt.wantUsageSent {
				t.Fatalf("usage chunk sent = %v, want %v:\n%s", sent, tt.wantUsageSent, got)
			}
			if tt.file == "chat_stream.sse" && !strings.HasSuffix(string(got), "data: [DONE]\n\n") {
				t.Fatalf("stream does not end with [DONE]: %q", got)
			}
			e.mu.Lock()
			up, upBody := e.lastReq, string(e.lastBody)
			e.mu.Unlock()
			if !strings.Contains(upBody, tt.wantUpstream) {
				t.Fatalf("upstream body %s lacks %s", upBody, tt.wantUpstream)
			}
			if up.Header.Get("Authorization") != "Bearer "+providerKey {
				t.Fatalf("upstream auth = %q", up.Header.Get("Authorization"))
			}
			if up.Header.Get("Openai-Organization") != "" || up.Header.Get("X-Custom-Id") != "" {
				t.Fatalf("client headers leaked upstream: %v", up.Header)
			}
			if ua := up.Header.Get("User-Agent"); ua != "stipend" {
				t.Errorf("upstream User-Agent = %q, want stipend", ua)
			}
			ev := e.store.waitEvent(t)
			if ev.Usage != tt.want || ev.Cost != tt.wantCost || ev.Estimated || ev.Incomplete {
				t.Fatalf("event usage %+v cost %d (est %v inc %v), want %+v %d", ev.Usage, ev.Cost, ev.Estimated, ev.Incomplete, tt.want, tt.wantCost)
			}
			if ev.KeyID != e.keyID || ev.CustomID != "student-7" || ev.Status != 200 || !ev.Stream || ev.Path != tt.path || ev.Model != "gpt-4o-mini" {
				t.Fatalf("event = %+v", ev)
			}
			if resp.Header.Get("X-Stipend-Request-Id") != ev.ID {
				t.Fatalf("request id header %q, event %q", resp.Header.Get("X-Stipend-Request-Id"), ev.ID)
			}
		})
	}
}

func TestNonStreamUsage(t *testing.T) {
	e := newEnv(t, jsonBody(t, "chat.json"))
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, `{"model":"gpt-4o-mini-2024-07-18","messages":[{"role":"user","content":"Hi"}]}`)
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "How can I help?") {
		t.Fatalf("body = %s", body)
	}
	ev := e.store.waitEvent(t)
	want := ledger.Usage{PromptTokens: 1000, CachedTokens: 200, CompletionTokens: 500}
	if ev.Usage != want || ev.Cost != 800*150+200*75+500*600 || ev.Model != "gpt-4o-mini-2024-07-18" {
		t.Fatalf("event %+v", ev)
	}
}

// TestStreamsEachEventImmediately proves there is no buffering: upstream
// sends the next event only after the client has received the previous one.
func TestStreamsEachEventImmediately(t *testing.T) {
	const n = 5
	received := make(chan int, n)
	upstream := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 0; i < n; i++ {
			io.WriteString(w, `data: {"choices":[{"delta":{"content":"x"}}]}`+"\n\n")
			rc.Flush()
			select {
			case got := <-received:
				if got != i {
					t.Errorf("client got event %d, upstream sent %d", got, i)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("event %d never reached the client: the proxy buffers", i)
				return
			}
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}
	e := newEnv(t, upstream)
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, `{"model":"gpt-4o-mini","stream":true,"messages":[]}`)
	br := bufio.NewReader(resp.Body)
	i := 0
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(line, "data: {") {
			received <- i
			i++
		}
		if err != nil {
			break
		}
	}
	if i != n {
		t.Fatalf("client got %d events, want %d", i, n)
	}
	ev := e.store.waitEvent(t)
	if !ev.Estimated || ev.Usage.CompletionTokens == 0 || ev.Usage.PromptTokens == 0 {
		t.Fatalf("stream without usage must be counted with the tokenizer: %+v", ev)
	}
}

func TestClientDisconnectMidStream(t *testing.T) {
	upstreamDone := make(chan struct{})
	upstream := func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 0; ; i++ {
			if _, err := io.WriteString(w, `data: {"choices":[{"delta":{"content":"word "}}]}`+"\n\n"); err != nil {
				return
			}
			rc.Flush()
			select {
			case <-r.Context().Done():
				return // the proxy cancelled the upstream call
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	e := newEnv(t, upstream)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.proxy.URL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"go"}]}`))
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	resp.Body.Read(buf)
	cancel()
	resp.Body.Close()
	select {
	case <-upstreamDone:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream call not cancelled after the client left")
	}
	ev := e.store.waitEvent(t)
	if !ev.Incomplete || !ev.Estimated || ev.Usage.CompletionTokens == 0 || ev.Cost == 0 || ev.ErrorCode != "client_closed" {
		t.Fatalf("disconnect must still be charged and labelled: %+v", ev)
	}
}

func TestUpstreamErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	tests := []struct {
		name     string
		upstream http.HandlerFunc
		baseURL  string
		status   int
		code     string // "" = passthrough body
		charged  bool
	}{
		{"429 passes through", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
		}, "", 429, "rate_limit_exceeded", false},
		{"400 passes through", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":"x"}}`)
		}, "", 400, "x", false},
		{"unreachable", nil, closedURL + "/v1", 502, "upstream_error", false},
		{"silent upstream times out", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, "", 504, "upstream_timeout", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.upstream)
			if tt.baseURL != "" {
				e.store.providers["p1"].BaseURL = tt.baseURL
			}
			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if got := errorCode(t, resp); got != tt.code {
				t.Fatalf("code = %q, want %q", got, tt.code)
			}
			ev := e.store.waitEvent(t)
			if ev.Status != tt.status || (ev.Cost > 0) != tt.charged {
				t.Fatalf("event %+v", ev)
			}
		})
	}
	_ = net.ErrClosed
}

func TestModels(t *testing.T) {
	e := newEnv(t, nil, func(k *apikey.Key) { k.AllowedModels = []string{"gpt-4o-mini", "text-embedding-3-small"} })
	resp := e.do("GET", "/v1/models", "Bearer "+e.key, "")
	var out struct {
		Object string
		Data   []struct{ ID, Object string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Object != "list" || len(out.Data) != 2 || out.Data[0].ID != "gpt-4o-mini" || out.Data[1].Object != "model" {
		t.Fatalf("models = %+v", out)
	}
}
