package admin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/roster"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/storeerr"
	"github.com/stipend/stipend/shared/user"
)

// ---- fake roster store ----

// rosterState is fakeStore's roster markers, guarded by its mu.
type rosterState struct {
	markers map[string]string // userId -> keyId
	// rosterFail makes the roster writes of these userIds fail.
	rosterFail map[string]error
	// rosterHook, when set, runs once before the next roster write (without
	// the lock): another writer acting first.
	rosterHook   func()
	rosterWrites int
}

func (s *fakeStore) runRosterHook() {
	s.mu.Lock()
	hook := s.rosterHook
	s.rosterHook = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (s *fakeStore) RosterKeys(_ context.Context, userIDs []string) (map[string]apikey.RosterKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	out := map[string]apikey.RosterKey{}
	for _, id := range userIDs {
		keyID, ok := s.markers[id]
		if !ok {
			continue
		}
		rk := apikey.RosterKey{UserID: id, KeyID: keyID}
		if k, ok := s.keys[keyID]; ok {
			rk.Key = cloneKey(k)
		}
		out[id] = rk
	}
	return out, nil
}

func (s *fakeStore) rosterWrite(userID string) error {
	s.rosterWrites++
	if s.fail != nil {
		return s.fail
	}
	if s.markers == nil {
		s.markers = map[string]string{}
	}
	return s.rosterFail[userID]
}

func (s *fakeStore) CreateRosterKey(_ context.Context, k *apikey.Key) error {
	s.runRosterHook()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.rosterWrite(k.UserID); err != nil {
		return err
	}
	if _, ok := s.markers[k.UserID]; ok {
		return fmt.Errorf("roster key of %s: %w", k.UserID, storeerr.ErrExists)
	}
	if _, ok := s.keys[k.ID]; ok {
		return storeerr.ErrExists
	}
	k.Version = 1
	s.keys[k.ID] = cloneKey(k)
	s.markers[k.UserID] = k.ID
	return nil
}

func (s *fakeStore) ReplaceRosterKey(_ context.Context, prev string, revoke, k *apikey.Key) error {
	s.runRosterHook()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.rosterWrite(k.UserID); err != nil {
		return err
	}
	if cur, ok := s.markers[k.UserID]; !ok || cur != prev {
		return fmt.Errorf("roster key of %s: %w", k.UserID, storeerr.ErrConflict)
	}
	if revoke != nil {
		if cur, ok := s.keys[revoke.ID]; !ok || cur.Version != revoke.Version || revoke.ID != prev {
			return fmt.Errorf("key %s: %w", revoke.ID, storeerr.ErrConflict)
		}
		revoke.Version++
		s.keys[revoke.ID] = cloneKey(revoke)
	}
	k.Version = 1
	s.keys[k.ID] = cloneKey(k)
	s.markers[k.UserID] = k.ID
	return nil
}

// ---- helpers ----

// post sends a POST with the admin key, a Content-Type and an Accept header
// (either may be "").
func (e *env) post(t *testing.T, path, contentType, accept, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// roster sends a JSON roster and decodes a 200 answer.
func (e *env) roster(t *testing.T, body string) roster.Response {
	t.Helper()
	var res roster.Response
	decode(t, e.post(t, "/api/v1/secret-keys/bulk", "application/json", "", body), 200, &res)
	return res
}

// problemsBody is a 400 from a bulk route.
type problemsBody struct {
	apierror.Body
	Errors []roster.Problem `json:"errors"`
}

func wantProblems(t *testing.T, rec *httptest.ResponseRecorder) problemsBody {
	t.Helper()
	var b problemsBody
	decode(t, rec, 400, &b)
	if b.Error.Code != apierror.CodeInvalidRequest || len(b.Errors) == 0 {
		t.Fatalf("not a list of problems: %s", rec.Body)
	}
	return b
}

func fields(ps []roster.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Field)
	}
	return out
}

func (s *fakeStore) keyCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

func (s *fakeStore) userCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.users)
}

func (s *fakeStore) marker(userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.markers[userID]
}

func (s *fakeStore) storedUser(t *testing.T, id string) *user.User {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		t.Fatalf("user %s not stored", id)
	}
	return cloneUser(u)
}

// checkKeys checks that every created or rotated entry carries a plaintext
// that parses to its keyId and hashes to the stored hash.
func checkKeys(t *testing.T, s *fakeStore, entries ...[]roster.Entry) {
	t.Helper()
	for _, list := range entries {
		for _, c := range list {
			id, err := apikey.Parse(c.Key)
			if err != nil || id != c.KeyID {
				t.Fatalf("%s: key %q parses to %q, %v; keyId %q", c.UserID, c.Key, id, err, c.KeyID)
			}
			if k := s.key(t, c.KeyID); k.Hash != apikey.Hash(c.Key) || k.UserID != c.UserID {
				t.Fatalf("%s: stored key %+v does not match", c.UserID, k)
			}
		}
	}
}

func userIDsOf(list []roster.Entry) []string {
	var out []string
	for _, e := range list {
		out = append(out, e.UserID)
	}
	return out
}

const classJSON = `{
	"defaults": {
		"providerSettingIds": ["p1"],
		"costLimitInUsdLifetime": 1,
		"costLimitInUsdPerMonth": "0.2",
		"allowedModels": ["gpt-4o-mini"],
		"modelLimits": {"gpt-4o-mini": {"rpm": 35, "tpm": 1600}},
		"ttl": "720h",
		"tags": ["cs101"],
		"user": {"costLimitInUsd": 2, "costLimitInUsdOverTime": 0.5, "costLimitInUsdUnit": "mo"}
	},
	"students": [
		{"userId": "s1", "name": "Ada Lovelace", "email": "ada@example.edu"},
		{"userId": "s2", "name": "Alan Turing", "costLimitInUsdLifetime": 3, "allowedModels": ["gpt-4o-mini", "gpt-4o"],
		 "user": {"costLimitInUsd": 4}},
		{"userId": 12345, "name": "Grace Hopper", "tags": ["cs101", "ta"], "metadata": {"seat": 4}},
		{"userId": "student-7", "name": "Already A User"}
	]
}`

// ---- roster ----

