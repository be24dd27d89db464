// Package teststack gives integration tests stipend's two APIs over one
// store: the proxy and the admin API as httptest servers on a table of
// DynamoDB Local, with a fake upstream (infra/fakeupstream) and, when asked,
// a provider setting that points at it. The tests of shared/proxy,
// shared/admin and infra/secrecy build their environments on it rather than
// each wiring the same five parts.
//
// It lives in infra/ because it starts DynamoDB Local
// (infra/localstack/localtest) and the fake upstream; shared/dynamo/dynamotest
// only connects to an endpoint, so storage never depends on infra/.
package teststack

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/dynamotest"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/tokenizer"
)

// Options say what Start builds. The zero Options is a proxy on a fresh
// DynamoDB Local, with a fake upstream that wants no key, no provider
// setting and no admin API.
type Options struct {
	// Endpoint is the DynamoDB Local to use; "" starts one for the test.
	Endpoint string
	// Table names the store's table ("stack" when "").
	Table string
	// Now is the clock of both APIs; nil is time.Now.
	Now func() time.Time
	// Upstream are the fake upstream's options; its APIKey is the secret
	// the provider setting names.
	Upstream fakeupstream.Options
	// WrapUpstream, when set, wraps the fake upstream's handler (to switch
	// keys, stall, count).
	WrapUpstream func(http.Handler) http.Handler
	// ProviderID, when set, stores an OpenAI provider setting with this id,
	// named "fake", that calls the fake upstream (<root>/v1) with the secret
	// SecretID.
	ProviderID string
	// SecretID names the fake upstream's key in Secrets ("fake-upstream"
	// when "").
	SecretID string
	// Secrets is the Secrets Manager stand-in of both APIs; nil is a
	// MapSecrets holding Upstream.APIKey under SecretID.
	Secrets Secrets
	// Proxy changes the proxy's configuration before it is built. Start sets
	// ReserveTimeout to a minute: hundreds of transactions conflicting on
	// one counter of DynamoDB Local, under -race on a shared machine, can
	// retry for longer than the production default (3 s) allows.
	Proxy func(*proxy.Config)
	// Invocation, when set, gives every proxy request's context this
	// deadline, as a Lambda invocation's context has.
	Invocation time.Duration
	// Strikes makes the proxies count moderation strikes on the store
	// (proxy.Config.Strikes).
	Strikes bool
	// Proxies is how many proxies (Lambda instances, each with its own
	// caches) serve the store; 0 is one.
	Proxies int
	// AdminKey, when set, builds the admin API too, with this bearer key.
	AdminKey string
	// Admin changes the admin API's configuration before it is built.
	Admin func(*admin.Config)
}

// Secrets is what both APIs need of Secrets Manager.
type Secrets interface {
	Get(ctx context.Context, id string) (string, error)
	Put(ctx context.Context, name, value string) (string, error)
}

// Env is a running stack. Its servers close when the test ends.
type Env struct {
	Store *dynamo.Store
	// Upstream is the fake upstream; UpstreamURL its root (no /v1).
	Upstream    *fakeupstream.Server
	UpstreamURL string
	Proxy       *httptest.Server
	// Proxies are every proxy, Proxy first (Options.Proxies).
	Proxies []*httptest.Server
	// Admin is nil unless Options.AdminKey was set; AdminHandler is the
	// handler it serves, for tests that call it in process.
	Admin        *httptest.Server
	AdminHandler http.Handler
	Secrets      Secrets
	Prices       *pricing.Table
	Tokenizer    *tokenizer.Counter
	// Endpoint is the DynamoDB Local the store is on.
	Endpoint string

	inflight sync.WaitGroup // proxy handlers still running
}

// Start builds the stack for t.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	if o.Endpoint == "" {
		o.Endpoint = localtest.StartDynamoDB(t)
	}
	if o.Table == "" {
		o.Table = "stack"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SecretID == "" {
		o.SecretID = "fake-upstream"
	}
	if o.Secrets == nil {
		o.Secrets = &MapSecrets{m: map[string]string{o.SecretID: o.Upstream.APIKey}}
	}
	prices, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{
		Store: dynamotest.Store(t, o.Endpoint, o.Table), Secrets: o.Secrets, Prices: prices,
		Tokenizer: tokenizer.New(), Endpoint: o.Endpoint,
	}
	e.Upstream = fakeupstream.New(o.Upstream)
	var up http.Handler = e.Upstream
	if o.WrapUpstream != nil {
		up = o.WrapUpstream(up)
	}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	e.UpstreamURL = upSrv.URL
	if o.ProviderID != "" {
		if err := e.Store.CreateProvider(ctx, &provider.Setting{
			ID: o.ProviderID, Name: "fake", Provider: provider.OpenAI, BaseURL: upSrv.URL + "/v1",
			SecretID: o.SecretID, CreatedAt: o.Now().Unix(),
		}); err != nil {
			t.Fatal(err)
		}
	}

	cfg := proxy.Config{
		Keys: e.Store, Providers: e.Store, Secrets: o.Secrets, Limiter: e.Store, Owners: e.Store,
		Prices: prices, Tokenizer: e.Tokenizer, Now: o.Now, ReserveTimeout: time.Minute,
	}
	if o.Strikes {
		cfg.Strikes = e.Store
	}
	if o.Proxy != nil {
		o.Proxy(&cfg)
	}
	for range max(o.Proxies, 1) {
		ph := proxy.New(cfg)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.inflight.Add(1)
			defer e.inflight.Done()
			if o.Invocation > 0 {
				ctx, cancel := context.WithTimeout(r.Context(), o.Invocation)
				defer cancel()
				r = r.WithContext(ctx)
			}
			ph.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		e.Proxies = append(e.Proxies, srv)
	}
	e.Proxy = e.Proxies[0]

	if o.AdminKey != "" {
		acfg := admin.Config{
			Store: e.Store, Secrets: o.Secrets, SecretPrefix: "stipend/test/",
			AdminKey: func(context.Context) (string, error) { return o.AdminKey, nil },
			Now:      o.Now,
		}
		if o.Admin != nil {
			o.Admin(&acfg)
		}
		e.AdminHandler = admin.New(acfg)
		e.Admin = httptest.NewServer(e.AdminHandler)
		t.Cleanup(e.Admin.Close)
	}
	return e
}

// Wait returns once every proxy handler that has started has returned (a
// request's settle runs after its response ends).
func (e *Env) Wait() { e.inflight.Wait() }

// MapSecrets is a Secrets Manager stand-in in memory: what Put stores
// (named "arn:aws:secretsmanager:local:<name>"), Get returns.
type MapSecrets struct {
	mu sync.Mutex
	m  map[string]string
}

// NewMapSecrets returns a MapSecrets holding values (id to value).
func NewMapSecrets(values map[string]string) *MapSecrets {
	m := make(map[string]string, len(values))
	for k, v := range values {
		m[k] = v
	}
	return &MapSecrets{m: m}
}

// Get returns the secret id.
func (s *MapSecrets) Get(_ context.Context, id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return "", fmt.Errorf("no secret %q", id)
	}
	return v, nil
}

// Put stores value as the secret name and returns its id.
func (s *MapSecrets) Put(_ context.Context, name, value string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	arn := "arn:aws:secretsmanager:local:" + name
	s.m[arn] = value
	return arn, nil
}
