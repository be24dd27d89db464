package proxy

// Settling: ending a reservation after the response (or releasing one never
// forwarded), retried for as long as the invocation may run.

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
)

// settle ends the reservation with the event's actual usage, inside the
// invocation: the client's cancellation does not stop it, and it keeps
// trying for as long as the invocation may run (afterContext). An attempt
// that failed may have committed unseen; the next then finds the
// reservation gone (ErrSettled), which after a failed attempt means it
// committed: nobody else ends a reservation before its deadline, and the
// retries stop short of it.
func (h *Handler) settle(ctx context.Context, res *budget.Reservation, ev *ledger.Event) {
	ctx, cancel := h.afterContext(ctx, res)
	defer cancel()
	ev.ReservedCost = res.Cost
	if ev.Cost > res.Cost {
		// The provider billed more than the worst case: record the truth
		// and flag it so the gap is visible.
		ev.Overrun = true
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "cost above reservation", slog.String("event", ev.ID),
			slog.Int64("reservedNanos", int64(res.Cost)), slog.Int64("costNanos", int64(ev.Cost)))
	}
	retried, err := persist(ctx, func(ctx context.Context) error { return h.cfg.Limiter.Settle(ctx, res, ev) })
	switch {
	case err == nil:
	case retried && errors.Is(err, budget.ErrSettled):
		h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "reservation settled by an earlier attempt", slog.String("event", ev.ID))
	default:
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "reservation not settled",
			slog.String("event", ev.ID), slog.String("key", ev.KeyID), slog.String("model", ev.Model),
			slog.Int64("costNanos", int64(ev.Cost)), slog.String("cause", err.Error()))
	}
}

// release gives back a reservation for a request that was never forwarded,
// retrying as settle does.
func (h *Handler) release(ctx context.Context, res *budget.Reservation) {
	ctx, cancel := h.afterContext(ctx, res)
	defer cancel()
	retried, err := persist(ctx, func(ctx context.Context) error { return h.cfg.Limiter.Release(ctx, res) })
	if err != nil && !(retried && errors.Is(err, budget.ErrSettled)) {
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "reservation not released", slog.String("event", res.ID), slog.String("cause", err.Error()))
	}
}

// abandon ends the reservation of a request answered 503 because its
// reserve's outcome was unknown, after the client has that answer: whether
// the reserve landed, lands later or never, nothing of it is charged
// (Limiter.Abandon). It retries as settle does; only if the store stays
// unreachable for the whole invocation can a landed reserve be left to the
// stale sweep.
func (h *Handler) abandon(ctx context.Context, res *budget.Reservation) {
	ctx, cancel := h.afterContext(ctx, res)
	defer cancel()
	if _, err := persist(ctx, func(ctx context.Context) error { return h.cfg.Limiter.Abandon(ctx, res) }); err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "reservation not released", slog.String("event", res.ID), slog.String("cause", err.Error()))
	}
}

// afterContext is the context of the work after a response (settle,
// release): not cancelled by the client, and lasting until the request's
// deadline when it has one (in Lambda, the invocation's: as long as the
// invocation may run), else Config.RecordTimeout; in either case ending
// before res's deadline, after which the stale sweep owns res.
func (h *Handler) afterContext(ctx context.Context, res *budget.Reservation) (context.Context, context.CancelFunc) {
	end := time.Now().Add(h.cfg.RecordTimeout)
	if d, ok := ctx.Deadline(); ok {
		end = d
	}
	margin := min(sweepMargin, h.cfg.ReservationTTL/4)
	// res.Deadline is on the handler's clock (Config.Now); end on the wall clock.
	if sweep := time.Now().Add(res.Deadline.Sub(h.cfg.Now()) - margin); sweep.Before(end) {
		end = sweep
	}
	return context.WithDeadline(context.WithoutCancel(ctx), end)
}

// sweepMargin separates the last attempt to end a reservation from its
// deadline, when the stale sweep may settle it.
const sweepMargin = 30 * time.Second

// persist runs op until it succeeds, returns an error no retry changes
// (budget.ErrSettled, budget.ErrRejected), or ctx ends, backing off
// exponentially with jitter between attempts. retried reports whether an
// earlier attempt failed, and so may have committed unseen.
func persist(ctx context.Context, op func(context.Context) error) (retried bool, err error) {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err = op(ctx)
		if err == nil || errors.Is(err, budget.ErrSettled) || errors.Is(err, budget.ErrRejected) || ctx.Err() != nil {
			return attempt > 0, err
		}
		sleep := backoff/2 + rand.N(backoff)
		backoff = min(2*backoff, 2*time.Second)
		select {
		case <-ctx.Done():
			return true, err
		case <-time.After(sleep):
		}
	}
}