func TestRosterCreatesThenIsIdempotent(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	usersBefore := e.store.userCount()
	before := e.store.storedUser(t, "student-7")

	res := e.roster(t, classJSON)
	if got := userIDsOf(res.Created); !reflect.DeepEqual(got, []string{"s1", "s2", "12345", "student-7"}) {
		t.Fatalf("created %v", got)
	}
	want := roster.Summary{Students: 4, Created: 4, UsersCreated: 3}
	if res.Summary != want || len(res.Existing)+len(res.Rotated)+len(res.Failed) != 0 {
		t.Fatalf("summary %+v; %+v", res.Summary, res)
	}
	checkKeys(t, e.store, res.Created)
	if res.Created[0].Email != "ada@example.edu" || res.Created[0].Name != "Ada Lovelace" || !res.Created[0].UserCreated || res.Created[3].UserCreated {
		t.Errorf("entries %+v", res.Created)
	}

	// The keys carry the defaults, each student's overrides, the roster tag
	// and the email.
	ada := e.store.key(t, res.Created[0].KeyID)
	wantAda := apikey.Key{
		ID: ada.ID, Hash: ada.Hash, Name: "Ada Lovelace", UserID: "s1", Tags: []string{"cs101", roster.Tag},
		SettingIDs: []string{"p1"}, CreatedAt: testNow.Unix(), UpdatedAt: testNow.Unix(),
		TTL: "720h", ExpiresAt: testNow.Add(720 * time.Hour).Unix(),
		CostLimitLifetime: money.Dollar, CostLimitPerMonth: 20 * money.Cent,
		AllowedModels: []string{"gpt-4o-mini"}, ModelLimits: map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 35, TPM: 1600}},
		KeyRetrievalMethod: form.RetrieveOnce, Metadata: map[string]any{"email": "ada@example.edu"}, Version: 1,
	}
	if !reflect.DeepEqual(*ada, wantAda) {
		t.Errorf("stored key\n%+v\nwant\n%+v", *ada, wantAda)
	}
	alan := e.store.key(t, res.Created[1].KeyID)
	if alan.CostLimitLifetime != 3*money.Dollar || !slices.Equal(alan.AllowedModels, []string{"gpt-4o-mini", "gpt-4o"}) || alan.Metadata != nil {
		t.Errorf("overrides not applied: %+v", alan)
	}
	grace := e.store.key(t, res.Created[2].KeyID)
	if grace.UserID != "12345" || !slices.Equal(grace.Tags, []string{"cs101", "ta", roster.Tag}) || grace.Metadata["seat"] != float64(4) {
		t.Errorf("grace %+v", grace)
	}
	u := e.store.storedUser(t, "s2")
	wantUser := user.User{
		ID: u.ID, UserID: "s2", Name: "Alan Turing", Tags: []string{roster.Tag}, CreatedAt: testNow.Unix(), UpdatedAt: testNow.Unix(),
		CostLimitLifetime: 4 * money.Dollar, CostLimitOverTime: 50 * money.Cent, CostLimitUnit: "mo", Version: 1,
	}
	if !reflect.DeepEqual(*u, wantUser) {
		t.Errorf("stored user %+v, want %+v", *u, wantUser)
	}
	if after := e.store.storedUser(t, "student-7"); !reflect.DeepEqual(after, before) {
		t.Errorf("existing user changed: %+v -> %+v", before, after)
	}
	if e.store.userCount() != usersBefore+3 {
		t.Errorf("users %d, want %d", e.store.userCount(), usersBefore+3)
	}

	// The same roster again creates nothing and reports every student.
	keys := e.store.keyCount()
	again := e.roster(t, classJSON)
	if again.Summary != (roster.Summary{Students: 4, Existing: 4}) || len(again.Created) != 0 {
		t.Fatalf("second call: %+v", again)
	}
	for i, ex := range again.Existing {
		if ex.KeyID != res.Created[i].KeyID || ex.Key != "" || ex.UserID != res.Created[i].UserID {
			t.Errorf("existing[%d] = %+v", i, ex)
		}
	}
	if e.store.keyCount() != keys {
		t.Errorf("keys %d -> %d", keys, e.store.keyCount())
	}
	if strings.Contains(e.logs.String(), res.Created[0].Key) {
		t.Error("a plaintext key was logged")
	}
}

func TestRosterRotateAndReissue(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	first := e.roster(t, classJSON)
	old := map[string]string{}
	for _, c := range first.Created {
		old[c.UserID] = c.KeyID
	}

	// Rotate one student by name.
	body := strings.Replace(classJSON, `"students"`, `"rotate": ["s2"], "students"`, 1)
	res := e.roster(t, body)
	if len(res.Rotated) != 1 || len(res.Existing) != 3 || res.Rotated[0].UserID != "s2" || res.Rotated[0].RevokedKeyID != old["s2"] {
		t.Fatalf("rotate one: %+v", res)
	}
	checkKeys(t, e.store, res.Rotated)
	if k := e.store.key(t, old["s2"]); !k.Revoked || k.RevokedReason != roster.RevokedRotated || k.Version != 2 {
		t.Errorf("old key after rotate: %+v", k)
	}
	if e.store.marker("s2") != res.Rotated[0].KeyID {
		t.Errorf("marker not moved")
	}
	// The rotated key keeps the roster's settings.
	if k := e.store.key(t, res.Rotated[0].KeyID); k.CostLimitLifetime != 3*money.Dollar || k.Revoked {
		t.Errorf("new key %+v", k)
	}

	// A student's own "rotate": true works too; so does rotate: true for all.
	body = strings.Replace(classJSON, `"name": "Ada Lovelace"`, `"name": "Ada Lovelace", "rotate": true`, 1)
	if res := e.roster(t, body); userIDsOf(res.Rotated)[0] != "s1" || len(res.Rotated) != 1 {
		t.Fatalf("student rotate: %+v", res)
	}
	body = strings.Replace(classJSON, `"students"`, `"rotate": true, "students"`, 1)
	if res := e.roster(t, body); len(res.Rotated) != 4 {
		t.Fatalf("rotate all: %+v", res.Summary)
	}

	// A revoked roster key is reissued on the next call, an expired one too.
	m, _ := e.store.RosterKeys(context.Background(), []string{"s1", "s2"})
	e.store.mu.Lock()
	e.store.keys[m["s1"].KeyID].Revoked = true
	e.store.keys[m["s2"].KeyID].ExpiresAt = testNow.Unix() - 1
	e.store.mu.Unlock()
	res = e.roster(t, classJSON)
	if got := userIDsOf(res.Created); !slices.Equal(got, []string{"s1", "s2"}) || len(res.Existing) != 2 {
		t.Fatalf("reissue: %+v", res)
	}
	for i, id := range []string{"s1", "s2"} {
		if res.Created[i].PreviousKeyID != m[id].KeyID || res.Created[i].UserCreated {
			t.Errorf("reissued %+v", res.Created[i])
		}
	}
	checkKeys(t, e.store, res.Created)
}

