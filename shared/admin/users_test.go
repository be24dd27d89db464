package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/storeerr"
	"github.com/stipend/stipend/shared/user"
)

// ---- the fake store's users and organisation ----

// userState is fakeStore's users and organisation settings, guarded by its mu.
type userState struct {
	users map[string]*user.User
	org   user.Org
	// userConflicts (orgConflicts) makes the next UpdateUser (PutOrg) calls
	// fail with ErrConflict after running userWriter (orgWriter): someone
	// else's write that won the race.
	userConflicts   int
	userWriter      func(u *user.User)
	userUpdateCalls int
	orgConflicts    int
	orgWriter       func(o *user.Org)
	orgPutCalls     int
}

// keyTestUsers exist in every new fake store: the key tests attach keys to
// them, and a key's userId must name an existing user.
var keyTestUsers = []string{"student-7", "u2"}

func newUserState() userState {
	s := userState{users: map[string]*user.User{}}
	for _, id := range keyTestUsers {
		s.users[id] = &user.User{ID: "id-" + id, UserID: id, Name: id, Tags: []string{}, Version: 1}
	}
	return s
}

func cloneUser(u *user.User) *user.User {
	c := *u
	c.Tags = slices.Clone(u.Tags)
	return &c
}

func (s *fakeStore) CreateUser(_ context.Context, u *user.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if _, ok := s.users[u.UserID]; ok {
		return fmt.Errorf("user %s: %w", u.UserID, storeerr.ErrExists)
	}
	u.Version = 1
	s.users[u.UserID] = cloneUser(u)
	return nil
}

func (s *fakeStore) UpdateUser(_ context.Context, u *user.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userUpdateCalls++
	if s.fail != nil {
		return s.fail
	}
	cur, ok := s.users[u.UserID]
	if !ok {
		return fmt.Errorf("user %s: %w", u.UserID, notFoundErr{})
	}
	if s.userConflicts > 0 {
		s.userConflicts--
		if s.userWriter != nil {
			s.userWriter(cur)
		}
		cur.Version++
	}
	if cur.Version != u.Version {
		return fmt.Errorf("user %s: %w", u.UserID, storeerr.ErrConflict)
	}
	u.Version++
	s.users[u.UserID] = cloneUser(u)
	return nil
}

func (s *fakeStore) GetUser(_ context.Context, userID string) (*user.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	u, ok := s.users[userID]
	if !ok {
		return nil, fmt.Errorf("user %s: %w", userID, notFoundErr{})
	}
	return cloneUser(u), nil
}

func (s *fakeStore) ListUsers(context.Context) ([]*user.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []*user.User
	for _, u := range s.users {
		out = append(out, cloneUser(u))
	}
	slices.SortFunc(out, func(a, b *user.User) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.UserID, b.UserID))
	})
	return out, nil
}

func (s *fakeStore) GetOrg(context.Context) (*user.Org, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	o := s.org
	return &o, nil
}

func (s *fakeStore) PutOrg(_ context.Context, o *user.Org) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgPutCalls++
	if s.fail != nil {
		return s.fail
	}
	if s.orgConflicts > 0 {
		s.orgConflicts--
		if s.orgWriter != nil {
			s.orgWriter(&s.org)
		}
		s.org.Version++
	}
	if s.org.Version != o.Version {
		return fmt.Errorf("organisation: %w", storeerr.ErrConflict)
	}
	o.Version++
	s.org = *o
	return nil
}

func (s *fakeStore) user(t *testing.T, userID string) *user.User {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[userID]
	if !ok {
		t.Fatalf("user %s not stored", userID)
	}
	return cloneUser(u)
}

// newUserEnv is newEnv without the key tests' users.
func newUserEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.store.users = map[string]*user.User{}
	return e
}

// createUser creates a user through the API and returns the response.
func (e *env) createUser(t *testing.T, body string) userView {
	t.Helper()
	var v userView
	decode(t, e.do(t, "POST", "/api/v1/users", body), 200, &v)
	return v
}

// ---- users ----

// seedUserFields are the fields of a user in the seed's responses.
var seedUserFields = []string{
	"id", "userId", "name", "createdAt", "updatedAt", "tags", "revoked", "revokedReason",
	"costLimitInUsd", "costLimitInUsdOverTime", "costLimitInUsdUnit", "rateLimitOverTime", "rateLimitUnit", "ttl",
}

