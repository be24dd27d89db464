package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/storeerr"
)

// ---- small hand-written fakes ----

type notFoundErr struct{}

func (notFoundErr) Error() string  { return "not found" }
func (notFoundErr) NotFound() bool { return true }

// fakeStore is an in-memory Store. It copies what goes in and out, as a real
// store would.
type fakeStore struct {
	mu         sync.Mutex
	providers  map[string]*provider.Setting
	keys       map[string]*apikey.Key
	events     []*ledger.Event
	fail       error // when set, every call fails with it
	failEvents error // when set, Events fails with it
	// conflicts makes the next UpdateKey calls fail with ErrConflict after
	// running otherWriter (someone else's write that won the race).
	conflicts   int
	otherWriter func(k *apikey.Key)
	updateCalls int
	userState   // users and the organisation: users_test.go
	auditState  // audit entries and key totals: audit_test.go
	rosterState // roster markers: bulk_test.go
	statementState
}

func newFakeStore() *fakeStore {
	return &fakeStore{providers: map[string]*provider.Setting{}, keys: map[string]*apikey.Key{}, userState: newUserState()}
}

func cloneKey(k *apikey.Key) *apikey.Key {
	c := *k
	c.Tags = slices.Clone(k.Tags)
	c.SettingIDs = slices.Clone(k.SettingIDs)
	c.AllowedModels = slices.Clone(k.AllowedModels)
	c.AllowedPaths = slices.Clone(k.AllowedPaths)
	c.ModelLimits = maps.Clone(k.ModelLimits)
	c.Metadata = maps.Clone(k.Metadata)
	c.Aliases = maps.Clone(k.Aliases)
	return &c
}

func cloneProvider(p *provider.Setting) *provider.Setting {
	c := *p
	c.AllowedModels = slices.Clone(p.AllowedModels)
	return &c
}

func (s *fakeStore) CreateProvider(_ context.Context, p *provider.Setting) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if _, ok := s.providers[p.ID]; ok {
		return storeerr.ErrExists
	}
	s.providers[p.ID] = cloneProvider(p)
	return nil
}

func (s *fakeStore) UpdateProvider(_ context.Context, p *provider.Setting) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if _, ok := s.providers[p.ID]; !ok {
		return notFoundErr{}
	}
	s.providers[p.ID] = cloneProvider(p)
	return nil
}

func (s *fakeStore) GetProvider(_ context.Context, id string) (*provider.Setting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	p, ok := s.providers[id]
	if !ok {
		return nil, fmt.Errorf("provider %s: %w", id, notFoundErr{})
	}
	return cloneProvider(p), nil
}

func (s *fakeStore) ListProviders(context.Context) ([]*provider.Setting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []*provider.Setting
	for _, p := range s.providers {
		out = append(out, cloneProvider(p))
	}
	slices.SortFunc(out, func(a, b *provider.Setting) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *fakeStore) CreateKey(_ context.Context, k *apikey.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if _, ok := s.keys[k.ID]; ok {
		return storeerr.ErrExists
	}
	k.Version = 1
	s.keys[k.ID] = cloneKey(k)
	return nil
}

func (s *fakeStore) UpdateKey(_ context.Context, k *apikey.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updateCalls++
	if s.fail != nil {
		return s.fail
	}
	cur, ok := s.keys[k.ID]
	if !ok {
		return notFoundErr{}
	}
	if s.conflicts > 0 {
		s.conflicts--
		if s.otherWriter != nil {
			s.otherWriter(cur)
		}
		cur.Version++
	}
	if cur.Version != k.Version {
		return fmt.Errorf("key %s: %w", k.ID, storeerr.ErrConflict)
	}
	k.Version++
	s.keys[k.ID] = cloneKey(k)
	return nil
}

func (s *fakeStore) GetKey(_ context.Context, id string) (*apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	k, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("key %s: %w", id, notFoundErr{})
	}
	return cloneKey(k), nil
}