func TestRosterInvalid(t *testing.T) {
	student := func(s string) string {
		return `{"defaults": {"providerSettingIds": ["p1"]}, "students": [` + s + `]}`
	}
	many := make([]string, roster.MaxStudents+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"userId": "s%d", "name": "S"}`, i)
	}
	tests := []struct {
		name   string
		path   string
		ctype  string
		body   string
		fields []string // the problems' fields, in order
		msg    string   // in the first problem's message
	}{
		{"not an object", "", "", `[1]`, []string{""}, "JSON object"},
		{"no students", "", "", `{"defaults": {"providerSettingIds": ["p1"]}}`, []string{"students"}, "students is required"},
		{"empty students", "", "", student(``), []string{"students"}, "non-empty"},
		{"every roster.Problem of every row",
			"", "", student(`{"userId": "bad id!", "name": "", "email": "nope"}, {"userId": "ok", "name": "Ok", "costLimitInUsdLifetime": -1}, {"name": "No id"}`),
			[]string{"students[0].userId", "students[0].name", "students[0].email", "students[1].costLimitInUsdLifetime", "students[2].userId"},
			`students[0] (userId "bad id!"): userId must be`},
		{"wrong types", "", "", student(`{"userId": true, "name": 5, "costLimitInUsdLifetime": "ten", "allowedPaths": [{"path": "/x"}]}`),
			[]string{"students[0].userId", "students[0].name", "students[0].costLimitInUsdLifetime", "students[0].allowedPaths"}, "userId must be 1 to 128"},
		{"rule checked by apply", "", "", student(`{"userId": "a", "name": "A", "allowedPaths": [{"path": "/x"}]}`),
			[]string{"students[0].allowedPaths"}, "allowedPaths must be"},
		{"duplicate userId", "", "", student(`{"userId": "a", "name": "A"}, {"userId": "b", "name": "B"}, {"userId": "a", "name": "A2"}`),
			[]string{"students[2].userId"}, `already on the roster at students[0]`},
		{"unknown and refused fields", "", "", `{"defaults": {"providerSettingIds": ["p1"], "name": "x", "costLimit": 1},
			"students": [{"userId": "a", "name": "A", "revoked": true, "nmae": "typo"}], "extra": 1}`,
			[]string{"extra", "defaults.name", "defaults.costLimit", "students[0].revoked", "students[0].nmae"}, "unknown field extra"},
		{"a bad default is reported once", "", "", `{"defaults": {"providerSettingIds": ["p1"], "ttl": "soon"},
			"students": [{"userId": "a", "name": "A"}, {"userId": "b", "name": "B"}]}`,
			[]string{"defaults.ttl"}, "defaults: ttl must be"},
		{"unknown provider", "", "", `{"defaults": {"providerSettingIds": ["p1", "nope"]}, "students": [{"userId": "a", "name": "A"}]}`,
			[]string{"defaults.providerSettingIds"}, `provider setting "nope" does not exist`},
		{"unknown provider of a student", "", "", student(`{"userId": "a", "name": "A", "providerSettingIds": ["nope"]}`),
			[]string{"students[0].providerSettingIds"}, `students[0] (userId "a"): provider setting "nope"`},
		{"no provider at all", "", "", `{"students": [{"userId": "a", "name": "A"}, {"userId": "b", "name": "B", "providerSettingIds": ["p1"]}]}`,
			[]string{"students[0].providerSettingIds"}, "give it in the defaults or for this student"},
		{"rule across fields, judged per student", "", "", `{"defaults": {"providerSettingIds": ["p1"], "rateLimitOverTime": 10},
			"students": [{"userId": "a", "name": "A"}, {"userId": "b", "name": "B", "rateLimitUnit": "m"}]}`,
			[]string{"students[0].rateLimitUnit"}, "rateLimitUnit is required"},
		{"user fields", "", "", `{"defaults": {"providerSettingIds": ["p1"], "user": {"ttl": "someday", "name": "x"}},
			"students": [{"userId": "a", "name": "A"}]}`,
			[]string{"defaults.user.name", "defaults.user.ttl"}, "user.name cannot be given here"},
		{"user override", "", "", student(`{"userId": "a", "name": "A", "user": {"costLimitInUsd": -2}}`),
			[]string{"students[0].user.costLimitInUsd"}, `user.costLimitInUsd must be a non-negative`},
		{"retrieval method", "", "", `{"defaults": {"providerSettingIds": ["p1"], "keyRetrievalMethod": "ANYTIME_BY_VIEWER"}, "students": [{"userId": "a", "name": "A"}]}`,
			[]string{"defaults.keyRetrievalMethod"}, "defaults: key retrieval is not configured"},
		{"broken defaults are not checked once per student", "", "", `{"defaults": {"providerSettingIds": "p1"}, "students": [{"userId": "a", "name": "A"}, {"userId": "b", "name": "B"}]}`,
			[]string{"defaults.providerSettingIds"}, "defaults: providerSettingIds must be a non-empty list"},
		{"rotate names a stranger", "", "", `{"defaults": {"providerSettingIds": ["p1"]}, "rotate": ["a", "zed"], "students": [{"userId": "a", "name": "A"}]}`,
			[]string{"rotate"}, `rotate names userId "zed"`},
		{"rotate of the wrong type", "", "", `{"defaults": {"providerSettingIds": ["p1"]}, "rotate": "yes", "students": [{"userId": "a", "name": "A"}]}`,
			[]string{"rotate"}, "rotate must be true, false or a list"},
		{"query defaults with JSON", "?costLimitInUsdLifetime=1", "", student(`{"userId": "a", "name": "A"}`),
			[]string{"costLimitInUsdLifetime"}, "only read with a CSV body"},
		{"too many students", "", "", student(strings.Join(many, ",")), []string{"students"}, "at most 1000 students"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			users := e.store.userCount()
			b := wantProblems(t, e.post(t, "/api/v1/secret-keys/bulk"+tc.path, cmpOr(tc.ctype, "application/json"), "", tc.body))
			if got := fields(b.Errors); !slices.Equal(got, tc.fields) {
				t.Errorf("fields %q, want %q; %s", got, tc.fields, b.Error.Message)
			}
			if !strings.Contains(b.Errors[0].Message, tc.msg) || !strings.Contains(b.Error.Message, "nothing was changed") {
				t.Errorf("message %q (errors[0] %q), want it to contain %q", b.Error.Message, b.Errors[0].Message, tc.msg)
			}
			if tc.fields[0] != "" && (b.Error.Param == nil || *b.Error.Param != tc.fields[0]) {
				t.Errorf("param %v", b.Error.Param)
			}
			if e.store.keyCount() != 0 || e.store.userCount() != users || e.store.rosterWrites != 0 {
				t.Errorf("something was written: %d keys, %d users", e.store.keyCount(), e.store.userCount())
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

const classCSV = "userId,name,email\ns1,Ada Lovelace,ada@example.edu\ns2,Alan Turing,\n"

func TestRosterCSV(t *testing.T) {
	const q = "?providerSettingIds=p1&costLimitInUsdLifetime=1&allowedModels=gpt-4o-mini,gpt-4o&user.costLimitInUsd=5&ttl=720h"
	type want struct {
		name     string
		email    string
		lifetime money.Nanos
		models   []string
		paths    []apikey.PathRule
		userCap  money.Nanos
	}
	defaultModels := []string{"gpt-4o-mini", "gpt-4o"}
	tests := []struct {
		name  string
		query string
		ctype string
		body  string
		want  map[string]want
	}{
		{"plain", q, "text/csv", classCSV, map[string]want{
			"s1": {"Ada Lovelace", "ada@example.edu", money.Dollar, defaultModels, nil, 5 * money.Dollar},
			"s2": {"Alan Turing", "", money.Dollar, defaultModels, nil, 5 * money.Dollar},
		}},
		{"BOM, CRLF, quotes, blank lines, any case, overrides", q, "text/csv; charset=utf-8",
			"\ufeffUserID,Name,costLimitInUsdLifetime,AllowedModels,user.costlimitinusd,allowedPaths\r\n" +
				"\r\n" +
				"s1,\"Lovelace, Ada\",2.5,gpt-4o;o1 ,,POST /v1/chat/completions; /v1/embeddings\r\n" +
				",,,,,\r\n" +
				"s2,\"Alan \"\"Prof\"\" Turing\",,,7,\r\n\r\n",
			map[string]want{
				"s1": {"Lovelace, Ada", "", 2*money.Dollar + 50*money.Cent, []string{"gpt-4o", "o1"},
					[]apikey.PathRule{{Path: "/v1/chat/completions", Method: "POST"}, {Path: "/v1/embeddings"}}, 5 * money.Dollar},
				"s2": {`Alan "Prof" Turing`, "", money.Dollar, defaultModels, nil, 7 * money.Dollar},
			}},
		{"semicolons (lists then use commas)", q, "text/csv", "userId;name;allowedModels\ns1;Ada;gpt-4o,o1\n",
			map[string]want{"s1": {"Ada", "", money.Dollar, []string{"gpt-4o", "o1"}, nil, 5 * money.Dollar}}},
		{"tabs", q, "text/tab-separated-values", "userId\tname\ns1\tAda, the first\n",
			map[string]want{"s1": {"Ada, the first", "", money.Dollar, defaultModels, nil, 5 * money.Dollar}}},
		{"defaults as JSON in the query, parameters win",
			"?defaults=" + url.QueryEscape(`{"providerSettingIds":["p1"],"costLimitInUsdLifetime":9,"allowedModels":["gpt-4o"],"user":{"costLimitInUsd":3}}`) + "&costLimitInUsdLifetime=4",
			"", "userId,name\ns1,Ada\n",
			map[string]want{"s1": {"Ada", "", 4 * money.Dollar, []string{"gpt-4o"}, nil, 3 * money.Dollar}}},
		{"no Content-Type: sniffed as CSV", q, "", classCSV, map[string]want{
			"s1": {"Ada Lovelace", "ada@example.edu", money.Dollar, defaultModels, nil, 5 * money.Dollar},
			"s2": {"Alan Turing", "", money.Dollar, defaultModels, nil, 5 * money.Dollar},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			var res roster.Response
			decode(t, e.post(t, "/api/v1/secret-keys/bulk"+tc.query, tc.ctype, "", tc.body), 200, &res)
			if len(res.Created) != len(tc.want) {
				t.Fatalf("created %+v", res)
			}
			checkKeys(t, e.store, res.Created)
			for _, c := range res.Created {
				w, ok := tc.want[c.UserID]
				if !ok {
					t.Fatalf("unexpected student %q", c.UserID)
				}
				k := e.store.key(t, c.KeyID)
				if k.Name != w.name || c.Name != w.name || c.Email != w.email || k.CostLimitLifetime != w.lifetime ||
					!slices.Equal(k.AllowedModels, w.models) || !slices.Equal(k.AllowedPaths, w.paths) {
					t.Errorf("%s: key %+v (entry %+v), want %+v", c.UserID, k, c, w)
				}
				if u := e.store.storedUser(t, c.UserID); u.CostLimitLifetime != w.userCap || u.Name != w.name {
					t.Errorf("%s: user %+v", c.UserID, u)
				}
			}
		})
	}
}

func TestRosterCSVInvalid(t *testing.T) {
	const q = "?providerSettingIds=p1"
	type wantProblem struct {
		line, column int
		field, msg   string
	}
	tests := []struct {
		name  string
		query string
		body  string
		want  []wantProblem
	}{
		{"empty", q, "", []wantProblem{{0, 0, "", "the CSV is empty"}}},
		{"header only", q, "userId,name\r\n", []wantProblem{{0, 0, "", "no student rows"}}},
		{"not UTF-8", q, "userId,name\ns1,Ada\ns2,Ren\xe9\n", []wantProblem{{3, 0, "", "line 3: the CSV is not UTF-8"}}},
		{"bare quote", q, "userId,name\ns1,Ada\ns2,Al\"an\n", []wantProblem{{3, 6, "", `line 3, column 6: bare "`}}},
		{"unknown and duplicate columns, no name", q, "userId,costLimit,userid\ns1,1,s1\n", []wantProblem{
			{1, 2, "costLimit", `line 1, column 2 (costLimit): unknown column "costLimit"`},
			{1, 3, "userId", "line 1, column 3 (userId): column userId appears twice (also column 1)"},
			{1, 0, "name", "the header has no name column"},
		}},
		{"every bad cell, by line and column", q,
			"userId,name,email,costLimitInUsdLifetime,rateLimitOverTime,user.ttl,rotate\n" +
				"s1,Ada,ada@example.edu,1,10,,\n" + // rateLimitUnit missing (not a column)
				"s 2,Alan,alan(at)example,-1,x,someday,maybe\n" +
				"s1,Ada again,,,,,\n" +
				"s4,,,,,,\n",
			[]wantProblem{
				{2, 0, "rateLimitUnit", `line 2 (userId "s1"): rateLimitUnit is required`},
				{3, 1, "userId", `line 3, column 1 (userId) (userId "s 2"): userId must be`},
				{3, 3, "email", "email must be"},
				{3, 7, "rotate", "rotate must be true or false"},
				{3, 5, "rateLimitOverTime", "rateLimitOverTime must be a non-negative integer"},
				{3, 4, "costLimitInUsdLifetime", "costLimitInUsdLifetime must be a non-negative"},
				{3, 6, "user.ttl", "user.ttl must be"},
				{4, 1, "userId", `userId "s1" is already on the roster at line 2`},
				{5, 2, "name", "name is required"},
			}},
		{"row longer than the header", q, "userId,name\ns1,Ada,extra\n", []wantProblem{{2, 0, "", "the row has 3 fields but the header has 2"}}},
		{"value under an unnamed column", q, "userId,name,\ns1,Ada,x\ns2,Bob,\n", []wantProblem{{2, 3, "", "column 3 has a value but no name"}}},
		{"user field checked by applyUser", q, "userId,name,user.ttl\ns1,Ada,soon\n", []wantProblem{{2, 3, "user.ttl", "user.ttl must be"}}},
		{"bad query parameters", "?providerSettingIds=p1&costLimitInUsdLifetime=-1&bogus=1&name=x&ttl=1h&ttl=2h", classCSV, []wantProblem{
			{0, 0, "bogus", "unknown query parameter bogus"},
			{0, 0, "name", "name cannot be given here"},
			{0, 0, "ttl", "query parameter ttl is given 2 times"},
			{0, 0, "costLimitInUsdLifetime", "defaults in the query: costLimitInUsdLifetime must be"},
		}},
		{"bad default value in the query", "?providerSettingIds=p1&ttl=soon", classCSV, []wantProblem{{0, 0, "ttl", "defaults in the query: ttl must be"}}},
		{"defaults JSON that is not an object", "?defaults=%5B1%5D", classCSV, []wantProblem{{0, 0, "defaults", "defaults must be a JSON object"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			b := wantProblems(t, e.post(t, "/api/v1/secret-keys/bulk"+tc.query, "text/csv", "", tc.body))
			if len(b.Errors) != len(tc.want) {
				t.Fatalf("%d problems, want %d: %+v", len(b.Errors), len(tc.want), b.Errors)
			}
			for i, w := range tc.want {
				p := b.Errors[i]
				if p.Line != w.line || p.Column != w.column || p.Field != w.field || !strings.Contains(p.Message, w.msg) {
					t.Errorf("roster.Problem %d = %+v, want %+v", i, p, w)
				}
			}
			if e.store.keyCount() != 0 || e.store.rosterWrites != 0 {
				t.Errorf("something was written")
			}
		})
	}
}