func TestCreateUserSeedExample(t *testing.T) {
	e := newUserEnv(t)
	// The seed's request, word for word.
	rec := e.do(t, "POST", "/api/v1/users", `{
		"userId": "some-user-id",
		"name": "John Doe",
		"ttl": "never",
		"rateLimitOverTime": 10,
		"rateLimitUnit": "s",
		"costLimitInUsd": 100,
		"costLimitInUsdOverTime": 100,
		"costLimitInUsdUnit": "mo"
	}`)
	decode(t, rec, 200, nil)
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range raw {
			if !yield(k) {
				return
			}
		}
	})
	want := slices.Sorted(slices.Values(append(slices.Clone(seedUserFields), "expiresAt")))
	if !slices.Equal(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	// The seed's response, but for id and times.
	for field, want := range map[string]any{
		"userId": "some-user-id", "name": "John Doe", "createdAt": float64(testNow.Unix()), "updatedAt": float64(testNow.Unix()),
		"tags": []any{}, "revoked": false, "revokedReason": "",
		"costLimitInUsd": float64(100), "costLimitInUsdOverTime": float64(100), "costLimitInUsdUnit": "mo",
		"rateLimitOverTime": float64(10), "rateLimitUnit": "s", "ttl": "", "expiresAt": float64(0),
	} {
		if !reflect.DeepEqual(raw[field], want) {
			t.Errorf("%s = %#v, want %#v", field, raw[field], want)
		}
	}
	if id, _ := raw["id"].(string); id == "" || id == "some-user-id" {
		t.Errorf("id = %q", id)
	}
	stored := e.store.user(t, "some-user-id")
	wantUser := &user.User{
		ID: raw["id"].(string), UserID: "some-user-id", Name: "John Doe",
		CreatedAt: testNow.Unix(), UpdatedAt: testNow.Unix(), Tags: []string{},
		CostLimitLifetime: 100 * money.Dollar, CostLimitOverTime: 100 * money.Dollar, CostLimitUnit: "mo",
		RateLimitOverTime: 10, RateLimitUnit: "s", Version: 1,
	}
	if !reflect.DeepEqual(stored, wantUser) {
		t.Errorf("stored\n %+v\nwant\n %+v", stored, wantUser)
	}
}

func TestCreateUser(t *testing.T) {
	tests := []struct {
		name string
		body string
		want func(u *user.User) // from the defaults: userId "s1", name "Ada"
	}{
		{"minimal", `{"userId":"s1","name":"Ada","ttl":"never"}`, func(u *user.User) {}},
		{"empty ttl is never", `{"userId":"s1","name":"Ada","ttl":""}`, func(u *user.User) {}},
		{"seed ttl 24h", `{"userId":"s1","name":"Ada","ttl":"24h"}`, func(u *user.User) {
			u.TTL, u.ExpiresAt = "24h", testNow.Add(24*time.Hour).Unix()
		}},
		{"seed ttl 720h", `{"userId":"s1","name":"Ada","ttl":"720h"}`, func(u *user.User) {
			u.TTL, u.ExpiresAt = "720h", testNow.Add(720*time.Hour).Unix()
		}},
		{"any key ttl", `{"userId":"s1","name":"Ada","ttl":"90d"}`, func(u *user.User) {
			u.TTL, u.ExpiresAt = "90d", testNow.Add(90*24*time.Hour).Unix()
		}},
		{"trimmed", `{"userId":" s1 ","name":"  Ada ","ttl":" never "}`, func(u *user.User) {}},
		{"units beyond the seed's", `{"userId":"s1","name":"Ada","ttl":"never","rateLimitOverTime":3,"rateLimitUnit":"d","costLimitInUsdOverTime":"0.5","costLimitInUsdUnit":"d"}`, func(u *user.User) {
			u.RateLimitOverTime, u.RateLimitUnit = 3, "d"
			u.CostLimitOverTime, u.CostLimitUnit = 50*money.Cent, "d"
		}},
		{"exact money and lenient numbers", `{"userId":"s1","name":"Ada","ttl":"never","costLimitInUsd":0.000000001,"rateLimitOverTime":5.0,"rateLimitUnit":"m"}`, func(u *user.User) {
			u.CostLimitLifetime, u.RateLimitOverTime, u.RateLimitUnit = money.Nano, 5, "m"
		}},
		{"tags", `{"userId":"s1","name":"Ada","ttl":"never","tags":["cs101","2026"]}`, func(u *user.User) {
			u.Tags = []string{"cs101", "2026"}
		}},
		{"email-like id", `{"userId":"ada.l+cs@uni.example","name":"Ada","ttl":"never"}`, func(u *user.User) {
			u.UserID = "ada.l+cs@uni.example"
		}},
		{"revoked is ignored on create", `{"userId":"s1","name":"Ada","ttl":"never","revoked":true}`, func(u *user.User) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newUserEnv(t)
			v := e.createUser(t, tc.body)
			want := &user.User{ID: v.ID, UserID: "s1", Name: "Ada", CreatedAt: testNow.Unix(), UpdatedAt: testNow.Unix(), Tags: []string{}, Version: 1}
			tc.want(want)
			got := e.store.user(t, want.UserID)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("stored\n %+v\nwant\n %+v", got, want)
			}
			if !reflect.DeepEqual(v, userViewOf(want)) {
				t.Errorf("response\n %+v\nwant\n %+v", v, userViewOf(want))
			}
			if len(v.ID) != 26 {
				t.Errorf("id = %q", v.ID)
			}
		})
	}
}