func (s *fakeStore) ListKeys(context.Context) ([]*apikey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []*apikey.Key
	for _, k := range s.keys {
		out = append(out, cloneKey(k))
	}
	slices.SortFunc(out, func(a, b *apikey.Key) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *fakeStore) Events(_ context.Context, keyID string, start, end time.Time, each func(*ledger.Event) error) error {
	s.mu.Lock()
	if err := cmp.Or(s.fail, s.failEvents); err != nil {
		s.mu.Unlock()
		return err
	}
	var list []ledger.Event
	for _, ev := range s.events {
		if ev.KeyID == keyID && ev.CreatedAt >= start.UnixMilli() && ev.CreatedAt < end.UnixMilli() {
			list = append(list, *ev)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b ledger.Event) int { return int(a.CreatedAt - b.CreatedAt) })
	for i := range list {
		if err := each(&list[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeStore) key(t *testing.T, id string) *apikey.Key {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		t.Fatalf("key %s not stored", id)
	}
	return cloneKey(k)
}

// fakeSecrets records every Put.
type fakeSecrets struct {
	mu   sync.Mutex
	puts []struct{ name, value string }
	fail error
}

func (f *fakeSecrets) Put(_ context.Context, name, value string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.puts = append(f.puts, struct{ name, value string }{name, value})
	return "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + name + "-AbCdEf", nil
}

// ---- harness ----

const adminKey = "adm-0123456789abcdef-secret"

var testNow = time.Unix(1_700_000_000, 0)

type env struct {
	h       *Handler
	store   *fakeStore
	secrets *fakeSecrets
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{store: newFakeStore(), secrets: &fakeSecrets{}, logs: &syncBuffer{}}
	e.h = New(Config{
		Store: e.store, Secrets: e.secrets, SecretPrefix: "stipend/provider/",
		AdminKey: func(context.Context) (string, error) { return adminKey, nil },
		Log:      slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:      func() time.Time { return testNow },
	})
	return e
}

// configure changes e's configuration: the handler is built again from it,
// over the same store, secrets and logs.
func (e *env) configure(change func(c *Config)) {
	cfg := e.h.cfg
	change(&cfg)
	e.h = New(cfg)
}

// do sends a request with the admin key and returns the response.
func (e *env) do(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	return e.doAuth(t, method, path, body, "Bearer "+adminKey)
}

func (e *env) doAuth(t *testing.T, method, path, body, auth string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// decode checks the status and decodes the JSON body into v.
func decode(t *testing.T, rec *httptest.ResponseRecorder, status int, v any) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("decode %s: %v", rec.Body, err)
		}
	}
}

// wantError checks an error response's status, code and param (when param != "").
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, param string) apierror.Body {
	t.Helper()
	var b apierror.Body
	decode(t, rec, status, &b)
	if b.Error.Code != code {
		t.Fatalf("code = %q, want %q; body %s", b.Error.Code, code, rec.Body)
	}
	if param != "" && (b.Error.Param == nil || *b.Error.Param != param) {
		t.Fatalf("param = %v, want %q; body %s", b.Error.Param, param, rec.Body)
	}
	return b
}

// addProvider stores a provider setting directly.
func (e *env) addProvider(id string) {
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	e.store.providers[id] = &provider.Setting{ID: id, Name: id, Provider: provider.OpenAI, SecretID: "arn:" + id}
}

// ---- auth ----