func TestRosterCSVAnswer(t *testing.T) {
	const csvRoster = "userId,name,email\ns1,\"=HYPERLINK(\"\"x\"\")\",ada@example.edu\ns2,Alan Turing,\n"
	tests := []struct {
		name   string
		query  string
		accept string
		csv    bool
	}{
		{"format=csv", "&format=csv", "", true},
		{"Accept", "", "text/csv", true},
		{"Accept prefers JSON", "", "application/json, text/csv", false},
		{"format wins", "&format=json", "text/csv", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			rec := e.post(t, "/api/v1/secret-keys/bulk?providerSettingIds=p1"+tc.query, "text/csv", tc.accept, csvRoster)
			if rec.Code != 200 || rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("status %d, headers %v: %s", rec.Code, rec.Header(), rec.Body)
			}
			if !tc.csv {
				decode(t, rec, 200, nil)
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/csv; charset=utf-8" || !strings.Contains(rec.Header().Get("Content-Disposition"), "attachment") {
				t.Fatalf("headers %v", rec.Header())
			}
			rows, err := csv.NewReader(strings.NewReader(rec.Body.String())).ReadAll()
			if err != nil || len(rows) != 3 {
				t.Fatalf("csv %q: %v", rec.Body, err)
			}
			if !slices.Equal(rows[0], []string{"userId", "name", "email", "keyId", "key", "status"}) {
				t.Fatalf("header %q", rows[0])
			}
			if rows[1][0] != "s1" || rows[1][1] != `'=HYPERLINK("x")` || rows[1][2] != "ada@example.edu" || rows[1][5] != roster.StatusCreated {
				t.Errorf("row %q", rows[1])
			}
			for _, row := range rows[1:] {
				if id, err := apikey.Parse(row[4]); err != nil || id != row[3] || e.store.key(t, id).Hash != apikey.Hash(row[4]) {
					t.Errorf("row %q: key does not match", row)
				}
			}
			// Again: every student is existing, without a key.
			rec = e.post(t, "/api/v1/secret-keys/bulk?providerSettingIds=p1"+tc.query, "text/csv", tc.accept, csvRoster)
			rows, _ = csv.NewReader(strings.NewReader(rec.Body.String())).ReadAll()
			for _, row := range rows[1:] {
				if row[4] != "" || row[5] != roster.StatusExisting || row[3] == "" {
					t.Errorf("second call row %q", row)
				}
			}
		})
	}
}

