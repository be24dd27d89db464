// Package admin is stipend's admin API: an http.Handler that manages provider
// settings, proxy secret keys, users and the organisation's limits, and
// reports usage. Paths, field names and response shapes follow BricksAI's
// admin API; JSON is camelCase and times are seconds since the epoch.
//
// Every route except GET /healthz and the dashboard's page and files (GET /
// and GET /ui/..., shared/pages) needs "Authorization: Bearer <admin key>".
// Errors use the proxy's format, {"error": {"message", "type", "param",
// "code"}}, written in one place (Handler.handle): route handlers only
// return errors.
//
// Secrets never leave: provider API keys go to Secrets Manager and are not
// returned or logged, and a proxy key's plaintext appears once, in the
// response that creates it; only its hash is stored.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/admin/audit"
	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/litellm"
	"github.com/stipend/stipend/shared/admin/reporting"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/admin/roster"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/pages"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/user"
)

// Store is all the storage the admin API uses, composed of the small
// interfaces each job declares, here and in packages roster, reporting and
// litellm; New hands each handler only its own. *dynamo.Store implements
// it. A missing item is storeerr.ErrNotFound (or any error with a
// NotFound() bool method that returns true); a write that lost a race is
// storeerr.ErrConflict, a create of an existing item storeerr.ErrExists
// (all wrapped).
type Store interface {
	ProviderStore
	KeyStore
	UserStore
	reporting.Events
	reporting.Aggregates
	reporting.Statements
	AuditStore       // audit.go
	roster.Enrolment // package roster
	litellm.Keys     // package litellm (KeyTotals)
}

// ProviderStore keeps provider settings (providers.go).
type ProviderStore interface {
	CreateProvider(ctx context.Context, p *provider.Setting) error
	UpdateProvider(ctx context.Context, p *provider.Setting) error
	GetProvider(ctx context.Context, id string) (*provider.Setting, error)
	ListProviders(ctx context.Context) ([]*provider.Setting, error)
}

// KeyStore keeps proxy secret keys (keys.go, lifecycle.go, listing.go).
type KeyStore interface {
	CreateKey(ctx context.Context, k *apikey.Key) error
	// UpdateKey writes only over k.Version (storeerr.ErrConflict otherwise).
	UpdateKey(ctx context.Context, k *apikey.Key) error
	GetKey(ctx context.Context, id string) (*apikey.Key, error)
	ListKeys(ctx context.Context) ([]*apikey.Key, error)
}

// UserStore keeps users, keyed by UserID, and the organisation's settings
// (users.go).
type UserStore interface {
	CreateUser(ctx context.Context, u *user.User) error
	// UpdateUser is optimistic like UpdateKey.
	UpdateUser(ctx context.Context, u *user.User) error
	GetUser(ctx context.Context, userID string) (*user.User, error)
	ListUsers(ctx context.Context) ([]*user.User, error)
	// GetOrg returns the zero Org (Version 0) when none is stored; PutOrg
	// writes only over o.Version (storeerr.ErrConflict otherwise) and bumps it.
	GetOrg(ctx context.Context) (*user.Org, error)
	PutOrg(ctx context.Context, o *user.Org) error
}

// SecretWriter stores a secret value under name (creating it or adding a new
// version) and returns the id to read it back with (its ARN).
// *secrets.Manager implements it.
type SecretWriter interface {
	Put(ctx context.Context, name, value string) (string, error)
}

// Config wires a Handler. Store, Secrets and AdminKey are required.
type Config struct {
	Store   Store
	Secrets SecretWriter
	// SecretPrefix names provider API keys in Secrets Manager:
	// SecretPrefix + provider id.
	SecretPrefix string
	// AdminKey returns the admin bearer key. An error, or an empty key,
	// makes every authenticated route answer 503.
	AdminKey func(ctx context.Context) (string, error)
	// Vault seals the plaintext of ANYTIME_BY_VIEWER keys so they can be read
	// back (lifecycle.go); nil refuses that retrieval method.
	Vault Vault
	Log   *slog.Logger
	Now   func() time.Time
	// PricedModel reports whether the proxy can price model, so a key's
	// allowedModels never names a model every request would be refused
	// for. nil: the embedded price table (pricing.Default).
	PricedModel func(model string) bool
}

