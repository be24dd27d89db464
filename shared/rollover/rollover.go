// Package rollover is the scheduled reset's work: closing a calendar month
// into statements, settling reservations that killed invocations left
// behind, and folding recent events into the reporting aggregates.
//
// Enforcement never depends on it: counters are named by their period, so a
// new month starts from zero whether this runs on time, late, twice or never.
// It is idempotent: running it twice for the same event time changes nothing
// the second time (statements are rewritten from the same figures, and a
// reservation is settled at most once).
package rollover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/user"
)

// Store is what the reset needs from storage.
type Store interface {
	ListKeys(ctx context.Context) ([]*apikey.Key, error)
	ListUsers(ctx context.Context) ([]*user.User, error)
	// MonthStatement builds owner's statement of the month of t.
	MonthStatement(ctx context.Context, owner budget.Owner, t time.Time) (ledger.Statement, error)
	PutStatement(ctx context.Context, st ledger.Statement) error
	StaleReservations(ctx context.Context, now time.Time) ([]*budget.Reservation, error)
	SettleStale(ctx context.Context, r *budget.Reservation) error
	// Fold moves the events of keys with recent traffic into their
	// reporting aggregates and returns how many keys it folded.
	Fold(ctx context.Context, now time.Time) (int, error)
}

// Task names what a scheduled event asks for.
type Task string

// Tasks the reset function runs.
const (
	// MonthlyClose settles stale reservations, then writes every key's and
	// user's statement for the month before the event time.
	MonthlyClose Task = "monthly"
	// StaleReservations only settles stale reservations (every few minutes).
	StaleReservations Task = "stale"
)

// Report is what one run did.
type Report struct {
	Task       Task   `json:"task"`
	Period     string `json:"period,omitempty"` // the month closed, e.g. "2026-11"
	Statements int    `json:"statements"`
	Settled    int    `json:"settled"` // stale reservations settled at their worst case
	Folded     int    `json:"folded"`  // keys whose events were folded into their aggregates
	Keys       int    `json:"keys"`
}

// Run performs task for the schedule time at. A monthly run closes the
// calendar month (UTC) before at, so a late or repeated run closes the same
// month.
func Run(ctx context.Context, st Store, task Task, at time.Time, log *slog.Logger) (Report, error) {
	at = at.UTC()
	rep := Report{Task: task}
	switch task {
	case MonthlyClose, StaleReservations:
	default:
		return rep, fmt.Errorf("unknown task %q", task)
	}
	n, err := sweep(ctx, st, at, log)
	rep.Settled = n
	if err != nil {
		return rep, err
	}
	// After the sweep, whose settles let the fold pass the stale ones.
	if rep.Folded, err = st.Fold(ctx, at); err != nil {
		return rep, fmt.Errorf("fold events: %w", err)
	}
	if task == MonthlyClose {
		closed := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
		rep.Period = closed.Format("2006-01")
		if err := closeMonth(ctx, st, closed, at, &rep); err != nil {
			return rep, err
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, "rollover done", slog.String("task", string(task)), slog.String("period", rep.Period),
		slog.Int("statements", rep.Statements), slog.Int("settled", rep.Settled), slog.Int("folded", rep.Folded))
	return rep, nil
}

// sweep settles every reservation whose deadline passed before at.
func sweep(ctx context.Context, st Store, at time.Time, log *slog.Logger) (int, error) {
	stale, err := st.StaleReservations(ctx, at)
	if err != nil {
		return 0, fmt.Errorf("list stale reservations: %w", err)
	}
	n := 0
	for _, r := range stale {
		err := st.SettleStale(ctx, r)
		switch {
		case errors.Is(err, budget.ErrSettled):
			continue // its invocation, or another run, settled it first
		case err != nil:
			return n, fmt.Errorf("settle stale reservation %s: %w", r.ID, err)
		}
		n++
		log.LogAttrs(ctx, slog.LevelWarn, "settled an abandoned reservation at its worst case",
			slog.String("reservation", r.ID), slog.String("key", r.KeyID), slog.Int64("costNanos", int64(r.Cost)))
	}
	return n, nil
}

// closeMonth writes the statement of every key and user for month.
func closeMonth(ctx context.Context, st Store, month, at time.Time, rep *Report) error {
	keys, err := st.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list keys: %w", err)
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	rep.Keys = len(keys)
	owners := make([]budget.Owner, 0, len(keys)+len(users))
	for _, k := range keys {
		if k.CreatedAt < month.AddDate(0, 1, 0).Unix() { // keys created later had no such month
			owners = append(owners, budget.KeyOwner(k.ID))
		}
	}
	for _, u := range users {
		if u.CreatedAt < month.AddDate(0, 1, 0).Unix() {
			owners = append(owners, budget.UserOwner(u.UserID))
		}
	}
	for _, owner := range owners {
		s, err := st.MonthStatement(ctx, owner, month)
		if err != nil {
			return fmt.Errorf("read month of %s %s: %w", owner.Kind, owner.ID, err)
		}
		s.ClosedAt = at.Unix()
		if err := st.PutStatement(ctx, s); err != nil {
			return err
		}
		rep.Statements++
	}
	return nil
}
