package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/reporting"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/ledger"
)

// ListEvents is the in-memory listing: every filter that is set must match,
// newest first, and the cursor is the number of events already listed.
func (s *fakeStore) ListEvents(_ context.Context, q ledger.EventQuery) ([]*ledger.Event, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := cmp.Or(s.fail, s.failEvents); err != nil {
		return nil, "", err
	}
	var list []*ledger.Event
	for _, ev := range s.events {
		if (q.KeyID == "" || ev.KeyID == q.KeyID) && (q.UserID == "" || ev.UserID == q.UserID) &&
			(q.CustomID == "" || ev.CustomID == q.CustomID) &&
			ev.CreatedAt >= q.Start.UnixMilli() && ev.CreatedAt < q.End.UnixMilli() {
			c := *ev
			if q.OmitBodies {
				c.RequestBody, c.ResponseBody = "", ""
			}
			list = append(list, &c)
		}
	}
	slices.SortFunc(list, reporting.NewestFirst)
	from := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(q.Cursor, "fake-"))
		if err != nil || !strings.HasPrefix(q.Cursor, "fake-") || n > len(list) {
			return nil, "", fmt.Errorf("%w: not a cursor returned by this API", ledger.ErrBadCursor)
		}
		from = n
	}
	list = list[from:]
	if len(list) > q.Limit {
		return list[:q.Limit], "fake-" + strconv.Itoa(from+q.Limit), nil
	}
	return list, "", nil
}

// recordingEvents records the queries that reach the store and lets a test
// change them on the way.
type recordingEvents struct {
	*fakeStore
	queries *[]ledger.EventQuery
	change  func(*ledger.EventQuery)
}

func (r recordingEvents) ListEvents(ctx context.Context, q ledger.EventQuery) ([]*ledger.Event, string, error) {
	*r.queries = append(*r.queries, q)
	if r.change != nil {
		r.change(&q)
	}
	return r.fakeStore.ListEvents(ctx, q)
}

// eventsEnv is an env whose store holds events e0..e6 (createdAt = testNow
// minus 7-i minutes) and one from 40 days ago.
func eventsEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	at := func(i int) int64 { return testNow.Add(time.Duration(i-7) * time.Minute).UnixMilli() }
	e.store.events = []*ledger.Event{
		{ID: "e0", KeyID: "kA", UserID: "u1", CustomID: "run", CreatedAt: at(0)},
		{ID: "e1", KeyID: "kB", UserID: "u1", CreatedAt: at(1)},
		{ID: "e2", KeyID: "kA", UserID: "u1", CreatedAt: at(2), RequestBody: `{"model":"m"}`, RequestBodyBytes: 13,
			ResponseBody: "data: x", ResponseBodyBytes: 900, ResponseBodyTruncated: true},
		{ID: "e3", KeyID: "kC", CustomID: "run", CreatedAt: at(3)},
		{ID: "e4", KeyID: "kB", UserID: "u1", CustomID: "run", CreatedAt: at(4)},
		{ID: "e5", KeyID: "kA", UserID: "u1", CustomID: "other", CreatedAt: at(5)},
		{ID: "e6", KeyID: "kC", CreatedAt: at(6)},
		{ID: "old", KeyID: "kA", CreatedAt: testNow.Add(-40 * 24 * time.Hour).UnixMilli()},
	}
	return e
}

// listIDs follows the nextCursor of GET path to the end, returning the ids
// of each page.
func listIDs(t *testing.T, e *env, path string) [][]string {
	t.Helper()
	var pages [][]string
	next := ""
	for i := 0; ; i++ {
		if i > 20 {
			t.Fatal("nextCursor never ends")
		}
		p := path
		if next != "" {
			p += "&cursor=" + url.QueryEscape(next)
		}
		var page struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
			NextCursor *string `json:"nextCursor"`
		}
		decode(t, e.do(t, "GET", p, ""), 200, &page)
		ids := []string{}
		for _, ev := range page.Events {
			ids = append(ids, ev.ID)
		}
		pages = append(pages, ids)
		if page.NextCursor == nil {
			return pages
		}
		next = *page.NextCursor
	}
}

