// Package proxy is stipend's OpenAI-compatible proxy: an http.Handler that
// authenticates a stipend key, swaps in the provider's API key, forwards the
// request, streams the response back event by event, and records one event
// with the request's usage and cost before it returns.
//
// The same Handler runs behind net/http on a laptop and behind a Lambda
// function URL in response-streaming mode.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/cache"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/pages"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/user"
)

// Keys finds a key's stored configuration by id. An unknown id is an error
// with a NotFound() bool method that returns true.
type Keys interface {
	GetKey(ctx context.Context, id string) (*apikey.Key, error)
}

// Providers finds a provider setting by id, and lists them all (the
// settings of a key that names none).
type Providers interface {
	GetProvider(ctx context.Context, id string) (*provider.Setting, error)
	ListProviders(ctx context.Context) ([]*provider.Setting, error)
}

// Secrets returns a secret's value (a provider API key) by id. When it caches
// values, it should also have Forget(id) (as *cache.TTL does): the proxy
// calls it when a provider setting's KeyVersion shows that its key changed.
type Secrets interface {
	Get(ctx context.Context, id string) (string, error)
}

// forgetter is a Secrets that caches: Forget drops one cached secret.
type forgetter interface{ Forget(id string) }

// Prices prices models; WithRates lays a provider setting's own prices
// over them (*pricing.Table implements it).
type Prices interface {
	Lookup(model string) (pricing.Price, bool)
	Models() []string
	WithRates(rates map[string]pricing.Rates) (*pricing.Overlay, error)
}

// Tokenizer counts tokens when upstream reports no usage.
type Tokenizer interface {
	Prompt(encoding, path string, body []byte) (int64, error)
	Completion(encoding, text string) (int64, error)
}

// History lists a key's latest events, newest first, without bodies;
// *dynamo.Store implements it.
type History interface {
	RecentEvents(ctx context.Context, keyID string, limit int) ([]*ledger.Event, error)
}

// Strikes counts a key's moderation strikes and suspends it at its limit
// (moderation.go); *dynamo.Store implements it.
type Strikes interface {
	// Strike counts one flagged request and returns the key's strikes
	// since they were last reset, this one included.
	Strike(ctx context.Context, keyID, eventID string) (apikey.Strikes, error)
	// Suspend suspends the key unless it is already, and reports whether
	// this call did.
	Suspend(ctx context.Context, keyID string, at time.Time, reason string, eventIDs []string) (bool, error)
}

// Config wires a Handler. Keys, Providers, Secrets, Limiter, Owners, Prices
// and Tokenizer are required; the rest have defaults.
type Config struct {
	Keys      Keys
	Providers Providers
	Secrets   Secrets
	Limiter   Limiter
	Owners    Owners
	Prices    Prices
	Tokenizer Tokenizer
	// History, when set, adds the key's latest events to GET /v1/key/info.
	History History
	// Strikes, when set, counts each flagged request of a key with
	// moderation on and suspends the key at its strike limit; without it,
	// flagged requests are refused and nothing more.
	Strikes Strikes

	// ReservationTTL is how long after a request starts its reservation
	// counts as abandoned and the scheduled sweep may settle it at its worst
	// case (default 20 min: longer than a Lambda invocation may run, 15 min
	// at most; template.yaml's ProxyTimeoutSeconds is 300 s by default). A
	// request whose context has a later deadline (an invocation's) gets that
	// deadline plus 30 s instead, so the sweep never charges a request whose
	// invocation may still settle it.
	ReservationTTL time.Duration
	// ReserveTimeout bounds the limits store's work before a request is
	// forwarded (default 3 s): reading the key, then, in all, its
	// settings, the provider setting and its provider key (when not
	// cached), its user and the organisation, and the reservation (and,
	// when the setting's ceilings changed, the reservation made again). When it runs out, as while DynamoDB stalls,
	// the client gets 503 service_unavailable, nothing is forwarded, and the
	// reservation, had it landed, is released after the answer. It also
	// bounds retries of transactions that conflict with concurrent ones on
	// the same counters: raise it if many requests share one hot counter.
	ReserveTimeout time.Duration
	// MinLoweredTokens is the smallest output cap stipend lowers a request
	// to when its budget cannot pay for more (default 16).
	MinLoweredTokens int64

	// Client calls upstream. Default: NewUpstreamClient(DefaultTimeouts).
	Client HTTPClient
	// IdleTimeout ends a response when upstream sends nothing for this long
	// (default 120 s).
	IdleTimeout time.Duration
	// KeyTTL is how long key, user, organisation and provider configuration
	// is cached (default 5 s). Reservations check the versions of what they
	// used, so a change takes effect at the next request anyway.
	KeyTTL time.Duration
	// MaxBodyBytes bounds request bodies (default 8 MiB).
	MaxBodyBytes int64
	// MaxLoggedBodyBytes is how much of each body an event keeps for a key
	// with shouldLogRequest / shouldLogResponse on (default
	// ledger.DefaultBodyBytes, 64 KiB; at most ledger.MaxBodyBytes). Longer
	// bodies are kept up to it and flagged as truncated.
	MaxLoggedBodyBytes int
	// RecordTimeout bounds how long the work after a response (settling the
	// request, or releasing one never forwarded) keeps retrying when the
	// request's context has no deadline (default 5 min, the default Lambda
	// timeout). With a deadline (in Lambda, the invocation's) it keeps trying
	// until then. Either way it stops before the reservation's deadline,
	// from which the stale sweep may settle it at its worst case.
	RecordTimeout time.Duration
	Log           *slog.Logger
	Now           func() time.Time
}