// Handler serves the admin API. It is safe for concurrent use.
type Handler struct {
	cfg Config
	// The store, through the small interface each job of this package
	// declares (cfg.Store is them all, for the packages wired below).
	providers ProviderStore
	keys      KeyStore
	users     UserStore
	spend     SpendReader
	auditLog  AuditStore

	rules   form.Rules // the key and user forms' rules, with cfg's prices and vault
	reports *reporting.Handler
	mux     *http.ServeMux
	audit   *audit.Recorder
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PricedModel == nil {
		cfg.PricedModel = form.EmbeddedPrices()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), audit: &audit.Recorder{Store: cfg.Store, Log: cfg.Log, Now: cfg.Now}}
	h.providers, h.keys, h.users, h.spend, h.auditLog = cfg.Store, cfg.Store, cfg.Store, cfg.Store, cfg.Store
	h.rules = form.Rules{PricedModel: cfg.PricedModel}
	if cfg.Vault != nil {
		h.rules.Vault = cfg.Vault
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	h.mux.Handle("GET /api/v1/providers", h.handle(h.listProviders))
	h.mux.Handle("POST /api/v1/providers", h.handle(h.createProvider))
	h.mux.Handle("PATCH /api/v1/providers/{id}", h.handle(h.updateProvider))
	h.mux.Handle("GET /api/v1/secret-keys", h.handle(h.listKeys))
	h.mux.Handle("POST /api/v1/secret-keys", h.handle(h.createKey))
	h.mux.Handle("GET /api/v1/secret-keys/{keyId}", h.handle(h.getKey))
	h.mux.Handle("PATCH /api/v1/secret-keys/{keyId}", h.handle(h.updateKey))
	h.reports = reporting.New(reporting.Config{
		Owners: cfg.Store, Events: cfg.Store, Aggregates: cfg.Store, Statements: cfg.Store, Now: cfg.Now,
	})
	bulk := roster.New(roster.Config{
		Enrolment: cfg.Store, Keys: cfg.Store, Users: cfg.Store, Providers: cfg.Store,
		Rules: h.rules, Log: cfg.Log, Now: cfg.Now,
	})
	h.mux.Handle("POST /api/v1/secret-keys/bulk", h.handle(bulk.Enrol))
	h.mux.Handle("POST /api/v1/secret-keys/bulk-update", h.handle(bulk.Update))
	h.mux.Handle("POST /api/v1/secret-keys/bulk-revoke", h.handle(bulk.Revoke))
	h.mux.Handle("GET /api/v1/users", h.handle(h.listUsers))
	h.mux.Handle("POST /api/v1/users", h.handle(h.createUser))
	h.mux.Handle("GET /api/v1/users/{userId}", h.handle(h.getUser))
	h.mux.Handle("PATCH /api/v1/users/{userId}", h.handle(h.updateUser))
	h.mux.Handle("GET /api/v1/organization", h.handle(h.getOrg))
	h.mux.Handle("PATCH /api/v1/organization", h.handle(h.updateOrg))
	h.mux.Handle("POST /api/v1/reporting/events", h.handle(h.reports.ReportEvents))
	h.mux.Handle("POST /api/v1/reporting/events-by-day", h.handle(h.reports.EventsByDay))
	h.mux.Handle("GET /api/v1/custom-ids", h.handle(h.reports.CustomIDs))
	h.routeLifecycle()
	lite := litellm.New(litellm.Config{
		Keys: cfg.Store, Users: cfg.Store, Providers: cfg.Store, Rules: h.rules, Log: cfg.Log, Now: cfg.Now,
	})
	h.mux.Handle("POST /key/generate", h.handle(lite.Generate))
	h.mux.Handle("GET /key/info", h.handle(lite.KeyInfo))
	h.mux.Handle("POST /user/new", h.handle(lite.NewUser))
	h.routeAudit()
	h.mux.Handle("GET /api/v1/events", h.handle(h.reports.ListEvents))
	h.mux.Handle("GET /api/events", h.handle(h.reports.LegacyEvents)) // BricksLLM's, kept for its clients
	h.mux.Handle("GET /api/v1/secret-keys/{keyId}/statements", h.handle(h.reports.KeyStatements))
	h.mux.Handle("GET /api/v1/users/{userId}/statements", h.handle(h.reports.UserStatements))
	h.mux.Handle("GET /{$}", pages.Dashboard()) // the dashboard (shared/pages); its API calls authenticate
	h.mux.Handle("GET "+pages.AssetPrefix, pages.Assets())
	h.mux.Handle("/", h.handle(h.unknown))
	return h
}

