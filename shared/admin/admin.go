// Package admin is stipend's admin API: an http.Handler that manages provider
// settings, proxy secret keys, users and the organisation's limits, and
// reports usage. Paths, field names and response shapes follow the BricksAI
// reference (shared/seeds/003_c1386e2febb3792e.txt); JSON is camelCase and
// times are seconds since the epoch.
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
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/pages"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/user"
)

// Store is the storage the admin API uses; *dynamo.Store implements it.
// A missing item is an error with a NotFound() bool method that returns true;
// UpdateKey reports a concurrent change with dynamo.ErrConflict.
type Store interface {
	CreateProvider(ctx context.Context, p *provider.Setting) error
	UpdateProvider(ctx context.Context, p *provider.Setting) error
	GetProvider(ctx context.Context, id string) (*provider.Setting, error)
	ListProviders(ctx context.Context) ([]*provider.Setting, error)

	CreateKey(ctx context.Context, k *apikey.Key) error
	UpdateKey(ctx context.Context, k *apikey.Key) error
	GetKey(ctx context.Context, id string) (*apikey.Key, error)
	ListKeys(ctx context.Context) ([]*apikey.Key, error)

	// Events calls each for every event of keyID created in [start, end), oldest first.
	Events(ctx context.Context, keyID string, start, end time.Time, each func(*ledger.Event) error) error

	// Users are keyed by UserID; UpdateUser is optimistic like UpdateKey.
	CreateUser(ctx context.Context, u *user.User) error
	UpdateUser(ctx context.Context, u *user.User) error
	GetUser(ctx context.Context, userID string) (*user.User, error)
	ListUsers(ctx context.Context) ([]*user.User, error)

	// GetOrg returns the zero Org (Version 0) when none is stored; PutOrg
	// writes only over o.Version (dynamo.ErrConflict otherwise) and bumps it.
	GetOrg(ctx context.Context) (*user.Org, error)
	PutOrg(ctx context.Context, o *user.Org) error

	// Reports: daily aggregates and custom ids (reporting.go).
	Reports

	// KeyTotals returns a key's lifetime counters (zero when it has none yet).
	KeyTotals(ctx context.Context, id string) (dynamo.Totals, error)
	// The audit trail (audit.go).
	AuditStore
	// Roster markers: each user's one roster key (bulk.go).
	RosterStore
	// Event listings (events.go).
	EventStore
	// Monthly statements and month-to-date figures (statements.go).
	StatementStore
}

var _ Store = (*dynamo.Store)(nil)

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
	mux *http.ServeMux
}

// maxBodyBytes bounds request bodies; DynamoDB items are at most 400 KB.
const maxBodyBytes = 256 << 10

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PricedModel == nil {
		cfg.PricedModel = embeddedPrices()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
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
	h.mux.Handle("POST /api/v1/secret-keys/bulk", h.handle(h.createRoster))
	h.mux.Handle("POST /api/v1/secret-keys/bulk-update", h.handle(h.bulkUpdate))
	h.mux.Handle("POST /api/v1/secret-keys/bulk-revoke", h.handle(h.bulkRevoke))
	h.mux.Handle("GET /api/v1/users", h.handle(h.listUsers))
	h.mux.Handle("POST /api/v1/users", h.handle(h.createUser))
	h.mux.Handle("GET /api/v1/users/{userId}", h.handle(h.getUser))
	h.mux.Handle("PATCH /api/v1/users/{userId}", h.handle(h.updateUser))
	h.mux.Handle("GET /api/v1/organization", h.handle(h.getOrg))
	h.mux.Handle("PATCH /api/v1/organization", h.handle(h.updateOrg))
	h.registerReporting()
	h.routeLifecycle()
	h.routeLiteLLM()
	h.routeAudit()
	h.routeEvents()
	h.routeStatements()
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
			// error or not, is complete (audit.go).
			var recordAudit func()
			w, r, recordAudit = h.beginAudit(w, r)
			defer recordAudit()
			err = fn(w, r)
		}
		if err != nil {
			apierror.Write(w, r, h.cfg.Log, err)
		}
	})
}

// CodeConflict answers a write that lost a race with another writer.
const CodeConflict = "conflict"

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