func TestListEvents(t *testing.T) {
	e := eventsEnv(t)
	sec := func(d time.Duration) string { return strconv.FormatInt(testNow.Add(d).Unix(), 10) }
	tests := []struct {
		name  string
		query string
		want  [][]string
	}{
		{"by key, newest first, last 30 days", "keyId=kA", [][]string{{"e5", "e2", "e0"}}},
		{"by key, pages of 2", "keyId=kA&limit=2", [][]string{{"e5", "e2"}, {"e0"}}},
		{"by user across keys", "userId=u1&limit=3", [][]string{{"e5", "e4", "e2"}, {"e1", "e0"}}},
		{"by custom id across keys", "customId=run", [][]string{{"e4", "e3", "e0"}}},
		{"custom id and key", "customId=run&keyId=kB", [][]string{{"e4"}}},
		{"all", "all=true&limit=4", [][]string{{"e6", "e5", "e4", "e3"}, {"e2", "e1", "e0"}}},
		{"explicit range", "all=true&start=" + sec(-5*time.Minute) + "&end=" + sec(-2*time.Minute), [][]string{{"e4", "e3", "e2"}}},
		{"older events need a start", "keyId=kA&start=" + sec(-41*24*time.Hour), [][]string{{"e5", "e2", "e0", "old"}}},
		{"end alone: the 30 days before it", "keyId=kA&end=" + sec(-39*24*time.Hour), [][]string{{"old"}}},
		{"nothing", "userId=nobody", [][]string{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := listIDs(t, e, "/api/v1/events?"+tt.query); !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("pages = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("event JSON", func(t *testing.T) {
		for _, tc := range []struct {
			query      string
			wantBodies bool
		}{{"keyId=kA", true}, {"keyId=kA&includeBodies=true", true}, {"keyId=kA&includeBodies=false", false}} {
			rec := e.do(t, "GET", "/api/v1/events?"+tc.query, "")
			var page struct {
				Events []map[string]any `json:"events"`
			}
			decode(t, rec, 200, &page)
			var e2 map[string]any
			for _, ev := range page.Events {
				if ev["id"] == "e2" {
					e2 = ev
				}
			}
			if e2 == nil {
				t.Fatalf("%s: e2 missing: %s", tc.query, rec.Body)
			}
			ms := testNow.Add(-5 * time.Minute).UnixMilli()
			if e2["createdAt"] != float64(ms/1000) || e2["createdAtMs"] != float64(ms) || e2["keyId"] != "kA" {
				t.Errorf("%s: e2 = %v", tc.query, e2)
			}
			if e2["requestBodyBytes"] != float64(13) || e2["responseBodyTruncated"] != true {
				t.Errorf("%s: body sizes and flags: %v", tc.query, e2)
			}
			_, hasReq := e2["requestBody"]
			if hasReq != tc.wantBodies || (tc.wantBodies && (e2["requestBody"] != `{"model":"m"}` || e2["responseBody"] != "data: x")) {
				t.Errorf("%s: bodies: %v", tc.query, e2)
			}
		}
	})

	t.Run("what reaches the store", func(t *testing.T) {
		var got []ledger.EventQuery
		e := eventsEnv(t)
		e.configure(func(c *Config) { c.Store = recordingEvents{fakeStore: e.store, queries: &got} })
		e.do(t, "GET", "/api/v1/events?userId=u1&customId=run&keyId=kB&includeBodies=false&limit=7", "")
		e.do(t, "GET", "/api/v1/events?all=true", "")
		want := []ledger.EventQuery{
			{KeyID: "kB", UserID: "u1", CustomID: "run", Start: testNow.Add(-30 * 24 * time.Hour), End: testNow,
				Limit: 7, OmitBodies: true, BodyBudget: reporting.EventBodyBudget},
			{All: true, Start: testNow.Add(-30 * 24 * time.Hour), End: testNow, Limit: 50, BodyBudget: reporting.EventBodyBudget},
		}
		if len(got) != len(want) {
			t.Fatalf("queries = %+v", got)
		}
		for i := range want {
			if !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
				t.Errorf("query %d range = %v..%v, want %v..%v", i, got[i].Start, got[i].End, want[i].Start, want[i].End)
			}
			got[i].Start, got[i].End, want[i].Start, want[i].End = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got[i] != want[i] {
				t.Errorf("query %d = %+v\nwant %+v", i, got[i], want[i])
			}
		}
	})
}

func TestListEventsErrors(t *testing.T) {
	e := eventsEnv(t)
	long := strings.Repeat("x", reporting.MaxEventFilterLen+1)
	tests := []struct {
		name, query string
		status      int
		code, param string
	}{
		{"nothing named", "", 400, apierror.CodeInvalidRequest, "keyId"},
		{"all=false alone", "all=false", 400, apierror.CodeInvalidRequest, "keyId"},
		{"all not a bool", "all=yes%20please", 400, apierror.CodeInvalidRequest, "all"},
		{"empty keyId", "keyId=", 400, apierror.CodeInvalidRequest, "keyId"},
		{"two keyIds", "keyId=a&keyId=b", 400, apierror.CodeInvalidRequest, "keyId"},
		{"customId too long", "customId=" + long, 400, apierror.CodeInvalidRequest, "customId"},
		{"limit 0", "keyId=kA&limit=0", 400, apierror.CodeInvalidRequest, "limit"},
		{"limit 501", "keyId=kA&limit=501", 400, apierror.CodeInvalidRequest, "limit"},
		{"limit not a number", "keyId=kA&limit=ten", 400, apierror.CodeInvalidRequest, "limit"},
		{"start negative", "keyId=kA&start=-1", 400, apierror.CodeInvalidRequest, "start"},
		{"start in ms beyond year 9999", "keyId=kA&start=999999999999999", 400, apierror.CodeInvalidRequest, "start"},
		{"end not a number", "keyId=kA&end=now", 400, apierror.CodeInvalidRequest, "end"},
		{"end before start", "keyId=kA&start=200&end=100", 400, apierror.CodeInvalidRequest, "end"},
		{"includeBodies not a bool", "keyId=kA&includeBodies=2", 400, apierror.CodeInvalidRequest, "includeBodies"},
		{"tampered cursor", "keyId=kA&cursor=abc", 400, apierror.CodeInvalidRequest, "cursor"},
		{"legacy: nothing named", "", 400, apierror.CodeInvalidRequest, "customId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/api/v1/events?" + tt.query
			if strings.HasPrefix(tt.name, "legacy") {
				path = "/api/events?" + tt.query
			}
			b := wantError(t, e.do(t, "GET", path, ""), tt.status, tt.code, tt.param)
			if !strings.Contains(b.Error.Message, tt.param) {
				t.Errorf("message %q does not name %s", b.Error.Message, tt.param)
			}
		})
	}

	t.Run("a cursor the store refuses", func(t *testing.T) {
		e := eventsEnv(t)
		e.configure(func(c *Config) {
			c.Store = recordingEvents{fakeStore: e.store, queries: new([]ledger.EventQuery), change: func(q *ledger.EventQuery) {
				q.Cursor = "refuse"
			}}
		})
		// The fake refuses the cursor: a cursor error names the cursor.
		wantError(t, e.do(t, "GET", "/api/v1/events?all=true", ""), 400, apierror.CodeInvalidRequest, "cursor")
	})

	t.Run("store unavailable", func(t *testing.T) {
		e := eventsEnv(t)
		e.store.failEvents = errors.New("dynamodb: connection refused to 10.0.0.7")
		for _, path := range []string{"/api/v1/events?keyId=kA", "/api/events?customId=run"} {
			rec := e.do(t, "GET", path, "")
			wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
			if strings.Contains(rec.Body.String(), "10.0.0.7") {
				t.Errorf("%s leaked the cause: %s", path, rec.Body)
			}
		}
	})

	t.Run("admin key required", func(t *testing.T) {
		for _, path := range []string{"/api/v1/events?keyId=kA", "/api/events?customId=run"} {
			wantError(t, e.doAuth(t, "GET", path, "", ""), 401, apierror.CodeInvalidAPIKey, "")
		}
	})
}