// CodeMethodNotAllowed answers a known path called with the wrong method.
const CodeMethodNotAllowed = "method_not_allowed"

// unknown answers what no route matched: 405 (with Allow) when the path
// exists for other methods, else 404.
func (h *Handler) unknown(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		if _, pattern := h.mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return apierror.New(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
	}
	return apierror.New(http.StatusNotFound, apierror.CodeNotFound,
		fmt.Sprintf("unknown endpoint %s %s", r.Method, r.URL.Path))
}

// ServeHTTP serves the admin API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// handle authenticates the request, runs fn, and turns the error fn returns
// into the error response: the one place errors become HTTP responses.
func (h *Handler) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h.authenticate(r)
		if err == nil {
			// Changes (and key reads) are recorded once the response,
			// error or not, is complete (package audit).
			var recordAudit func()
			w, r, recordAudit = h.audit.Begin(w, r)
			defer recordAudit()
			err = fn(w, r)
		}
		if err != nil {
			apierror.Write(w, r, h.cfg.Log, err)
		}
	})
}

// CodeConflict answers a write that lost a race with another writer.
const CodeConflict = response.CodeConflict

var errUnauthorized = apierror.New(http.StatusUnauthorized, apierror.CodeInvalidAPIKey,
	"invalid admin key: send it as 'Authorization: Bearer <admin key>'")

// authenticate checks the bearer token against the admin key in constant
// time. Both are hashed first so that the comparison does not reveal the
// key's length either.
func (h *Handler) authenticate(r *http.Request) error {
	a := r.Header.Get("Authorization")
	if len(a) <= 7 || !strings.EqualFold(a[:7], "bearer ") {
		return errUnauthorized
	}
	token := strings.TrimSpace(a[7:])
	if token == "" {
		return errUnauthorized
	}
	if h.cfg.AdminKey == nil {
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeServiceUnavailable, "admin key is not configured")
	}
	want, err := h.cfg.AdminKey(r.Context())
	if err != nil || want == "" {
		if err == nil {
			err = errors.New("admin key is empty")
		}
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"admin key is unavailable, try again later")
	}
	got, exp := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(want))
	if subtle.ConstantTimeCompare(got[:], exp[:]) != 1 {
		return errUnauthorized
	}
	return nil
}

// invalid is request.Invalid: a 400 naming the offending field.
func invalid(param, format string, args ...any) error { return request.Invalid(param, format, args...) }

// mustBe is request.MustBe: "<field> must be <rule>".
func mustBe(field, rule string) error { return request.MustBe(field, rule) }

// decodeObject is request.Decode: the body, a JSON object, into dst, a
// struct of pointer fields; unknown and mistyped fields are 400s naming them.
func decodeObject(w http.ResponseWriter, r *http.Request, dst any) error {
	return request.Decode(w, r, dst)
}
