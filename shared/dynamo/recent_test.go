package dynamo

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/testclock"
)

// TestRecentEvents: a key's latest events, newest first, only its own,
// never with bodies.
func TestRecentEvents(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "recent")
	base := testclock.Now(t).Add(-time.Hour)
	for i, key := range []string{"kA", "kB", "kA", "kA", "kB", "kA"} {
		ev := &ledger.Event{ID: "e" + string(rune('0'+i)), KeyID: key, Model: "gpt-4o-mini", Status: 200, Cost: 1000,
			CreatedAt: base.Add(time.Duration(i) * time.Minute).UnixMilli(), RequestBody: `{"secret prompt":1}`, ResponseBody: "answer"}
		if err := record(ctx, s, ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		key   string
		limit int
		want  []string
	}{
		{"kA", 20, []string{"e5", "e3", "e2", "e0"}},
		{"kA", 2, []string{"e5", "e3"}},
		{"kB", 20, []string{"e4", "e1"}},
		{"nobody", 20, []string{}},
	} {
		got, err := s.RecentEvents(ctx, tt.key, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), tt.want) {
			t.Errorf("RecentEvents(%s, %d) = %v, want %v", tt.key, tt.limit, ids(got), tt.want)
		}
		for _, ev := range got {
			if ev.RequestBody != "" || ev.ResponseBody != "" || ev.KeyID != tt.key {
				t.Errorf("event %s: key %s, bodies %q %q", ev.ID, ev.KeyID, ev.RequestBody, ev.ResponseBody)
			}
		}
	}
}
