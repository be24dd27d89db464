package dynamo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/testclock"
)

// createKeys stores keys with the given ids: a listing of all events reads
// the partitions of the keys there are.
func createKeys(t *testing.T, s *Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := s.CreateKey(context.Background(), &apikey.Key{ID: id, CreatedAt: 1}); err != nil {
			t.Fatalf("create key %s: %v", id, err)
		}
	}
}

// queryCounter counts the Query calls of a Store and the items they read.
type queryCounter struct {
	mu           sync.Mutex
	calls, items int
}

func (c *queryCounter) middleware(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
	out, err := next(ctx)
	if q, ok := out.(*ddb.QueryOutput); ok && err == nil {
		c.mu.Lock()
		c.calls++
		c.items += len(q.Items)
		c.mu.Unlock()
	}
	return out, err
}

func (c *queryCounter) take() (calls, items int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls, items = c.calls, c.items
	c.calls, c.items = 0, 0
	return calls, items
}

// TestMergedEvents: the listing of all events merges the keys' partitions
// into one order, newest first, page after page, whatever the page size
// and range, and reads only about what a page needs from a busy key.
func TestMergedEvents(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	base := newStore(t, endpoint, "merged")
	var counter queryCounter
	s := New(base.db.With(counter.middleware), base.table, 0)
	now := testclock.Now(t).Truncate(time.Hour).Add(-24 * time.Hour)

	// 12 keys: k00 is busy, with the 40 newest events and more; k01 to k10
	// have 8 to 11 events each, interleaved with k00's older ones; k11 has
	// none.
	var keys []string
	for i := range 12 {
		keys = append(keys, fmt.Sprintf("k%02d", i))
	}
	createKeys(t, s, keys...)
	rng := rand.New(rand.NewPCG(1, 2))
	var all []*ledger.Event
	add := func(keyID string, at time.Time) {
		ev := &ledger.Event{ID: fmt.Sprintf("e%03d", len(all)), KeyID: keyID, CreatedAt: at.UnixMilli(), Model: "m", Status: 200}
		if _, err := s.recordEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		all = append(all, ev)
	}
	for i := range 40 {
		add("k00", now.Add(-time.Duration(i)*time.Second))
	}
	for i, k := range keys[1:11] {
		for range 8 + i%4 {
			add(k, now.Add(-time.Minute-time.Duration(rng.IntN(3600))*time.Second))
		}
		add("k00", now.Add(-30*time.Minute-time.Duration(i)*time.Minute))
	}
	// Two events in the same millisecond, on two keys.
	add("k01", now.Add(-2*time.Hour))
	add("k02", now.Add(-2*time.Hour))
	newestFirst := slices.Clone(all)
	slices.SortFunc(newestFirst, func(a, b *ledger.Event) int {
		return strings.Compare(eventSK(b.CreatedAt, b.ID), eventSK(a.CreatedAt, a.ID))
	})
	in := func(from, to time.Time) []string {
		var out []string
		for _, ev := range newestFirst {
			if ms := ev.CreatedAt; ms >= from.UnixMilli() && ms < to.UnixMilli() {
				out = append(out, ev.ID)
			}
		}
		return out
	}

	for _, tt := range []struct {
		limit    int
		from, to time.Time
	}{
		{1, now.Add(-2*time.Hour - time.Minute), now.Add(-90 * time.Minute)}, // the two of one millisecond
		{1, now.Add(-65 * time.Minute), now.Add(-50 * time.Minute)},
		{3, now.Add(-3 * time.Hour), now.Add(time.Hour)},
		{7, now.Add(-3 * time.Hour), now.Add(time.Hour)},
		{50, now.Add(-3 * time.Hour), now.Add(time.Hour)},
		{500, now.Add(-3 * time.Hour), now.Add(time.Hour)},
		{4, now.Add(-50 * time.Minute), now.Add(-10 * time.Second)},
	} {
		t.Run(fmt.Sprintf("pages of %d from %s", tt.limit, now.Sub(tt.from)), func(t *testing.T) {
			pages := listAll(t, s, ledger.EventQuery{All: true, Start: tt.from, End: tt.to, Limit: tt.limit, OmitBodies: true})
			var got []string
			for i, p := range pages {
				if i < len(pages)-1 && len(p) != tt.limit {
					t.Errorf("page %d holds %d events, want %d", i, len(p), tt.limit)
				}
				got = append(got, p...)
			}
			if want := in(tt.from, tt.to); !slices.Equal(got, want) {
				t.Errorf("events\n got %v\nwant %v", got, want)
			}
		})
	}

	// The first page of 10 is k00's alone. The keys' listing is read once,
	// the other keys once each, at a few events, and k00 twice: not the
	// page's 11 events from every key (133 items).
	counter.take()
	page, _, err := s.ListEvents(ctx, ledger.EventQuery{All: true, Start: now.Add(-3 * time.Hour), End: now.Add(time.Hour), Limit: 10, OmitBodies: true})
	if err != nil || len(page) != 10 || page[0].KeyID != "k00" || page[9].KeyID != "k00" {
		t.Fatalf("first page: %v, %v", ids(page), err)
	}
	calls, items := counter.take()
	if wantCalls, wantItems := 1+len(keys)+2, len(keys)+2*11+4*len(keys); calls > wantCalls || items > wantItems {
		t.Errorf("a page of 10 made %d queries reading %d items; want at most %d queries and %d items", calls, items, wantCalls, wantItems)
	}
}