func TestRosterRequestErrors(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		ctype  string
		body   string
		status int
		param  string
	}{
		{"bad format", "?format=xml", "application/json", `{}`, 400, "format"},
		{"unsupported type", "", "application/xml", `<roster/>`, 415, ""},
		{"unreadable type", "", "text/csv; charset", `x`, 415, ""},
		{"too large", "", "text/csv", strings.Repeat("a", roster.MaxBytes+1), 413, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			code := apierror.CodeInvalidRequest
			if tc.status == 413 {
				code = apierror.CodeRequestTooLarge
			}
			wantError(t, e.post(t, "/api/v1/secret-keys/bulk"+tc.query, tc.ctype, "", tc.body), tc.status, code, tc.param)
		})
	}
	e := newEnv(t)
	wantError(t, e.doAuth(t, "POST", "/api/v1/secret-keys/bulk", classJSON, ""), 401, apierror.CodeInvalidAPIKey, "")
}

func TestRosterConcurrentCalls(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	var b strings.Builder
	b.WriteString("userId,name\n")
	const n = 40
	for i := range n {
		fmt.Fprintf(&b, "s%02d,Student %d\n", i, i)
	}
	const calls = 4
	results := make([]roster.Response, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			rec := e.post(t, "/api/v1/secret-keys/bulk?providerSettingIds=p1", "text/csv", "", b.String())
			if rec.Code != 200 {
				t.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &results[i])
		})
	}
	wg.Wait()
	created := map[string]string{}
	for _, r := range results {
		if r.Summary.Created+r.Summary.Existing != n {
			t.Errorf("summary %+v", r.Summary)
		}
		for _, c := range r.Created {
			if prev, dup := created[c.UserID]; dup {
				t.Errorf("%s created twice: %s and %s", c.UserID, prev, c.KeyID)
			}
			created[c.UserID] = c.KeyID
		}
	}
	for _, r := range results {
		for _, x := range r.Existing {
			if created[x.UserID] != x.KeyID {
				t.Errorf("%s existing as %s, created as %s", x.UserID, x.KeyID, created[x.UserID])
			}
		}
	}
	if len(created) != n || e.store.keyCount() != n {
		t.Errorf("created %d, keys stored %d; want %d", len(created), e.store.keyCount(), n)
	}
}

