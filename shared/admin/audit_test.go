package admin

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/audit"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/auditlog"
	"github.com/stipend/stipend/shared/ledger"
)

// ---- the fake store's audit trail and key totals ----

// auditState is fakeStore's audit entries and key counters, guarded by its
// mu. Its zero value is ready to use.
type auditState struct {
	audit     []auditlog.Entry
	totals    map[string]ledger.Totals
	failAudit error // when set, PutAudit and ListAudit fail with it
	lastQuery auditlog.Query
}

func (s *fakeStore) PutAudit(_ context.Context, e *auditlog.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := cmp.Or(s.fail, s.failAudit); err != nil {
		return err
	}
	c := *e
	c.TargetIDs, c.Fields = slices.Clone(e.TargetIDs), slices.Clone(e.Fields)
	s.audit = append(s.audit, c)
	return nil
}

// ListAudit pages with a cursor that is the offset of the next entry.
func (s *fakeStore) ListAudit(_ context.Context, q auditlog.Query) (auditlog.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastQuery = q
	if err := cmp.Or(s.fail, s.failAudit); err != nil {
		return auditlog.Page{}, err
	}
	var sel []*auditlog.Entry
	for i := len(s.audit) - 1; i >= 0; i-- {
		e := s.audit[i]
		if e.CreatedAtMs < q.Start.UnixMilli() || e.CreatedAtMs >= q.End.UnixMilli() {
			continue
		}
		if q.TargetID != "" && !slices.Contains(e.TargetIDs, q.TargetID) {
			continue
		}
		c := e
		sel = append(sel, &c)
	}
	from := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(q.Cursor, "at:"))
		if err != nil || !strings.HasPrefix(q.Cursor, "at:") || n > len(sel) {
			return auditlog.Page{}, auditlog.ErrBadCursor
		}
		from = n
	}
	to := min(from+q.Limit, len(sel))
	p := auditlog.Page{Entries: sel[from:to]}
	if to < len(sel) {
		p.Cursor = "at:" + strconv.Itoa(to)
	}
	return p, nil
}

func (s *fakeStore) KeyTotals(_ context.Context, id string) (ledger.Totals, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return ledger.Totals{}, s.fail
	}
	return s.totals[id], nil
}

func (s *fakeStore) setTotals(id string, t ledger.Totals) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.totals == nil {
		s.totals = map[string]ledger.Totals{}
	}
	s.totals[id] = t
}

// auditEntries returns a copy of the recorded entries, oldest first.
func (s *fakeStore) auditEntries() []auditlog.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.audit)
}

// ---- tests ----

func adminKeyHash() string {
	sum := sha256.Sum256([]byte(adminKey))
	return hex.EncodeToString(sum[:])[:audit.ActorHashLen]
}