// Handler is the proxy. It is safe for concurrent use.
type Handler struct {
	cfg       Config
	keys      *cache.TTL[*apikey.Key]
	users     *cache.TTL[*user.User]
	org       *cache.TTL[*user.Org]
	providers *cache.TTL[*provider.Setting]
	// allProviders caches the list of every setting under the key "".
	allProviders *cache.TTL[[]*provider.Setting]
	mux          *http.ServeMux

	keyVersionMu sync.Mutex
	keyVersions  map[string]int64 // secret id -> highest provider KeyVersion seen

	fullWindows fullWindows // keys whose request window is full (refusals.go)
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Client == nil {
		cfg.Client = NewUpstreamClient(DefaultTimeouts)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 120 * time.Second
	}
	if cfg.KeyTTL <= 0 {
		cfg.KeyTTL = 5 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.ReservationTTL <= 0 {
		cfg.ReservationTTL = 20 * time.Minute
	}
	if cfg.MinLoweredTokens <= 0 {
		cfg.MinLoweredTokens = 16
	}
	if cfg.RecordTimeout <= 0 {
		cfg.RecordTimeout = 5 * time.Minute
	}
	if cfg.ReserveTimeout <= 0 {
		cfg.ReserveTimeout = 3 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg:   cfg,
		keys:  cache.New(cfg.KeyTTL, cfg.Keys.GetKey),
		users: cache.New(cfg.KeyTTL, cfg.Owners.GetUser),
		org: cache.New(cfg.KeyTTL, func(ctx context.Context, _ string) (*user.Org, error) {
			return cfg.Owners.GetOrg(ctx)
		}),
		providers: cache.New(cfg.KeyTTL, cfg.Providers.GetProvider),
		allProviders: cache.New(cfg.KeyTTL, func(ctx context.Context, _ string) ([]*provider.Setting, error) {
			return cfg.Providers.ListProviders(ctx)
		}),
		mux: http.NewServeMux(),

		keyVersions: map[string]int64{},
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	h.mux.Handle("GET /v1/models", h.handle(h.models))
	h.mux.Handle("GET /v1/key/info", h.handle(h.keyInfo))
	for _, p := range forwardedPaths {
		h.mux.Handle("POST "+p, h.handle(h.forward))
	}
	h.mux.Handle("GET /{$}", pages.Student()) // the student's page (shared/pages)
	h.mux.Handle("GET "+pages.AssetPrefix, pages.Assets())
	h.mux.Handle("/", h.handle(func(w http.ResponseWriter, r *http.Request, _ *apikey.Key) error {
		return apierror.New(http.StatusNotFound, apierror.CodeNotFound, fmt.Sprintf("unknown endpoint %s %s", r.Method, r.URL.Path))
	}))
	return h
}

// forwardedPaths are the POST endpoints passed to the provider.
var forwardedPaths = []string{
	"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
	"/v1/responses", "/v1/moderations", "/v1/messages",
}

// anthropicMessages is Anthropic's API, whose errors stipend answers in
// Anthropic's shape.
const anthropicMessages = "/v1/messages"

// ServeHTTP serves the proxy API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// handle authenticates the request and turns a returned error into the
// client's error response: the one place errors become HTTP responses.
func (h *Handler) handle(fn func(http.ResponseWriter, *http.Request, *apikey.Key) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := h.authenticate(r)
		if err == nil {
			if !selfService(r) && !key.AllowsPath(r.Method, r.URL.Path) {
				err = apierror.New(http.StatusForbidden, apierror.CodePathNotAllowed,
					fmt.Sprintf("this key may not call %s %s", r.Method, r.URL.Path))
			} else {
				err = fn(w, r, key)
			}
		}
		if err != nil {
			var sent *responseStarted
			if errors.As(err, &sent) {
				h.cfg.Log.LogAttrs(r.Context(), slog.LevelWarn, "response ended early",
					slog.String("path", r.URL.Path), slog.String("cause", sent.err.Error()))
				return
			}
			if r.URL.Path == anthropicMessages {
				apierror.WriteAnthropic(w, r, h.cfg.Log, err) // Anthropic's SDKs read their own shape
			} else {
				apierror.Write(w, r, h.cfg.Log, err)
			}
			var pending *pendingRelease
			if errors.As(err, &pending) {
				// The client has its 503 now; the release may take a while.
				_ = http.NewResponseController(w).Flush()
				h.abandon(r.Context(), pending.res)
			}
		}
	})
}