// writeJSON sends v with status. It encodes before writing anything, so an
// encoding failure can still become an error response.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// storeError turns a storage failure into the client's error; what names the
// item ("secret key abc").
func storeError(err error, what string) error {
	var nf interface{ NotFound() bool }
	switch {
	case errors.As(err, &nf) && nf.NotFound():
		return apierror.New(http.StatusNotFound, apierror.CodeNotFound, what+" not found")
	case errors.Is(err, dynamo.ErrConflict):
		return apierror.New(http.StatusConflict, CodeConflict, what+" was changed concurrently, try again")
	case errors.Is(err, dynamo.ErrExists):
		return apierror.New(http.StatusConflict, CodeConflict, what+" already exists")
	default:
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"storage is unavailable, try again later")
	}
}

// invalid is a 400 naming the offending field.
func invalid(param, format string, args ...any) error {
	return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, fmt.Sprintf(format, args...)).WithParam(param)
}

// mustBe is the 400 for a field that breaks its rule: "<field> must be <rule>".
func mustBe(field, rule string) error { return invalid(field, "%s must be %s", field, rule) }

// decodeObject reads the request body, a JSON object, into dst: a pointer to
// a struct whose fields are all pointers tagged `json:"<name>"` and
// `rule:"<what the value must be>"`. A field absent from the body (or null)
// stays nil, so an update can tell "absent" from "zero"; a value of the wrong
// type is a 400 naming the field and its rule. A field dst does not know is
// a 400 naming it: a typo (costLimitInUsdLifetme) must never pass silently
// and leave a key without the limit its author meant.
func decodeObject(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeRequestTooLarge,
				fmt.Sprintf("request body is larger than %d bytes", maxBodyBytes))
		}
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest, "could not read the request body")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body must be a JSON object")
	}
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	known := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	if err := unknownFields(raw, known); err != nil {
		return err
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		msg, ok := raw[name]
		if !ok || bytes.Equal(bytes.TrimSpace(msg), []byte("null")) {
			continue
		}
		p := reflect.New(f.Type.Elem())
		if err := json.Unmarshal(msg, p.Interface()); err != nil {
			return mustBe(name, f.Tag.Get("rule"))
		}
		v.Field(i).Set(p)
	}
	return nil
}

// unknownFields is the 400 for the names in raw that known lacks, naming
// every one (sorted) and pointing param at the first; nil when all are known.
func unknownFields(raw map[string]json.RawMessage, known map[string]bool) error {
	var unknown []string
	for name := range raw {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	quoted := make([]string, len(unknown))
	for i, n := range unknown {
		quoted[i] = strconv.Quote(n)
	}
	what := "unknown field " + quoted[0]
	if len(unknown) > 1 {
		what = "unknown fields " + strings.Join(quoted, ", ")
	}
	return invalid(unknown[0], "%s: this route does not take it (check the spelling; the README lists each route's fields)", what)
}

// wholeNumber is a JSON integer; integral values written as floats (10.0,
// 1e3) are accepted, since some clients send every number as a float.
type wholeNumber int64

func (n *wholeNumber) UnmarshalJSON(b []byte) error {
	var num json.Number
	if len(b) > 0 && b[0] == '"' {
		return errors.New("a string is not an integer")
	}
	if err := json.Unmarshal(b, &num); err != nil {
		return err
	}
	if i, err := num.Int64(); err == nil {
		*n = wholeNumber(i)
		return nil
	}
	f, err := num.Float64()
	if err != nil || f > 1<<53 || f < -(1<<53) || f != float64(int64(f)) {
		return fmt.Errorf("%s is not an integer", num)
	}
	*n = wholeNumber(int64(f))
	return nil
}

// validName checks a required display name.
func validName(field string, s *string) error {
	if s == nil || strings.TrimSpace(*s) == "" {
		return invalid(field, "%s is required and must be a non-empty string", field)
	}
	if len(*s) > 256 {
		return invalid(field, "%s must be at most 256 characters", field)
	}
	return nil
}

// nonEmpty returns list, or an empty (non-nil) slice, so JSON shows [] rather than null.
func nonEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