func TestCreateUserGeneratesUserID(t *testing.T) {
	e := newUserEnv(t)
	seen := map[string]bool{}
	for _, body := range []string{`{"name":"a","ttl":"never"}`, `{"name":"b","ttl":"never","userId":""}`, `{"name":"c","ttl":"never","userId":null}`} {
		v := e.createUser(t, body)
		if !form.ValidUserID(v.UserID) || seen[v.UserID] || v.UserID == v.ID {
			t.Errorf("%s: generated userId %q (id %q)", body, v.UserID, v.ID)
		}
		seen[v.UserID] = true
		e.store.user(t, v.UserID)
	}
}

func TestCreateUserValidation(t *testing.T) {
	long := strings.Repeat("a", form.MaxUserIDLen+1)
	tests := []struct {
		name, body, param, msg string
	}{
		{"missing name", `{"ttl":"never"}`, "name", "name is required"},
		{"blank name", `{"name":"  ","ttl":"never"}`, "name", "name is required"},
		{"name not a string", `{"name":5,"ttl":"never"}`, "name", "name must be a non-empty string"},
		{"missing ttl", `{"name":"n"}`, "ttl", `ttl is required and must be one of "never", "24h", "168h", "720h"`},
		{"bad ttl", `{"name":"n","ttl":"forever"}`, "ttl", `ttl must be one of "never"`},
		{"zero ttl", `{"name":"n","ttl":"0h"}`, "ttl", "ttl must be"},
		{"ttl not a string", `{"name":"n","ttl":24}`, "ttl", "ttl must be"},
		{"userId with a slash", `{"userId":"a/b","name":"n","ttl":"never"}`, "userId", "userId must be 1 to 128 letters, digits"},
		{"userId with a space", `{"userId":"a b","name":"n","ttl":"never"}`, "userId", "userId must be"},
		{"userId too long", `{"userId":"` + long + `","name":"n","ttl":"never"}`, "userId", "userId must be"},
		{"userId not a string", `{"userId":123,"name":"n","ttl":"never"}`, "userId", "userId must be"},
		{"bad rate unit", `{"name":"n","ttl":"never","rateLimitOverTime":5,"rateLimitUnit":"w"}`, "rateLimitUnit", "rateLimitUnit must be one of s, m, h, d"},
		{"rate without unit", `{"name":"n","ttl":"never","rateLimitOverTime":5}`, "rateLimitUnit", "rateLimitUnit is required when rateLimitOverTime"},
		{"negative rate", `{"name":"n","ttl":"never","rateLimitOverTime":-1,"rateLimitUnit":"s"}`, "rateLimitOverTime", "rateLimitOverTime must be a non-negative integer"},
		{"fractional rate", `{"name":"n","ttl":"never","rateLimitOverTime":1.5,"rateLimitUnit":"s"}`, "rateLimitOverTime", "non-negative integer"},
		{"negative lifetime", `{"name":"n","ttl":"never","costLimitInUsd":-1}`, "costLimitInUsd", "costLimitInUsd must be a non-negative number of US dollars"},
		{"non-numeric lifetime", `{"name":"n","ttl":"never","costLimitInUsd":"lots"}`, "costLimitInUsd", "US dollars"},
		{"too precise", `{"name":"n","ttl":"never","costLimitInUsdOverTime":0.0000000001,"costLimitInUsdUnit":"mo"}`, "costLimitInUsdOverTime", "US dollars"},
		{"negative over time", `{"name":"n","ttl":"never","costLimitInUsdOverTime":-2,"costLimitInUsdUnit":"mo"}`, "costLimitInUsdOverTime", "non-negative"},
		{"bad cost unit", `{"name":"n","ttl":"never","costLimitInUsdOverTime":5,"costLimitInUsdUnit":"y"}`, "costLimitInUsdUnit", "one of m, h, d, mo"},
		{"cost over time without unit", `{"name":"n","ttl":"never","costLimitInUsdOverTime":5}`, "costLimitInUsdUnit", "costLimitInUsdUnit is required"},
		{"tags not strings", `{"name":"n","ttl":"never","tags":[1]}`, "tags", "tags must be a list of strings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newUserEnv(t)
			b := wantError(t, e.do(t, "POST", "/api/v1/users", tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if !strings.Contains(b.Error.Message, tc.msg) {
				t.Errorf("message = %q, want it to contain %q", b.Error.Message, tc.msg)
			}
			if len(e.store.users) != 0 {
				t.Errorf("a rejected user was stored")
			}
		})
	}
	e := newUserEnv(t)
	wantError(t, e.do(t, "POST", "/api/v1/users", `not json`), 400, apierror.CodeInvalidRequest, "")
	wantError(t, e.do(t, "POST", "/api/v1/users", `[]`), 400, apierror.CodeInvalidRequest, "")
}

func TestCreateUserDuplicate(t *testing.T) {
	e := newUserEnv(t)
	first := e.createUser(t, `{"userId":"s1","name":"Ada","ttl":"never"}`)
	b := wantError(t, e.do(t, "POST", "/api/v1/users", `{"userId":"s1","name":"Someone else","ttl":"24h"}`), 409, CodeConflict, "")
	if !strings.Contains(b.Error.Message, "already exists") {
		t.Errorf("message = %q", b.Error.Message)
	}
	if got := e.store.user(t, "s1"); got.Name != "Ada" || got.ID != first.ID {
		t.Errorf("the duplicate overwrote the user: %+v", got)
	}
}

func TestGetAndListUsers(t *testing.T) {
	e := newUserEnv(t)
	rec := e.do(t, "GET", "/api/v1/users", "")
	decode(t, rec, 200, nil)
	if strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("empty list = %s", rec.Body)
	}

	a := e.createUser(t, `{"userId":"b-first","name":"First","ttl":"never","tags":["x"]}`)
	e.configure(func(c *Config) { c.Now = func() time.Time { return testNow.Add(time.Second) } })
	b := e.createUser(t, `{"userId":"a-second","name":"Second","ttl":"168h","costLimitInUsd":5}`)

	var list []userView
	decode(t, e.do(t, "GET", "/api/v1/users", ""), 200, &list)
	if !reflect.DeepEqual(list, []userView{a, b}) {
		t.Errorf("list\n %+v\nwant\n %+v", list, []userView{a, b})
	}
	var one userView
	decode(t, e.do(t, "GET", "/api/v1/users/a-second", ""), 200, &one)
	if !reflect.DeepEqual(one, b) {
		t.Errorf("GET one = %+v, want %+v", one, b)
	}
	// Every user shows the seed's fields and expiresAt, lists as [] not null.
	rec = e.do(t, "GET", "/api/v1/users/b-first", "")
	var raw map[string]any
	decode(t, rec, 200, &raw)
	if len(raw) != len(seedUserFields)+1 {
		t.Errorf("fields of %s", rec.Body)
	}
	wantError(t, e.do(t, "GET", "/api/v1/users/ghost", ""), 404, apierror.CodeNotFound, "")
}