// selfService reports the calls a key may always make, whatever its
// allowedPaths: reading its own limits and spend, and the models it may use.
// They cost nothing and reach no provider.
func selfService(r *http.Request) bool {
	return r.Method == http.MethodGet && (r.URL.Path == "/v1/key/info" || r.URL.Path == "/v1/models")
}

// responseStarted marks an error that happened after the status line was
// sent: it can only be logged.
type responseStarted struct{ err error }

func (e *responseStarted) Error() string { return e.err.Error() }
func (e *responseStarted) Unwrap() error { return e.err }

// bearer returns the client's stipend key from Authorization or x-api-key.
func bearer(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			return strings.TrimSpace(a[7:])
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

var errUnknownKey = apierror.New(http.StatusUnauthorized, apierror.CodeInvalidAPIKey, "invalid API key")

func (h *Handler) authenticate(r *http.Request) (*apikey.Key, error) {
	token := bearer(r)
	if token == "" {
		return nil, apierror.New(http.StatusUnauthorized, apierror.CodeInvalidAPIKey,
			"missing API key: send it as 'Authorization: Bearer <key>'")
	}
	id, err := apikey.Parse(token)
	if err != nil {
		return nil, errUnknownKey
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReserveTimeout)
	defer cancel()
	key, err := h.keys.Get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, errUnknownKey
		}
		return nil, apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"the key store is unavailable; try again shortly")
	}
	if !apikey.Matches(token, key.Hash) {
		return nil, errUnknownKey
	}
	if key.Suspended {
		// An admin may have lifted it since it was cached: a lift applies
		// at the next request, as a suspension does (through the version
		// its reservation checks). Suspended keys are rare; read it again.
		h.keys.Forget(id)
		if key, err = h.keys.Get(ctx, id); err != nil {
			return nil, storeUnavailable(err)
		}
	}
	return key, h.checkKey(key)
}

// checkKey refuses a revoked, suspended or expired key.
func (h *Handler) checkKey(key *apikey.Key) error {
	switch {
	case key.Revoked:
		return apierror.New(http.StatusUnauthorized, apierror.CodeKeyRevoked, "this key has been revoked")
	case key.Suspended:
		return apierror.New(http.StatusUnauthorized, apierror.CodeKeySuspended,
			fmt.Sprintf("this key is suspended (%s); ask your instructor to lift the suspension", key.SuspendedReason))
	case key.Expired(h.cfg.Now()):
		return apierror.New(http.StatusUnauthorized, apierror.CodeKeyExpired, "this key has expired")
	}
	return nil
}

// isNotFound reports a store's not-found error, recognised by its
// NotFound() bool method (as net.Error is by Timeout()).
func isNotFound(err error) bool {
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}

// models lists the models this key may use, in OpenAI's list format.
func (h *Handler) models(w http.ResponseWriter, r *http.Request, key *apikey.Key) error {
	names := h.servable(r.Context(), key) // route.go
	if len(key.AllowedModels) > 0 {
		// The key's own list, less what none of its settings can serve.
		names = slices.DeleteFunc(slices.Clone(key.AllowedModels), func(m string) bool {
			_, aliased := key.Aliases[m]
			return !aliased && !slices.Contains(names, m)
		})
	}
	names = withAliases(key, names) // alias.go
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: make([]model, 0, len(names))}
	for _, n := range names {
		out.Data = append(out.Data, model{ID: n, Object: "model", OwnedBy: "stipend"})
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// forgetStaleSecret drops the cached provider key of p when p's KeyVersion
// is higher than any this handler has seen for that secret: the key was
// changed since it was cached. Versions only move up, so a request that read
// the setting just before a change cannot undo the next one's refresh.
func (h *Handler) forgetStaleSecret(p *provider.Setting) {
	h.keyVersionMu.Lock()
	seen, ok := h.keyVersions[p.SecretID]
	stale := !ok || p.KeyVersion > seen
	if stale {
		h.keyVersions[p.SecretID] = p.KeyVersion
	}
	h.keyVersionMu.Unlock()
	if f, caches := h.cfg.Secrets.(forgetter); caches && stale && ok {
		f.Forget(p.SecretID)
	}
}