// otherCallsKey is the roster key another roster call makes for student s1.
func otherCallsKey() *apikey.Key {
	id, plaintext := apikey.Generate()
	return &apikey.Key{ID: id, Hash: apikey.Hash(plaintext), UserID: "s1", Name: "Ada"}
}

func TestRosterLosesRaces(t *testing.T) {
	ctx := context.Background()
	const one = `{"defaults": {"providerSettingIds": ["p1"]}, "rotate": %s, "students": [{"userId": "s1", "name": "Ada"}]}`
	t.Run("another call creates the key first", func(t *testing.T) {
		e := newEnv(t)
		e.addProvider("p1")
		var theirs string
		e.store.rosterHook = func() {
			k := otherCallsKey()
			if err := e.store.CreateRosterKey(ctx, k); err != nil {
				t.Error(err)
			}
			theirs = k.ID
		}
		res := e.roster(t, fmt.Sprintf(one, "false"))
		if len(res.Existing) != 1 || res.Existing[0].KeyID != theirs || e.store.keyCount() != 1 {
			t.Fatalf("%+v; keys %d", res, e.store.keyCount())
		}
	})
	t.Run("another call rotates first: no second rotation", func(t *testing.T) {
		e := newEnv(t)
		e.addProvider("p1")
		first := e.roster(t, fmt.Sprintf(one, "false")).Created[0]
		var theirs string
		e.store.rosterHook = func() {
			m, _ := e.store.RosterKeys(ctx, []string{"s1"})
			old := *m["s1"].Key
			old.Revoked = true
			k := otherCallsKey()
			if err := e.store.ReplaceRosterKey(ctx, first.KeyID, &old, k); err != nil {
				t.Error(err)
			}
			theirs = k.ID
		}
		res := e.roster(t, fmt.Sprintf(one, "true"))
		if len(res.Existing) != 1 || res.Existing[0].KeyID != theirs || e.store.keyCount() != 2 {
			t.Fatalf("%+v; keys %d", res, e.store.keyCount())
		}
	})
	t.Run("the key to revoke changes first: rotation retried", func(t *testing.T) {
		e := newEnv(t)
		e.addProvider("p1")
		first := e.roster(t, fmt.Sprintf(one, "false")).Created[0]
		e.store.rosterHook = func() {
			e.store.mu.Lock()
			defer e.store.mu.Unlock()
			k := e.store.keys[first.KeyID]
			k.CostLimitLifetime, k.Version = 42*money.Dollar, k.Version+1 // a PATCH
		}
		res := e.roster(t, fmt.Sprintf(one, "true"))
		if len(res.Rotated) != 1 || res.Rotated[0].RevokedKeyID != first.KeyID {
			t.Fatalf("%+v", res)
		}
		if k := e.store.key(t, first.KeyID); !k.Revoked || k.CostLimitLifetime != 42*money.Dollar {
			t.Errorf("old key %+v: the concurrent change was lost", k)
		}
	})
}

func TestRosterStorageFailures(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	body := `{"defaults": {"providerSettingIds": ["p1"]}, "students": [{"userId": "s1", "name": "A"}, {"userId": "s2", "name": "B"}]}`
	e.store.rosterFail = map[string]error{"s2": errors.New("throttled")}
	var res roster.Response
	decode(t, e.post(t, "/api/v1/secret-keys/bulk", "application/json", "", body), 207, &res)
	if len(res.Created) != 1 || len(res.Failed) != 1 || res.Failed[0].UserID != "s2" || res.Failed[0].Key != "" ||
		!strings.Contains(res.Failed[0].Error, "try again") || strings.Contains(res.Failed[0].Error, "throttled") {
		t.Fatalf("%+v", res)
	}
	checkKeys(t, e.store, res.Created)

	// Sending it again finishes the job.
	e.store.rosterFail = nil
	res = e.roster(t, body)
	if len(res.Created) != 1 || res.Created[0].UserID != "s2" || len(res.Existing) != 1 {
		t.Fatalf("retry: %+v", res)
	}

	// When every student fails, the answer is a 503.
	e.store.rosterFail = map[string]error{"s3": errors.New("down")}
	rec := e.post(t, "/api/v1/secret-keys/bulk", "application/json", "",
		`{"defaults": {"providerSettingIds": ["p1"]}, "students": [{"userId": "s3", "name": "C"}]}`)
	wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
}