func TestPatchUserChangesOnlyNamedFields(t *testing.T) {
	e := newUserEnv(t)
	e.createUser(t, `{"userId":"s1","name":"Ada","ttl":"24h","rateLimitOverTime":10,"rateLimitUnit":"s",
		"costLimitInUsd":100,"costLimitInUsdOverTime":20,"costLimitInUsdUnit":"mo","tags":["cs101"]}`)
	before := e.store.user(t, "s1")

	later := testNow.Add(time.Hour)
	e.configure(func(c *Config) { c.Now = func() time.Time { return later } })

	tests := []struct {
		name   string
		body   string
		change func(u *user.User)
	}{
		{"nothing", `{}`, func(u *user.User) {}},
		{"seed revoke", `{"revoked":true}`, func(u *user.User) { u.Revoked = true }},
		{"reason alone while revoked", `{"revokedReason":"left the course"}`, func(u *user.User) { u.RevokedReason = "left the course" }},
		{"un-revoke clears the reason", `{"revoked":false}`, func(u *user.User) { u.Revoked, u.RevokedReason = false, "" }},
		{"reason alone while active is ignored", `{"revokedReason":"x"}`, func(u *user.User) {}},
		{"revoke with a reason", `{"revoked":true,"revokedReason":"abuse"}`, func(u *user.User) { u.Revoked, u.RevokedReason = true, "abuse" }},
		{"name", `{"name":" Ada L. "}`, func(u *user.User) { u.Name = "Ada L." }},
		{"same userId is fine", `{"userId":"s1"}`, func(u *user.User) {}},
		{"lifetime limit", `{"costLimitInUsd":"12.34"}`, func(u *user.User) { u.CostLimitLifetime = 1234 * money.Cent }},
		{"over-time limit to 0", `{"costLimitInUsdOverTime":0}`, func(u *user.User) { u.CostLimitOverTime = 0 }},
		{"cost unit alone", `{"costLimitInUsdUnit":"d"}`, func(u *user.User) { u.CostLimitUnit = "d" }},
		{"rate", `{"rateLimitOverTime":100,"rateLimitUnit":"h"}`, func(u *user.User) { u.RateLimitOverTime, u.RateLimitUnit = 100, "h" }},
		{"ttl counts from now", `{"ttl":"168h"}`, func(u *user.User) { u.TTL, u.ExpiresAt = "168h", later.Add(168*time.Hour).Unix() }},
		{"never removes expiry", `{"ttl":"never"}`, func(u *user.User) { u.TTL, u.ExpiresAt = "", 0 }},
		{"tags", `{"tags":[]}`, func(u *user.User) { u.Tags = []string{} }},
		{"nulls are absent", `{"name":null,"costLimitInUsd":null,"ttl":null}`, func(u *user.User) {}},
	}
	cur := before
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, "PATCH", "/api/v1/users/s1", tc.body)
			var v userView
			decode(t, rec, 200, &v)
			want := cloneUser(cur)
			tc.change(want)
			want.UpdatedAt = later.Unix()
			want.Version = cur.Version + 1
			got := e.store.user(t, "s1")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("stored\n %+v\nwant\n %+v", got, want)
			}
			if !reflect.DeepEqual(v, userViewOf(want)) {
				t.Errorf("response\n %+v\nwant\n %+v", v, userViewOf(want))
			}
			cur = got
		})
	}
}

