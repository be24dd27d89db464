package dynamo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/auditlog"
)

func TestAudit(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "audit")

	// Seven entries over three months (and a month boundary), oldest first.
	times := []time.Time{
		time.Date(2026, 3, 31, 23, 59, 59, 999e6, time.UTC),
		time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC), // same millisecond, other id
		time.Date(2026, 4, 30, 8, 0, 0, 0, time.UTC),
		time.Date(2026, 5, 2, 9, 0, 0, 0, time.UTC),
		time.Date(2026, 5, 3, 9, 0, 0, 0, time.UTC),
	}
	var all []*auditlog.Entry
	for i, at := range times {
		e := &auditlog.Entry{
			ID: fmt.Sprintf("e%d", i), CreatedAt: at.Unix(), CreatedAtMs: at.UnixMilli(),
			Actor: "admin", ActorKeyHash: "0123456789ab", Action: "key.update", Method: "PATCH",
			Path: "/api/v1/secret-keys/k", TargetIDs: []string{fmt.Sprintf("k%d", i%3)},
			Fields: []string{"name"}, Status: 200, RequestID: fmt.Sprintf("r%d", i),
		}
		if i == 4 {
			e.TargetIDs = nil // an entry without targets
		}
		if err := s.PutAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	if err := s.PutAudit(ctx, all[0]); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate PutAudit = %v, want ErrExists", err)
	}
	if err := s.PutAudit(ctx, &auditlog.Entry{ID: "x"}); err == nil {
		t.Fatal("PutAudit without a time succeeded")
	}

	// ids lists entries' ids newest first, reading page by page.
	ids := func(t *testing.T, q auditlog.Query) ([]string, int) {
		t.Helper()
		var out []string
		pages := 0
		for {
			p, err := s.ListAudit(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, e := range p.Entries {
				out = append(out, e.ID)
			}
			if p.Cursor == "" {
				return out, pages
			}
			if pages > 20 {
				t.Fatal("cursor never ends")
			}
			q.Cursor = p.Cursor
		}
	}
	wide := auditlog.Query{Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	newestFirst := []string{"e6", "e5", "e4", "e3", "e2", "e1", "e0"}
	tests := []struct {
		name   string
		q      auditlog.Query
		want   []string
		minPgs int
	}{
		{"all in one page", wide, newestFirst, 1},
		{"pages of two across months", with(wide, func(q *auditlog.Query) { q.Limit = 2 }), newestFirst, 4},
		{"pages of one", with(wide, func(q *auditlog.Query) { q.Limit = 1 }), newestFirst, 7},
		{"target filter", with(wide, func(q *auditlog.Query) { q.TargetID = "k0"; q.Limit = 1 }), []string{"e6", "e3", "e0"}, 3},
		{"unknown target", with(wide, func(q *auditlog.Query) { q.TargetID = "nobody" }), nil, 1},
		{"range is [start, end)", auditlog.Query{Start: times[1], End: times[5]}, []string{"e4", "e3", "e2", "e1"}, 1},
		{"one millisecond", auditlog.Query{Start: times[0], End: times[0].Add(time.Millisecond)}, []string{"e0"}, 1},
		{"empty range", auditlog.Query{Start: times[3], End: times[3]}, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, pages := ids(t, tc.q)
			// e2 and e3 share a millisecond; their order is by id.
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
			if pages < tc.minPgs {
				t.Errorf("%d pages, want at least %d", pages, tc.minPgs)
			}
		})
	}

	p, err := s.ListAudit(ctx, with(wide, func(q *auditlog.Query) { q.Limit = 1 }))
	if err != nil || len(p.Entries) != 1 || !reflect.DeepEqual(p.Entries[0], all[6]) {
		t.Fatalf("first entry = %+v, %v; want %+v", p.Entries, err, all[6])
	}
	for _, c := range []string{"nope", "eyJtIjoiMjAyNi0xMyIsInNrIjoieCJ9", p.Cursor + "x"} {
		if _, err := s.ListAudit(ctx, with(wide, func(q *auditlog.Query) { q.Cursor = c })); !errors.Is(err, ErrBadAuditCursor) {
			t.Errorf("cursor %q: err = %v, want ErrBadAuditCursor", c, err)
		}
	}
}

func with(q auditlog.Query, f func(*auditlog.Query)) auditlog.Query {
	f(&q)
	return q
}
