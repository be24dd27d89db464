// Package rollover is the scheduled reset's work: closing a month's spend
// for every key and settling what invocations left behind.
//
// For now it reports what it would roll over; the period counters and
// reservations it will close come with the limits work. It only reads, so
// running it twice for the same event time changes nothing.
package rollover

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/stipend/stipend/shared/apikey"
)

// Keys lists every proxy key.
type Keys interface {
	ListKeys(ctx context.Context) ([]*apikey.Key, error)
}

// Task names what a scheduled event asks for.
type Task string

// Tasks the reset function runs.
const (
	MonthlyClose      Task = "monthly"
	StaleReservations Task = "stale"
)

// Report is what one run did.
type Report struct {
	Task   Task
	Period string // the month closed, e.g. "2026-11"
	Keys   int
}

// Run performs task for the schedule time at. The month closed by a monthly
// run is the calendar month (UTC) before at, so a late or repeated run closes
// the same month.
func Run(ctx context.Context, keys Keys, task Task, at time.Time, log *slog.Logger) (Report, error) {
	at = at.UTC()
	closed := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	rep := Report{Task: task, Period: closed.Format("2006-01")}
	switch task {
	case MonthlyClose, StaleReservations:
	default:
		return rep, fmt.Errorf("unknown task %q", task)
	}
	list, err := keys.ListKeys(ctx)
	if err != nil {
		return rep, fmt.Errorf("list keys: %w", err)
	}
	rep.Keys = len(list)
	for _, k := range list {
		log.LogAttrs(ctx, slog.LevelInfo, "would roll over", slog.String("task", string(task)),
			slog.String("period", rep.Period), slog.String("key", k.ID), slog.Bool("revoked", k.Revoked))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "rollover done", slog.String("task", string(task)),
		slog.String("period", rep.Period), slog.Int("keys", rep.Keys))
	return rep, nil
}