func TestPatchUserValidation(t *testing.T) {
	e := newUserEnv(t)
	e.createUser(t, `{"userId":"s1","name":"Ada","ttl":"never","rateLimitOverTime":5,"rateLimitUnit":"m","costLimitInUsdOverTime":1,"costLimitInUsdUnit":"mo"}`)
	before := e.store.user(t, "s1")
	tests := []struct {
		name, body, param string
	}{
		{"blank name", `{"name":""}`, "name"},
		{"change userId", `{"userId":"s2"}`, "userId"},
		{"revoked not a bool", `{"revoked":"yes"}`, "revoked"},
		{"reason not a string", `{"revokedReason":1}`, "revokedReason"},
		{"bad ttl", `{"ttl":"1w"}`, "ttl"},
		{"clear rate unit while rate is set", `{"rateLimitUnit":""}`, "rateLimitUnit"},
		{"clear cost unit while limit is set", `{"costLimitInUsdUnit":""}`, "costLimitInUsdUnit"},
		{"bad rate unit", `{"rateLimitUnit":"y"}`, "rateLimitUnit"},
		{"negative lifetime", `{"costLimitInUsd":-1}`, "costLimitInUsd"},
		{"rule failure mid-list leaves all unchanged", `{"name":"new","revoked":true,"costLimitInUsdOverTime":-1}`, "costLimitInUsdOverTime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.do(t, "PATCH", "/api/v1/users/s1", tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if got := e.store.user(t, "s1"); !reflect.DeepEqual(got, before) {
				t.Errorf("a rejected PATCH changed the user: %+v", got)
			}
		})
	}
	wantError(t, e.do(t, "PATCH", "/api/v1/users/ghost", `{"revoked":true}`), 404, apierror.CodeNotFound, "")
	if _, ok := e.store.users["ghost"]; ok {
		t.Errorf("PATCH created a user")
	}
}