func TestAuth(t *testing.T) {
	_, proxyKey := apikey.Generate()
	tests := []struct {
		name   string
		method string
		path   string
		auth   string
		status int
		code   string
	}{
		{"healthz needs no key", "GET", "/healthz", "", 200, ""},
		{"no header", "GET", "/api/v1/providers", "", 401, apierror.CodeInvalidAPIKey},
		{"empty bearer", "GET", "/api/v1/providers", "Bearer ", 401, apierror.CodeInvalidAPIKey},
		{"wrong key", "GET", "/api/v1/providers", "Bearer nope", 401, apierror.CodeInvalidAPIKey},
		{"key as prefix", "GET", "/api/v1/providers", "Bearer " + adminKey[:len(adminKey)-1], 401, apierror.CodeInvalidAPIKey},
		{"proxy key", "GET", "/api/v1/secret-keys", "Bearer " + proxyKey, 401, apierror.CodeInvalidAPIKey},
		{"not bearer", "GET", "/api/v1/providers", "Basic " + adminKey, 401, apierror.CodeInvalidAPIKey},
		{"bare key", "GET", "/api/v1/providers", adminKey, 401, apierror.CodeInvalidAPIKey},
		{"write without key", "POST", "/api/v1/secret-keys", "", 401, apierror.CodeInvalidAPIKey},
		{"unknown path without key", "GET", "/api/v1/nothing", "", 401, apierror.CodeInvalidAPIKey},
		{"right key", "GET", "/api/v1/providers", "Bearer " + adminKey, 200, ""},
		{"scheme is case-insensitive", "GET", "/api/v1/secret-keys", "bearer " + adminKey, 200, ""},
		{"unknown path with key", "GET", "/api/v1/nothing", "Bearer " + adminKey, 404, apierror.CodeNotFound},
		{"wrong method", "PUT", "/api/v1/secret-keys/abc", "Bearer " + adminKey, 405, CodeMethodNotAllowed},
		{"wrong method on a list", "PUT", "/api/v1/providers", "Bearer " + adminKey, 405, CodeMethodNotAllowed},
		{"wrong method without key", "PUT", "/api/v1/secret-keys/abc", "", 401, apierror.CodeInvalidAPIKey},
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.doAuth(t, tc.method, tc.path, `{}`, tc.auth)
			if tc.code != "" {
				wantError(t, rec, tc.status, tc.code, "")
				return
			}
			decode(t, rec, tc.status, nil)
		})
	}
	if got := e.doAuth(t, "GET", "/healthz", "", "").Body.String(); got != `{"status":"ok"}` {
		t.Errorf("healthz body = %s", got)
	}
	if got := e.do(t, "PUT", "/api/v1/secret-keys/abc", "").Header().Get("Allow"); got != "GET, PATCH, DELETE" {
		t.Errorf("Allow = %q", got)
	}
}

func TestAuthAdminKeyUnavailable(t *testing.T) {
	for name, fn := range map[string]func(context.Context) (string, error){
		"error": func(context.Context) (string, error) { return "", errors.New("secretsmanager: throttled") },
		"empty": func(context.Context) (string, error) { return "", nil },
		"nil":   nil,
	} {
		t.Run(name, func(t *testing.T) {
			h := New(Config{Store: newFakeStore(), AdminKey: fn})
			req := httptest.NewRequest("GET", "/api/v1/providers", nil)
			req.Header.Set("Authorization", "Bearer "+adminKey)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			b := wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
			if strings.Contains(rec.Body.String(), "throttled") {
				t.Errorf("cause leaked: %s", rec.Body)
			}
			_ = b
			// healthz stays open.
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != 200 {
				t.Errorf("healthz = %d", rec.Code)
			}
		})
	}
}

func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	e.store.fail = errors.New("dynamodb: connection refused to 10.0.0.7")
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/providers", ""},
		{"GET", "/api/v1/secret-keys", ""},
		{"GET", "/api/v1/secret-keys/abc", ""},
		{"PATCH", "/api/v1/secret-keys/abc", `{"name":"x"}`},
		{"POST", "/api/v1/secret-keys", `{"name":"x","providerSettingIds":["p1"]}`},
	} {
		rec := e.do(t, tc.method, tc.path, tc.body)
		wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
		if strings.Contains(rec.Body.String(), "10.0.0.7") {
			t.Errorf("%s %s leaked the cause: %s", tc.method, tc.path, rec.Body)
		}
	}
}

func TestBodyErrors(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.do(t, "POST", "/api/v1/secret-keys", `not json`), 400, apierror.CodeInvalidRequest, "")
	wantError(t, e.do(t, "POST", "/api/v1/secret-keys", `[1,2]`), 400, apierror.CodeInvalidRequest, "")
	wantError(t, e.do(t, "POST", "/api/v1/secret-keys", ``), 400, apierror.CodeInvalidRequest, "")
	big := `{"name":"` + strings.Repeat("a", request.MaxBodyBytes) + `"}`
	wantError(t, e.do(t, "POST", "/api/v1/secret-keys", big), 413, apierror.CodeRequestTooLarge, "")
}