// ---- bulk update and revoke ----

// enrolled returns an env with a roster of s1..s3 (course tag cs101) plus a
// key of s1 made by hand and an unrelated key.
func enrolled(t *testing.T) (*env, map[string]string) {
	t.Helper()
	e := newEnv(t)
	e.addProvider("p1")
	res := e.roster(t, `{"defaults": {"providerSettingIds": ["p1"], "tags": ["cs101"], "costLimitInUsdPerMonth": 1},
		"students": [{"userId": "s1", "name": "A"}, {"userId": "s2", "name": "B"}, {"userId": "s3", "name": "C"}]}`)
	ids := map[string]string{}
	for _, c := range res.Created {
		ids[c.UserID] = c.KeyID
	}
	ids["s1-own"] = e.createKey(t, `{"name": "own", "providerSettingIds": ["p1"], "userId": "s1"}`).ID
	ids["other"] = e.createKey(t, `{"name": "other", "providerSettingIds": ["p1"], "tags": ["cs102"]}`).ID
	return e, ids
}

func TestBulkUpdate(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		updated []string // keys updated (by name in ids)
		skipped int
	}{
		{"by tag", `{"tag": "cs101", "set": {"costLimitInUsdPerMonth": 2.5}}`, []string{"s1", "s2", "s3"}, 0},
		{"by roster tag", `{"tag": "roster", "set": {"costLimitInUsdPerMonth": 2.5}}`, []string{"s1", "s2", "s3"}, 0},
		{"by userIds: every key of the user", `{"userIds": ["s1", "s1", "s3"], "set": {"costLimitInUsdPerMonth": 2.5}}`, []string{"s1", "s1-own", "s3"}, 0},
		{"by keyIds", `{"keyIds": ["$other"], "set": {"costLimitInUsdPerMonth": 2.5}}`, []string{"other"}, 0},
		{"revoked keys are skipped", `{"tag": "cs101", "set": {"costLimitInUsdPerMonth": 2.5}} `, []string{"s1", "s3"}, 1},
		{"unless included", `{"tag": "cs101", "includeRevoked": true, "set": {"costLimitInUsdPerMonth": 2.5}}`, []string{"s1", "s2", "s3"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ids := enrolled(t)
			if strings.Contains(tc.name, "revoked") || strings.Contains(tc.name, "included") {
				e.do(t, "PATCH", "/api/v1/secret-keys/"+ids["s2"], `{"revoked": true}`)
			}
			body := strings.ReplaceAll(tc.body, "$other", ids["other"])
			var res roster.UpdateResponse
			decode(t, e.post(t, "/api/v1/secret-keys/bulk-update", "application/json", "", body), 200, &res)
			if res.Updated != len(tc.updated) || res.Skipped != tc.skipped || res.Failed != 0 || res.Matched != len(tc.updated)+tc.skipped {
				t.Fatalf("%+v", res)
			}
			want := map[string]bool{}
			for _, name := range tc.updated {
				want[ids[name]] = true
			}
			for name, id := range ids {
				k := e.store.key(t, id)
				if got := k.CostLimitPerMonth == 2*money.Dollar+50*money.Cent; got != want[id] {
					t.Errorf("%s: monthly limit %s, updated %v, want %v", name, k.CostLimitPerMonth, got, want[id])
				}
			}
		})
	}
}

func TestBulkUpdateUsersAndConflicts(t *testing.T) {
	e, ids := enrolled(t)
	// Someone else changes a key while the update runs: the update is redone
	// on the fresh key, keeping the other change.
	e.store.conflicts = 1
	e.store.otherWriter = func(k *apikey.Key) { k.Moderation = true }
	var res roster.UpdateResponse
	decode(t, e.post(t, "/api/v1/secret-keys/bulk-update", "application/json", "",
		`{"userIds": ["s1", "s2"], "set": {"rateLimitOverTime": 30, "rateLimitUnit": "m", "user": {"costLimitInUsdOverTime": 0.3, "costLimitInUsdUnit": "mo"}}}`), 200, &res)
	if res.Updated != 3 || res.UsersUpdated != 2 || len(res.Users) != 2 {
		t.Fatalf("%+v", res)
	}
	moderated := 0
	for _, id := range []string{ids["s1"], ids["s1-own"], ids["s2"]} {
		k := e.store.key(t, id)
		if k.RateLimitOverTime != 30 || k.RateLimitUnit != "m" {
			t.Errorf("key %+v", k)
		}
		if k.Moderation {
			moderated++
		}
	}
	if moderated != 1 {
		t.Errorf("the concurrent change was lost (%d keys moderated)", moderated)
	}
	for _, id := range []string{"s1", "s2"} {
		if u := e.store.storedUser(t, id); u.CostLimitOverTime != 30*money.Cent || u.CostLimitUnit != "mo" {
			t.Errorf("user %+v", u)
		}
	}
	if u := e.store.storedUser(t, "s3"); u.CostLimitOverTime != 0 {
		t.Errorf("s3 changed: %+v", u)
	}
	// Only users: keys are skipped.
	decode(t, e.post(t, "/api/v1/secret-keys/bulk-update", "application/json", "",
		`{"tag": "cs101", "set": {"user": {"costLimitInUsd": 9}}}`), 200, &res)
	if res.Skipped != 3 || res.UsersUpdated != 3 {
		t.Fatalf("%+v", res)
	}
}