// TestAuditMutatingRoutes sends one request to every mutating route (and the
// audited key read) and checks the one entry each leaves.
func TestAuditMutatingRoutes(t *testing.T) {
	const providerSecret = "sk-provider-TOPSECRET-0123456789"
	e := newEnv(t)
	e.configure(func(c *Config) { c.Vault = newFakeVault() })
	e.addProvider("p1")
	existing := e.createKey(t, `{"name":"k","providerSettingIds":["p1"],"keyRetrievalMethod":"ANYTIME_BY_VIEWER"}`)
	before := len(e.store.auditEntries())
	if before != 1 {
		t.Fatalf("%d entries after one create, want 1", before)
	}

	tests := []struct {
		name, method, path, body string
		status                   int
		action                   string
		targets                  []string // must all be among the entry's
		fields                   []string
	}{
		{"create provider", "POST", "/api/v1/providers", `{"name":"o","provider":"openai","apiKey":"` + providerSecret + `"}`,
			200, "provider.create", nil, []string{"apiKey", "name", "provider"}},
		{"update provider", "PATCH", "/api/v1/providers/p1", `{"apiKey":"` + providerSecret + `"}`,
			200, "provider.update", []string{"p1"}, []string{"apiKey"}},
		{"create key", "POST", "/api/v1/secret-keys", `{"name":"k2","providerSettingIds":["p1"],"userId":"u2"}`,
			200, "key.create", []string{"u2"}, []string{"name", "providerSettingIds", "userId"}},
		{"update key", "PATCH", "/api/v1/secret-keys/" + existing.ID, `{"name":"renamed"}`,
			200, "key.update", []string{existing.ID}, []string{"name"}},
		{"read key back", "GET", "/api/v1/secret-keys/" + existing.ID + "/key", "",
			200, "key.retrieve", []string{existing.ID}, []string{}},
		{"revoke key", "PATCH", "/api/v1/secret-keys/" + existing.ID, `{"revoked":true,"revokedReason":"left"}`,
			200, "key.revoke", []string{existing.ID}, []string{"revoked", "revokedReason"}},
		{"archive key", "DELETE", "/api/v1/secret-keys/" + existing.ID, "",
			200, "key.archive", []string{existing.ID}, []string{}},
		{"unknown key", "PATCH", "/api/v1/secret-keys/nope", `{"name":"x"}`,
			404, "key.update", []string{"nope"}, []string{"name"}},
		{"bad request", "POST", "/api/v1/secret-keys", `{"name":""}`,
			400, "key.create", nil, []string{"name"}},
		{"create user", "POST", "/api/v1/users", `{"userId":"alice","name":"Alice","ttl":"never"}`,
			200, "user.create", []string{"alice"}, []string{"name", "ttl", "userId"}},
		{"update user", "PATCH", "/api/v1/users/alice", `{"name":"A"}`,
			200, "user.update", []string{"alice"}, []string{"name"}},
		{"revoke user", "PATCH", "/api/v1/users/alice", `{"revoked":true}`,
			200, "user.revoke", []string{"alice"}, []string{"revoked"}},
		{"organization", "PATCH", "/api/v1/organization", `{"costLimitInUsd":5}`,
			200, "org.update", nil, []string{"costLimitInUsd"}},
		{"litellm key", "POST", "/key/generate", `{"models":["gpt-4o"],"user_id":"bob"}`,
			200, "key.create", []string{"bob"}, []string{"models", "user_id"}},
		{"litellm user", "POST", "/user/new", `{"user_id":"carol","max_budget":3}`,
			200, "user.create", []string{"carol"}, []string{"max_budget", "user_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(e.store.auditEntries())
			rec := e.do(t, tc.method, tc.path, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			entries := e.store.auditEntries()
			if len(entries) != n+1 {
				t.Fatalf("%d new entries, want 1", len(entries)-n)
			}
			got := entries[n]
			if got.Action != tc.action || got.Status != tc.status || got.Method != tc.method ||
				got.Path != tc.path || got.Actor != "admin" || got.ActorKeyHash != adminKeyHash() ||
				got.CreatedAt != testNow.Unix() || got.CreatedAtMs != testNow.UnixMilli() {
				t.Errorf("entry %+v", got)
			}
			if rid := rec.Header().Get(RequestIDHeader); rid == "" || got.RequestID != rid || got.ID != rid {
				t.Errorf("request id header %q, entry %q/%q", rid, got.RequestID, got.ID)
			}
			if !reflect.DeepEqual(got.Fields, tc.fields) {
				t.Errorf("fields = %q, want %q", got.Fields, tc.fields)
			}
			for _, id := range tc.targets {
				if !slices.Contains(got.TargetIDs, id) {
					t.Errorf("targets %q lack %q", got.TargetIDs, id)
				}
			}
			// A created item's id is a target.
			if tc.status == 200 && tc.method == "POST" {
				var resp map[string]any
				_ = json.Unmarshal(rec.Body.Bytes(), &resp)
				if id, ok := resp["id"].(string); ok && !slices.Contains(got.TargetIDs, id) {
					t.Errorf("targets %q lack the new id %q", got.TargetIDs, id)
				}
				if k, ok := resp["key"].(string); ok {
					id, _ := apikey.Parse(k)
					if !slices.Contains(got.TargetIDs, id) {
						t.Errorf("targets %q lack the new key %q", got.TargetIDs, id)
					}
				}
			}
			// Never a secret: no provider key, no proxy key plaintext.
			b, _ := json.Marshal(got)
			for _, secret := range []string{providerSecret, existing.Key, apikey.Prefix} {
				if strings.Contains(string(b), secret) {
					t.Errorf("entry %s contains a secret", b)
				}
			}
			var resp map[string]any
			if json.Unmarshal(rec.Body.Bytes(), &resp) == nil {
				if k, ok := resp["key"].(string); ok && strings.Contains(string(b), k) {
					t.Errorf("entry %s contains the response's key", b)
				}
			}
		})
	}
}

func TestAuditSkipsReadsAndStrangers(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	c := e.createKey(t, `{"name":"k","providerSettingIds":["p1"]}`)
	base := len(e.store.auditEntries())
	for _, tc := range []struct{ method, path, body, auth string }{
		{"GET", "/api/v1/providers", "", "Bearer " + adminKey},
		{"GET", "/api/v1/secret-keys", "", "Bearer " + adminKey},
		{"GET", "/api/v1/secret-keys?includeArchived=true", "", "Bearer " + adminKey},
		{"GET", "/api/v1/secret-keys/" + c.ID, "", "Bearer " + adminKey},
		{"GET", "/api/v1/users", "", "Bearer " + adminKey},
		{"GET", "/api/v1/users/u2", "", "Bearer " + adminKey},
		{"GET", "/api/v1/organization", "", "Bearer " + adminKey},
		{"GET", "/api/v1/audit", "", "Bearer " + adminKey},
		{"GET", "/key/info?key=" + c.Key, "", "Bearer " + adminKey},
		{"GET", "/healthz", "", ""},
		{"POST", "/api/v1/secret-keys", `{"name":"x","providerSettingIds":["p1"]}`, ""},
		{"DELETE", "/api/v1/secret-keys/" + c.ID, "", "Bearer wrong"},
		{"POST", "/api/v1/nothing", `{}`, "Bearer " + adminKey},
		{"PUT", "/api/v1/secret-keys/" + c.ID, `{}`, "Bearer " + adminKey},
	} {
		rec := e.doAuth(t, tc.method, tc.path, tc.body, tc.auth)
		if rec.Code >= 500 {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rec.Code, rec.Body)
		}
		if n := len(e.store.auditEntries()); n != base {
			t.Errorf("%s %s (auth %q) left %d audit entries", tc.method, tc.path, tc.auth, n-base)
			base = n
		}
	}
	if k := e.store.key(t, c.ID); k.Archived || k.Revoked {
		t.Errorf("an unauthenticated DELETE changed the key")
	}
}