func TestPatchUserRetriesOnConflict(t *testing.T) {
	e := newUserEnv(t)
	e.createUser(t, `{"userId":"s1","name":"Ada","ttl":"never"}`)

	// Someone else changes the user between our read and our write: we retry
	// on the fresh copy, keeping their change and adding ours.
	e.store.userConflicts = 1
	e.store.userWriter = func(u *user.User) { u.CostLimitLifetime = 7 * money.Dollar }
	var v userView
	decode(t, e.do(t, "PATCH", "/api/v1/users/s1", `{"revoked":true}`), 200, &v)
	got := e.store.user(t, "s1")
	if !got.Revoked || got.CostLimitLifetime != 7*money.Dollar || !v.Revoked || v.CostLimitInUsd != got.CostLimitLifetime {
		t.Errorf("after retry: stored %+v, response %+v", got, v)
	}
	if e.store.userUpdateCalls != 2 {
		t.Errorf("UpdateUser calls = %d, want 2", e.store.userUpdateCalls)
	}

	// A user that keeps changing under us gives up with 409 after the retries.
	e.store.userUpdateCalls = 0
	e.store.userConflicts = 100
	e.store.userWriter = nil
	wantError(t, e.do(t, "PATCH", "/api/v1/users/s1", `{"name":"x"}`), 409, CodeConflict, "")
	if e.store.userUpdateCalls != response.UpdateAttempts {
		t.Errorf("UpdateUser calls = %d, want %d", e.store.userUpdateCalls, response.UpdateAttempts)
	}
}

// ---- keys name existing users ----

