package rollover

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/user"
)

// fakeStore keeps statements and reservations in maps.
type fakeStore struct {
	mu          sync.Mutex
	keys        []*apikey.Key
	users       []*user.User
	months      map[string]ledger.Statement // owner -> figures of the closed month
	statements  map[string]ledger.Statement // owner/month -> statement
	open        map[string]*budget.Reservation
	settled     []string
	failList    bool
	foldedAfter []int // per Fold call, the settles before it
}

func (f *fakeStore) ListKeys(context.Context) ([]*apikey.Key, error) {
	if f.failList {
		return nil, errors.New("down")
	}
	return f.keys, nil
}
func (f *fakeStore) ListUsers(context.Context) ([]*user.User, error) { return f.users, nil }
func (f *fakeStore) MonthStatement(_ context.Context, o budget.Owner, t time.Time) (ledger.Statement, error) {
	owner := map[budget.OwnerKind]string{budget.OwnerKey: "KEY#", budget.OwnerUser: "USER#"}[o.Kind] + o.ID // as dynamo names it
	s := f.months[owner]
	s.Owner, s.Month = owner, t.Format("2006-01")
	return s, nil
}
func (f *fakeStore) PutStatement(_ context.Context, s ledger.Statement) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statements[s.Owner+"/"+s.Month] = s
	return nil
}
func (f *fakeStore) StaleReservations(_ context.Context, now time.Time) ([]*budget.Reservation, error) {
	var out []*budget.Reservation
	for _, r := range f.open {
		if r.Deadline.Before(now) {
			out = append(out, r)
		}
	}
	return out, nil
}
func (f *fakeStore) SettleStale(_ context.Context, r *budget.Reservation) error {
	if _, ok := f.open[r.ID]; !ok {
		return budget.ErrSettled
	}
	delete(f.open, r.ID)
	f.settled = append(f.settled, r.ID)
	return nil
}

// Fold records that it ran, and after how many stale reservations were settled.
func (f *fakeStore) Fold(_ context.Context, now time.Time) (int, error) {
	f.foldedAfter = append(f.foldedAfter, len(f.settled))
	return len(f.open), nil
}

func newFake() *fakeStore {
	dec := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	return &fakeStore{
		keys:       []*apikey.Key{{ID: "a", CreatedAt: 1}, {ID: "b", CreatedAt: 1}, {ID: "new", CreatedAt: dec.Add(time.Hour).Unix()}},
		users:      []*user.User{{UserID: "alice", CreatedAt: 1}},
		months:     map[string]ledger.Statement{"KEY#a": {Cost: 3 * money.Cent, Requests: 4}},
		statements: map[string]ledger.Statement{},
		open: map[string]*budget.Reservation{
			"dead":  {ID: "dead", Deadline: dec.Add(-time.Minute)},
			"alive": {ID: "alive", Deadline: dec.Add(time.Hour)},
		},
	}
}

func TestRun(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name       string
		task       Task
		at         time.Time
		period     string
		statements int
		settled    int
		err        bool
	}{
		{"on time", MonthlyClose, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "2026-11", 3, 1, false},
		{"late", MonthlyClose, time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC), "2026-11", 3, 2, false},
		{"stale only", StaleReservations, time.Date(2026, 12, 1, 0, 5, 0, 0, time.UTC), "", 0, 1, false},
		{"unknown task", "nope", time.Now(), "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			rep, err := Run(context.Background(), f, tt.task, tt.at, log)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (rep.Period != tt.period || rep.Statements != tt.statements || rep.Settled != tt.settled) {
				t.Fatalf("report = %+v", rep)
			}
			// Every run folds once, after the sweep.
			if err == nil && (len(f.foldedAfter) != 1 || f.foldedAfter[0] != tt.settled || rep.Folded != len(f.open)) {
				t.Fatalf("folds after %v settles, report %+v", f.foldedAfter, rep)
			}
		})
	}
}

func TestRunTwiceChangesNothing(t *testing.T) {
	f := newFake()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	log := slog.New(slog.DiscardHandler)
	if _, err := Run(context.Background(), f, MonthlyClose, at, log); err != nil {
		t.Fatal(err)
	}
	first := map[string]ledger.Statement{}
	for k, v := range f.statements {
		first[k] = v
	}
	rep, err := Run(context.Background(), f, MonthlyClose, at, log)
	if err != nil || rep.Settled != 0 {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
	if !reflect.DeepEqual(first, f.statements) || len(f.settled) != 1 {
		t.Fatalf("second run changed state: %v vs %v, settled %v", first, f.statements, f.settled)
	}
	if s := f.statements["KEY#a/2026-11"]; s.Cost != 3*money.Cent || s.Requests != 4 || s.ClosedAt != at.Unix() {
		t.Fatalf("statement = %+v", s)
	}
	if _, ok := f.statements["KEY#new/2026-11"]; ok {
		t.Fatal("a key created in December got a November statement")
	}
}

func TestStoreDown(t *testing.T) {
	f := newFake()
	f.failList = true
	if _, err := Run(context.Background(), f, MonthlyClose, time.Now(), slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("no error")
	}
}