// TestAuditWriteFailure: the change stands, the client gets its answer, and
// the failure is logged without secrets.
func TestAuditWriteFailure(t *testing.T) {
	e := newEnv(t)
	e.store.failAudit = errors.New("dynamodb: throttled")
	rec := e.do(t, "POST", "/api/v1/providers", `{"name":"o","provider":"openai","apiKey":"sk-provider-SECRET-xyz"}`)
	var p struct{ ID string }
	decode(t, rec, 200, &p)
	if _, ok := e.store.providers[p.ID]; !ok {
		t.Fatalf("provider not created")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "audit entry not recorded") || !strings.Contains(logs, rec.Header().Get(RequestIDHeader)) {
		t.Errorf("failure not logged with the request id: %s", logs)
	}
	if strings.Contains(logs, "sk-provider-SECRET-xyz") {
		t.Errorf("logs leak the provider key")
	}
}

func TestListAudit(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	clock := testNow
	e.configure(func(c *Config) { c.Now = func() time.Time { return clock } })
	var ids []string
	for i := range 5 {
		clock = testNow.Add(time.Duration(i) * time.Minute)
		c := e.createKey(t, `{"name":"k","providerSettingIds":["p1"]}`)
		ids = append(ids, c.ID)
	}
	clock = testNow.Add(time.Hour)

	// Paging newest first.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		path := "/api/v1/audit?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page struct {
			Entries []auditlog.Entry `json:"entries"`
			Cursor  *string          `json:"cursor"`
		}
		decode(t, e.do(t, "GET", path, ""), 200, &page)
		for _, en := range page.Entries {
			got = append(got, en.TargetIDs[0])
		}
		if page.Cursor == nil {
			break
		}
		if pages > 5 {
			t.Fatal("cursor never ends")
		}
		cursor = *page.Cursor
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("targets newest first = %q, want %q", got, want)
	}

	// Defaults: end is now (inclusive of this second), start a year before.
	decode(t, e.do(t, "GET", "/api/v1/audit", ""), 200, nil)
	q := e.store.lastQuery
	if q.End.Unix() != clock.Unix()+1 || q.Start.Unix() != clock.Unix()+1-365*24*3600 || q.Limit != 100 || q.TargetID != "" {
		t.Errorf("default query %+v", q)
	}

	// Filters.
	var page struct {
		Entries []map[string]any `json:"entries"`
		Cursor  *string          `json:"cursor"`
	}
	rec := e.do(t, "GET", fmt.Sprintf("/api/v1/audit?targetId=%s&start=%d&end=%d", ids[2], testNow.Unix(), clock.Unix()), "")
	decode(t, rec, 200, &page)
	if len(page.Entries) != 1 || page.Cursor != nil || !strings.Contains(rec.Body.String(), `"cursor":null`) {
		t.Fatalf("filtered page %s", rec.Body)
	}
	for _, field := range []string{"id", "createdAt", "createdAtMs", "actor", "actorKeyHash", "action", "method", "path", "targetIds", "fields", "status", "requestId"} {
		if _, ok := page.Entries[0][field]; !ok {
			t.Errorf("entry lacks %q: %s", field, rec.Body)
		}
	}
	decode(t, e.do(t, "GET", fmt.Sprintf("/api/v1/audit?start=%d&end=%d", testNow.Unix()+1, testNow.Unix()+60), ""), 200, &page)
	if len(page.Entries) != 0 || !strings.Contains(e.do(t, "GET", fmt.Sprintf("/api/v1/audit?start=%d&end=%d", testNow.Unix()+1, testNow.Unix()+60), "").Body.String(), `"entries":[]`) {
		t.Errorf("empty range gave %v", page.Entries)
	}

	for _, tc := range []struct{ query, param string }{
		{"start=abc", "start"},
		{"end=-1", "end"},
		{"start=10&end=10", "end"},
		{"start=0&end=999999999", "start"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=x", "limit"},
		{"targetId=" + strings.Repeat("x", 129), "targetId"},
		{"cursor=bogus", "cursor"},
	} {
		wantError(t, e.do(t, "GET", "/api/v1/audit?"+tc.query, ""), 400, apierror.CodeInvalidRequest, tc.param)
	}
	e.store.failAudit = errors.New("dynamodb: 10.0.0.7 refused")
	rec = e.do(t, "GET", "/api/v1/audit", "")
	wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
	if strings.Contains(rec.Body.String(), "10.0.0.7") {
		t.Errorf("cause leaked: %s", rec.Body)
	}
}