func TestKeyUserMustExist(t *testing.T) {
	e := newUserEnv(t)
	e.addProvider("p1")
	e.createUser(t, `{"userId":"s1","name":"Ada","ttl":"never"}`)

	b := wantError(t, e.do(t, "POST", "/api/v1/secret-keys", `{"name":"k","providerSettingIds":["p1"],"userId":"ghost"}`),
		400, apierror.CodeInvalidRequest, "userId")
	if !strings.Contains(b.Error.Message, `user "ghost" does not exist`) {
		t.Errorf("message = %q", b.Error.Message)
	}
	if len(e.store.keys) != 0 {
		t.Fatalf("a key with an unknown user was stored")
	}

	c := e.createKey(t, `{"name":"k","providerSettingIds":["p1"],"userId":"s1"}`)
	if k := e.store.key(t, c.ID); k.UserID != "s1" {
		t.Errorf("userId = %q", k.UserID)
	}
	before := e.store.key(t, c.ID)
	wantError(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"userId":"ghost"}`), 400, apierror.CodeInvalidRequest, "userId")
	if got := e.store.key(t, c.ID); !reflect.DeepEqual(got, before) {
		t.Errorf("a rejected PATCH changed the key: %+v", got)
	}
	// "" detaches the key from its user; no user needed.
	decode(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"userId":""}`), 200, nil)
	if k := e.store.key(t, c.ID); k.UserID != "" {
		t.Errorf("userId = %q after clearing", k.UserID)
	}
	c2 := e.createKey(t, `{"name":"k","providerSettingIds":["p1"],"userId":""}`)
	if k := e.store.key(t, c2.ID); k.UserID != "" {
		t.Errorf("userId = %q", k.UserID)
	}
	// A revoked user still exists: keys may name it (its revocation is
	// enforced where requests are served).
	decode(t, e.do(t, "PATCH", "/api/v1/users/s1", `{"revoked":true}`), 200, nil)
	decode(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"userId":"s1"}`), 200, nil)
}

// ---- organisation ----

func TestOrg(t *testing.T) {
	e := newUserEnv(t)
	rec := e.do(t, "GET", "/api/v1/organization", "")
	decode(t, rec, 200, nil)
	if got := strings.TrimSpace(rec.Body.String()); got != `{"costLimitInUsd":0,"costLimitInUsdPerMonth":0,"updatedAt":0}` {
		t.Errorf("GET before any limit = %s", got)
	}

	later := testNow
	tests := []struct {
		name, body string
		want       user.Org // Version is checked separately
		writes     bool
	}{
		{"lifetime", `{"costLimitInUsd":1000}`, user.Org{CostLimitLifetime: 1000 * money.Dollar}, true},
		{"monthly keeps lifetime", `{"costLimitInUsdPerMonth":"250.5"}`, user.Org{CostLimitLifetime: 1000 * money.Dollar, CostLimitPerMonth: 250*money.Dollar + 50*money.Cent}, true},
		{"both", `{"costLimitInUsd":2000,"costLimitInUsdPerMonth":300}`, user.Org{CostLimitLifetime: 2000 * money.Dollar, CostLimitPerMonth: 300 * money.Dollar}, true},
		{"nothing named changes nothing", `{}`, user.Org{CostLimitLifetime: 2000 * money.Dollar, CostLimitPerMonth: 300 * money.Dollar}, false},
		{"0 removes a limit", `{"costLimitInUsd":0}`, user.Org{CostLimitPerMonth: 300 * money.Dollar}, true},
		{"null is absent", `{"costLimitInUsd":null,"costLimitInUsdPerMonth":0}`, user.Org{}, true},
	}
	version, updatedAt := int64(0), int64(0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			later = later.Add(time.Minute)
			e.configure(func(c *Config) { c.Now = func() time.Time { return later } })
			rec := e.do(t, "PATCH", "/api/v1/organization", tc.body)
			var got user.Org
			decode(t, rec, 200, &got)
			if tc.writes {
				version++
				updatedAt = later.Unix()
			}
			want := tc.want
			want.UpdatedAt = updatedAt
			if !reflect.DeepEqual(got, want) {
				t.Errorf("response %+v, want %+v", got, want)
			}
			want.Version = version
			e.store.mu.Lock()
			stored := e.store.org
			e.store.mu.Unlock()
			if !reflect.DeepEqual(stored, want) {
				t.Errorf("stored %+v, want %+v", stored, want)
			}
			var read user.Org
			decode(t, e.do(t, "GET", "/api/v1/organization", ""), 200, &read)
			want.Version = 0
			if !reflect.DeepEqual(read, want) {
				t.Errorf("GET = %+v, want %+v", read, want)
			}
		})
	}
}

func TestOrgValidation(t *testing.T) {
	e := newUserEnv(t)
	decode(t, e.do(t, "PATCH", "/api/v1/organization", `{"costLimitInUsd":10}`), 200, nil)
	before := e.store.org
	for _, tc := range []struct{ name, body, param string }{
		{"negative lifetime", `{"costLimitInUsd":-1}`, "costLimitInUsd"},
		{"negative monthly", `{"costLimitInUsdPerMonth":-0.5}`, "costLimitInUsdPerMonth"},
		{"not a number", `{"costLimitInUsdPerMonth":"lots"}`, "costLimitInUsdPerMonth"},
		{"too precise", `{"costLimitInUsd":0.0000000001}`, "costLimitInUsd"},
		{"one bad field rejects both", `{"costLimitInUsd":5,"costLimitInUsdPerMonth":-1}`, "costLimitInUsdPerMonth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := wantError(t, e.do(t, "PATCH", "/api/v1/organization", tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if !strings.Contains(b.Error.Message, tc.param+" must be a non-negative number of US dollars") {
				t.Errorf("message = %q", b.Error.Message)
			}
			if e.store.org != before {
				t.Errorf("a rejected PATCH changed the organisation: %+v", e.store.org)
			}
		})
	}
	wantError(t, e.do(t, "PATCH", "/api/v1/organization", `[1]`), 400, apierror.CodeInvalidRequest, "")
}

func TestOrgRetriesOnConflict(t *testing.T) {
	e := newUserEnv(t)
	e.store.orgConflicts = 1
	e.store.orgWriter = func(o *user.Org) { o.CostLimitPerMonth = 42 * money.Dollar }
	var got user.Org
	decode(t, e.do(t, "PATCH", "/api/v1/organization", `{"costLimitInUsd":100}`), 200, &got)
	if got.CostLimitLifetime != 100*money.Dollar || got.CostLimitPerMonth != 42*money.Dollar || e.store.org.Version != 2 {
		t.Errorf("after retry: response %+v, stored %+v", got, e.store.org)
	}
	if e.store.orgPutCalls != 2 {
		t.Errorf("PutOrg calls = %d, want 2", e.store.orgPutCalls)
	}

	e.store.orgPutCalls = 0
	e.store.orgConflicts = 100
	e.store.orgWriter = nil
	wantError(t, e.do(t, "PATCH", "/api/v1/organization", `{"costLimitInUsd":1}`), 409, CodeConflict, "")
	if e.store.orgPutCalls != response.UpdateAttempts {
		t.Errorf("PutOrg calls = %d, want %d", e.store.orgPutCalls, response.UpdateAttempts)
	}
}

// ---- auth, methods and storage failures on the new routes ----

func TestUserRoutesAuthAndErrors(t *testing.T) {
	e := newUserEnv(t)
	routes := []struct{ method, path, body string }{
		{"GET", "/api/v1/users", ""},
		{"GET", "/api/v1/users/s1", ""},
		{"POST", "/api/v1/users", `{"name":"n","ttl":"never"}`},
		{"PATCH", "/api/v1/users/s1", `{"revoked":true}`},
		{"GET", "/api/v1/organization", ""},
		{"PATCH", "/api/v1/organization", `{"costLimitInUsd":1}`},
	}
	_, proxyKey := apikey.Generate()
	for _, rt := range routes {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + proxyKey} {
			wantError(t, e.doAuth(t, rt.method, rt.path, rt.body, auth), 401, apierror.CodeInvalidAPIKey, "")
		}
	}
	if len(e.store.users) != 0 || e.store.org != (user.Org{}) {
		t.Fatalf("an unauthenticated request wrote")
	}

	for path, allow := range map[string]string{
		"/api/v1/users": "GET, POST", "/api/v1/users/s1": "GET, PATCH", "/api/v1/organization": "GET, PATCH",
	} {
		rec := e.do(t, "DELETE", path, "")
		wantError(t, rec, 405, CodeMethodNotAllowed, "")
		if got := rec.Header().Get("Allow"); got != allow {
			t.Errorf("Allow of %s = %q, want %q", path, got, allow)
		}
	}

	e.store.fail = errors.New("dynamodb: connection refused to 10.0.0.7")
	for _, rt := range routes {
		rec := e.do(t, rt.method, rt.path, rt.body)
		wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
		if strings.Contains(rec.Body.String(), "10.0.0.7") {
			t.Errorf("%s %s leaked the cause: %s", rt.method, rt.path, rec.Body)
		}
	}
}

// TestPatchSaysWhatIsSpent: the response that sets a user's or the
// organisation's limit says what that scope has spent already (its spend
// is counted whether or not it had a limit), so a limit below it is visible.
func TestPatchSaysWhatIsSpent(t *testing.T) {
	e := newUserEnv(t)
	e.createUser(t, `{"userId":"dora","name":"Dora","ttl":"never"}`)
	now := testNow
	e.configure(func(c *Config) { c.Now = func() time.Time { return now } })
	month := budget.MonthCounter(now)
	e.store.mu.Lock()
	e.store.counters = map[string]ledger.Totals{
		"USER#dora/" + budget.LifetimeCounter: {Cost: 3 * money.Cent}, "USER#dora/" + month: {Cost: money.Cent},
		"ORG/" + budget.LifetimeCounter: {Cost: 9 * money.Cent}, "ORG/" + month: {Cost: 4 * money.Cent},
	}
	e.store.mu.Unlock()
	type spend struct {
		Life  money.Nanos `json:"spendInUsd"`
		Month money.Nanos `json:"spendThisMonthInUsd"`
		Limit money.Nanos `json:"costLimitInUsd"`
	}
	for _, tc := range []struct {
		path, body string
		want       spend
	}{
		{"/api/v1/users/dora", `{"costLimitInUsd":0.02}`, spend{3 * money.Cent, money.Cent, 2 * money.Cent}},
		{"/api/v1/organization", `{"costLimitInUsd":0.05}`, spend{9 * money.Cent, 4 * money.Cent, 5 * money.Cent}},
	} {
		var got spend
		decode(t, e.do(t, "PATCH", tc.path, tc.body), 200, &got)
		if got != tc.want {
			t.Errorf("PATCH %s %s = %+v, want %+v", tc.path, tc.body, got, tc.want)
		}
	}
}