func TestLegacyEvents(t *testing.T) {
	e := eventsEnv(t)
	tests := []struct {
		name, query string
		want        []string
	}{
		{"by custom id", "customId=run", []string{"e4", "e3", "e0"}},
		{"by user", "userId=u1", []string{"e5", "e4", "e2", "e1", "e0"}},
		{"keyIds repeated", "keyIds=kB&keyIds=kC", []string{"e6", "e4", "e3", "e1"}},
		{"keyIds comma-separated, with a custom id", "keyIds=kA,kB&customId=run", []string{"e4", "e0"}},
		{"range in seconds", "customId=run&start=" + strconv.FormatInt(testNow.Add(-4*time.Minute).Unix(), 10), []string{"e4", "e3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do(t, "GET", "/api/events?"+tt.query, "")
			var list []struct {
				ID        string `json:"id"`
				CreatedAt int64  `json:"createdAt"`
			}
			decode(t, rec, 200, &list)
			var ids []string
			for _, ev := range list {
				ids = append(ids, ev.ID)
				if ev.CreatedAt > testNow.Unix() || ev.CreatedAt < testNow.Add(-time.Hour).Unix() {
					t.Errorf("%s: createdAt %d is not in seconds", ev.ID, ev.CreatedAt)
				}
			}
			if !slices.Equal(ids, tt.want) || rec.Header().Get("X-Stipend-Truncated") != "" {
				t.Errorf("ids = %v, want %v (truncated %q)", ids, tt.want, rec.Header().Get("X-Stipend-Truncated"))
			}
		})
	}

	t.Run("a key with more ends the list", func(t *testing.T) {
		e := eventsEnv(t)
		// kA's listing gets pages of 1: e5 and a cursor. kB's has e4 and
		// e1; e1 is older than e5, and kA's e2 (not listed) is older than
		// e5 but newer than e1, so the list must stop at e5.
		e.configure(func(c *Config) {
			c.Store = recordingEvents{fakeStore: e.store, queries: new([]ledger.EventQuery), change: func(q *ledger.EventQuery) {
				if q.KeyID == "kA" {
					q.Limit = 1
				}
			}}
		})
		rec := e.do(t, "GET", "/api/events?keyIds=kA,kB", "")
		var list []struct {
			ID string `json:"id"`
		}
		decode(t, rec, 200, &list)
		if len(list) != 1 || list[0].ID != "e5" || rec.Header().Get("X-Stipend-Truncated") != "true" {
			t.Errorf("list = %+v, truncated %q", list, rec.Header().Get("X-Stipend-Truncated"))
		}
	})

	t.Run("too many keyIds", func(t *testing.T) {
		ids := make([]string, reporting.MaxLegacyKeyIDs+1)
		for i := range ids {
			ids[i] = "k" + strconv.Itoa(i)
		}
		wantError(t, e.do(t, "GET", "/api/events?keyIds="+strings.Join(ids, ","), ""), 400, apierror.CodeInvalidRequest, "keyIds")
	})

	t.Run("an empty answer is an array", func(t *testing.T) {
		rec := e.do(t, "GET", "/api/events?customId=none", "")
		if strings.TrimSpace(rec.Body.String()) != "[]" {
			t.Errorf("body = %s", rec.Body)
		}
		var v any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
	})
}