func TestBulkUpdateInvalid(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		fields []string
		msg    string
	}{
		{"no selector", `{"set": {"costLimitInUsdPerMonth": 1}}`, []string{"userIds"}, "exactly one of userIds, keyIds or tag"},
		{"two selectors", `{"tag": "x", "userIds": ["s1"], "set": {"costLimitInUsdPerMonth": 1}}`, []string{"userIds"}, "exactly one"},
		{"empty list", `{"userIds": [" "], "set": {"costLimitInUsdPerMonth": 1}}`, []string{"userIds"}, "non-empty list"},
		{"unknown users", `{"userIds": ["s1", "ghost", "ghoul"], "set": {"costLimitInUsdPerMonth": 1}}`, []string{"userIds[1]", "userIds[2]"}, `user "ghost" does not exist`},
		{"unknown keys", `{"keyIds": ["nope"], "set": {"costLimitInUsdPerMonth": 1}}`, []string{"keyIds[0]"}, `secret key "nope" does not exist`},
		{"no set", `{"tag": "cs101"}`, []string{"set"}, "set is required"},
		{"null set", `{"tag": "cs101", "set": null}`, []string{"set"}, "set is required"},
		{"empty set", `{"tag": "cs101", "set": {}}`, []string{"set"}, "set names no field"},
		{"refused and unknown fields", `{"tag": "cs101", "sett": 1, "set": {"revoked": true, "name": "x", "costLimit": 1, "user": {"userId": "x"}}}`,
			[]string{"sett", "set.user.userId", "set.name", "set.revoked", "set.costLimit"}, "unknown field sett"},
		{"bad value", `{"tag": "cs101", "set": {"costLimitInUsdPerMonth": -1, "user": {"ttl": 5}}}`,
			[]string{"set.user.ttl", "set.costLimitInUsdPerMonth"}, "set: user.ttl must be"},
		{"unknown provider", `{"tag": "cs101", "set": {"providerSettingIds": ["nope"]}}`, []string{"set.providerSettingIds"}, "does not exist"},
		{"a rule broken on every key", `{"tag": "cs101", "set": {"rateLimitOverTime": 5}}`,
			[]string{"set.rateLimitUnit", "set.rateLimitUnit", "set.rateLimitUnit"}, "secret key "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := enrolled(t)
			calls := e.store.updateCalls
			b := wantProblems(t, e.post(t, "/api/v1/secret-keys/bulk-update", "application/json", "", tc.body))
			if got := fields(b.Errors); !slices.Equal(got, tc.fields) {
				t.Errorf("fields %q, want %q: %s", got, tc.fields, b.Error.Message)
			}
			if !strings.Contains(b.Errors[0].Message, tc.msg) {
				t.Errorf("message %q, want %q", b.Errors[0].Message, tc.msg)
			}
			if e.store.updateCalls != calls || e.store.userUpdateCalls != 0 {
				t.Errorf("something was written")
			}
		})
	}
}

func TestBulkRevoke(t *testing.T) {
	e, ids := enrolled(t)
	var res roster.RevokeResponse
	decode(t, e.post(t, "/api/v1/secret-keys/bulk-revoke", "application/json", "", `{"tag": "roster", "reason": "end of term"}`), 200, &res)
	if res.Matched != 3 || res.Revoked != 3 || res.AlreadyRevoked != 0 || len(res.Keys) != 3 {
		t.Fatalf("%+v", res)
	}
	for _, name := range []string{"s1", "s2", "s3"} {
		if k := e.store.key(t, ids[name]); !k.Revoked || k.RevokedReason != "end of term" {
			t.Errorf("%s: %+v", name, k)
		}
	}
	if e.store.key(t, ids["s1-own"]).Revoked || e.store.key(t, ids["other"]).Revoked {
		t.Error("keys outside the tag were revoked")
	}
	// Again: nothing changes.
	decode(t, e.post(t, "/api/v1/secret-keys/bulk-revoke", "application/json", "", `{"userIds": ["s1"]}`), 200, &res)
	if res.Matched != 2 || res.Revoked != 1 || res.AlreadyRevoked != 1 {
		t.Fatalf("%+v", res)
	}
	if k := e.store.key(t, ids["s1"]); k.RevokedReason != "end of term" {
		t.Errorf("reason overwritten: %+v", k)
	}
	// The next roster call reissues the revoked roster keys.
	again := e.roster(t, `{"defaults": {"providerSettingIds": ["p1"]}, "students": [{"userId": "s1", "name": "A"}]}`)
	if len(again.Created) != 1 || again.Created[0].PreviousKeyID != ids["s1"] {
		t.Fatalf("%+v", again)
	}

	for _, tc := range []struct{ name, body, field string }{
		{"no selector", `{"reason": "x"}`, "userIds"},
		{"unknown field", `{"tag": "x", "reson": "typo"}`, "reson"},
		{"long reason", `{"tag": "x", "reason": "` + strings.Repeat("x", 257) + `"}`, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := wantProblems(t, e.post(t, "/api/v1/secret-keys/bulk-revoke", "application/json", "", tc.body))
			if b.Errors[0].Field != tc.field {
				t.Errorf("%+v", b.Errors)
			}
		})
	}

	// Every write fails: 503; one key fails: 207, and sending it again
	// finishes the job.
	e2, ids2 := enrolled(t)
	e2.store.conflicts = 100 // every write loses its race
	wantError(t, e2.post(t, "/api/v1/secret-keys/bulk-revoke", "application/json", "", `{"tag": "roster"}`), 503, apierror.CodeServiceUnavailable, "")
	e2.store.conflicts = 0
	e2.h = New(Config{
		Store: failKey{e2.store, ids2["s2"]}, AdminKey: func(context.Context) (string, error) { return adminKey, nil },
		Now: func() time.Time { return testNow },
	})
	decode(t, e2.post(t, "/api/v1/secret-keys/bulk-revoke", "application/json", "", `{"tag": "roster"}`), 207, &res)
	if res.Failed != 1 || res.Revoked != 2 || !strings.Contains(res.Keys[slices.IndexFunc(res.Keys, func(k roster.KeyResult) bool { return k.Status == roster.StatusFailed })].Error, "try again") {
		t.Fatalf("%+v", res)
	}
	if e2.store.key(t, ids2["s2"]).Revoked {
		t.Error("the failed key is revoked")
	}
}

// failKey is a store whose UpdateKey of one key fails.
type failKey struct {
	*fakeStore
	id string
}

func (f failKey) UpdateKey(ctx context.Context, k *apikey.Key) error {
	if k.ID == f.id {
		return errors.New("throttled")
	}
	return f.fakeStore.UpdateKey(ctx, k)
}
