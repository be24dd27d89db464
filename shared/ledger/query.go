package ledger

import (
	"errors"
	"time"

	"github.com/stipend/stipend/shared/money"
)

// What a store reads back from the ledger: counters' settled figures, daily
// and per-custom-id aggregates, and queries over events.

// Totals are the settled figures of a spend counter (a key's lifetime, a
// month, ...). Committed also includes reservations not yet settled.
type Totals struct {
	Cost             money.Nanos
	Committed        money.Nanos
	Requests         int64
	Successes        int64
	PromptTokens     int64
	CachedTokens     int64
	CompletionTokens int64
	LatencyMs        int64 // sum over requests
}

// Add adds every figure of d to t.
func (t *Totals) Add(d Totals) {
	t.Cost += d.Cost
	t.Committed += d.Committed
	t.Requests += d.Requests
	t.Successes += d.Successes
	t.PromptTokens += d.PromptTokens
	t.CachedTokens += d.CachedTokens
	t.CompletionTokens += d.CompletionTokens
	t.LatencyMs += d.LatencyMs
}

// DailyAggregate is what one key's settled events of one model added up to
// on one UTC day. Totals.Committed is always 0.
type DailyAggregate struct {
	KeyID string
	Day   int64 // unix seconds of the day's 00:00 UTC
	Model string
	Totals
}

// CustomIDTotals is what a key's events with one custom id added up to.
type CustomIDTotals struct {
	CustomID string
	Requests int64
	Cost     money.Nanos
	LastSeen int64 // unix ms
}

// Limits of an event listing (EventQuery.Limit).
const (
	DefaultEventLimit = 50
	MaxEventLimit     = 500
)

// Errors of an event listing, for errors.Is: both are the caller's mistake (400).
var (
	ErrBadCursor    = errors.New("invalid cursor")
	ErrInvalidQuery = errors.New("invalid event query")
)

// EventQuery selects events for a store's ListEvents. At least one of KeyID, UserID
// and CustomID is set, or All; when several are set, events must match
// them all (one picks the partition read, the others filter it).
type EventQuery struct {
	KeyID, UserID, CustomID string
	All                     bool
	// Start and End bound the events' creation time, [Start, End); a zero
	// Start is the epoch and a zero End is unbounded.
	Start, End time.Time
	// Limit is the page size: 0 means DefaultEventLimit, and it is at
	// most MaxEventLimit.
	Limit int
	// Cursor continues a listing: the next cursor ListEvents returned for
	// the same query.
	Cursor string
	// OmitBodies leaves the request and response bodies out.
	OmitBodies bool
	// BodyBudget bounds the bytes of bodies one page carries (0: no
	// bound): the page ends early, with a cursor, rather than exceed it,
	// though it always holds at least one event. A buffered Lambda
	// response is at most 6 MB.
	BodyBudget int
}
