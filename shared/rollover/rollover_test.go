package rollover

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/apikey"
)

type fakeKeys struct {
	keys []*apikey.Key
	err  error
}

func (f fakeKeys) ListKeys(context.Context) ([]*apikey.Key, error) { return f.keys, f.err }

func TestRun(t *testing.T) {
	keys := fakeKeys{keys: []*apikey.Key{{ID: "a"}, {ID: "b"}}}
	tests := []struct {
		name   string
		keys   Keys
		task   Task
		at     time.Time
		period string
		n      int
		err    bool
	}{
		{"on time", keys, MonthlyClose, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "2026-11", 2, false},
		{"late", keys, MonthlyClose, time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC), "2026-11", 2, false},
		{"january closes december", keys, MonthlyClose, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "2026-12", 2, false},
		{"stale", keys, StaleReservations, time.Date(2026, 12, 1, 0, 5, 0, 0, time.UTC), "2026-11", 2, false},
		{"unknown task", keys, "nope", time.Now(), "", 0, true},
		{"store down", fakeKeys{err: errors.New("down")}, MonthlyClose, time.Now(), "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Run(context.Background(), tt.keys, tt.task, tt.at, slog.New(slog.DiscardHandler))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (rep.Period != tt.period || rep.Keys != tt.n) {
				t.Fatalf("report = %+v", rep)
			}
		})
	}
}

func TestRunTwiceSameResult(t *testing.T) {
	keys := fakeKeys{keys: []*apikey.Key{{ID: "a"}}}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a, _ := Run(context.Background(), keys, MonthlyClose, at, slog.New(slog.DiscardHandler))
	b, _ := Run(context.Background(), keys, MonthlyClose, at, slog.New(slog.DiscardHandler))
	if a != b {
		t.Fatalf("%+v != %+v", a, b)
	}
}
