package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// opStat is what one DynamoDB operation cost over some calls: how many
// calls, how many of them reported consumed capacity, the capacity units
// they reported, and the time they took (the client's retries included).
type opStat struct {
	calls, reported int64
	units           float64
	elapsed         time.Duration
}

// opStats are opStat by operation name ("TransactWriteItems", ...).
type opStats map[string]opStat

// minus returns s - before, leaving out operations with no calls in between.
func (s opStats) minus(before opStats) opStats {
	out := opStats{}
	for op, a := range s {
		b := before[op]
		if d := (opStat{a.calls - b.calls, a.reported - b.reported, a.units - b.units, a.elapsed - b.elapsed}); d.calls != 0 {
			out[op] = d
		}
	}
	return out
}

// add folds d into s.
func (s opStats) add(d opStats) {
	for op, v := range d {
		a := s[op]
		s[op] = opStat{a.calls + v.calls, a.reported + v.reported, a.units + v.units, a.elapsed + v.elapsed}
	}
}

// total sums every operation.
func (s opStats) total() opStat {
	var t opStat
	for _, v := range s {
		t.calls += v.calls
		t.reported += v.reported
		t.units += v.units
		t.elapsed += v.elapsed
	}
	return t
}

// perRequest describes s over n requests, one operation a line, by name:
// calls per request, capacity units per request ("n/a CU" when none of the
// calls reported any) and mean time per call. "none" when there were no
// calls.
func (s opStats) perRequest(n int) []string {
	if len(s) == 0 || n <= 0 {
		return []string{"none"}
	}
	var lines []string
	for _, op := range slices.Sorted(maps.Keys(s)) {
		v := s[op]
		cu := "n/a CU"
		if v.reported > 0 {
			cu = fmt.Sprintf("%.2f CU", v.units/float64(n))
		}
		lines = append(lines, fmt.Sprintf("%s %.2f (%s, %.2f ms/call)", op, float64(v.calls)/float64(n), cu,
			float64(v.elapsed)/float64(v.calls)/1e6))
	}
	return lines
}

// opCounter counts every DynamoDB call a client makes, by operation, with
// the capacity it consumed: it asks each call for ReturnConsumedCapacity
// TOTAL where the caller did not, so the reads the Store does not count
// (provider, user and organisation settings) are measured too.
type opCounter struct {
	mu    sync.Mutex
	ops   opStats
	spans []callSpan // the latest maxSpans calls, in the order they ended
}

// callSpan is one call: its label (opLabel) and when it began and ended,
// in Unix nanoseconds.
type callSpan struct {
	op         string
	start, end int64
}

// maxSpans bounds the calls an opCounter remembers the times of.
const maxSpans = 1 << 16

func newOpCounter() *opCounter { return &opCounter{ops: opStats{}} }

// roundTrips counts the calls that began in [from, to), but for those
// labelled one of skip, and the round trips they took: calls whose times
// overlap (run concurrently) are one round trip of latency, calls one
// after another are one each.
func (c *opCounter) roundTrips(from, to int64, skip ...string) (calls, trips int) {
	c.mu.Lock()
	var in []callSpan
	for _, s := range c.spans {
		if s.start >= from && s.start < to && !slices.Contains(skip, s.op) {
			in = append(in, s)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(in, func(a, b callSpan) int { return cmp.Compare(a.start, b.start) })
	var end int64
	for i, s := range in {
		if i == 0 || s.start >= end {
			trips++
		}
		end = max(end, s.end)
	}
	return len(in), trips
}

// snapshot returns a copy of the counts so far.
func (c *opCounter) snapshot() opStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ops)
}

// count is the counting middleware of a Store (dynamo.WithMiddleware).
func (c *opCounter) count(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
	askConsumedCapacity(in)
	start := time.Now()
	out, err := next(ctx)
	elapsed := time.Since(start)
	units, reported := consumedUnits(out)
	label := opLabel(op, in)
	c.mu.Lock()
	s := c.ops[label]
	s.calls++
	s.elapsed += elapsed
	if reported {
		s.reported++
		s.units += units
	}
	c.ops[label] = s
	if len(c.spans) == maxSpans {
		c.spans = append(c.spans[:0], c.spans[maxSpans/2:]...)
	}
	c.spans = append(c.spans, callSpan{label, start.UnixNano(), start.Add(elapsed).UnixNano()})
	c.mu.Unlock()
	return out, err
}

// opLabel names a call for the counts: the operation, and what it does,
// told by its shape as dynamo.Store builds them: a reservation's ledger
// update opens its entry (if_not_exists sets the sweep's index), a settle's
// or release's requires the entry open (begins_with); a settle first reads
// the entry alone (projection "#e") and stores the event (marked for the
// fold) alone or in a transaction that starts with its Put; a reservation with user or organisation checks
// is a transaction starting with those checks.
func opLabel(op string, params any) string {
	update := func(u *ddb.Update) string {
		switch {
		case u == nil:
			return ""
		case strings.Contains(aws.ToString(u.UpdateExpression), "if_not_exists("):
			return " (reserve)"
		case strings.Contains(aws.ToString(u.ConditionExpression), "begins_with("):
			return " (settle)"
		}
		return ""
	}
	switch in := params.(type) {
	case *ddb.UpdateItemInput:
		return op + update(&ddb.Update{UpdateExpression: in.UpdateExpression, ConditionExpression: in.ConditionExpression})
	case *ddb.PutItemInput:
		if _, ok := in.Item["fold"]; ok {
			return op + " (event)" // an event alone: nothing deferred, or counted by the settle
		}
	case *ddb.GetItemInput:
		if aws.ToString(in.ProjectionExpression) == "#e" {
			return op + " (settle: entry)"
		}
	case *ddb.TransactWriteItemsInput:
		if len(in.TransactItems) == 0 {
			return op
		}
		switch first := in.TransactItems[0]; {
		case first.ConditionCheck != nil:
			return op + " (reserve)"
		case first.Delete != nil:
			return op + " (settle)"
		case first.Put != nil:
			return op + " (event)"
		default:
			return op + update(first.Update)
		}
	}
	return op
}

// askConsumedCapacity sets ReturnConsumedCapacity TOTAL on the input of the
// operations the proxy uses, unless the caller chose a setting; it reports
// whether it knew the input's type.
func askConsumedCapacity(params any) bool {
	var f *ddb.ReturnConsumedCapacity
	switch in := params.(type) {
	case *ddb.GetItemInput:
		f = &in.ReturnConsumedCapacity
	case *ddb.PutItemInput:
		f = &in.ReturnConsumedCapacity
	case *ddb.UpdateItemInput:
		f = &in.ReturnConsumedCapacity
	case *ddb.DeleteItemInput:
		f = &in.ReturnConsumedCapacity
	case *ddb.QueryInput:
		f = &in.ReturnConsumedCapacity
	case *ddb.BatchGetItemInput:
		f = &in.ReturnConsumedCapacity
	case *ddb.TransactWriteItemsInput:
		f = &in.ReturnConsumedCapacity
	default:
		return false
	}
	if *f == "" {
		*f = ddb.ReturnConsumedCapacityTotal
	}
	return true
}

// consumedUnits sums the capacity units an operation's output reports;
// reported is false when it reports none (no ConsumedCapacity at all, or
// no output: the call failed).
func consumedUnits(result any) (units float64, reported bool) {
	var list []ddb.ConsumedCapacity
	switch out := result.(type) {
	case *ddb.GetItemOutput:
		if out != nil {
			list = one(out.ConsumedCapacity)
		}
	case *ddb.PutItemOutput:
		if out != nil {
			list = one(out.ConsumedCapacity)
		}
	case *ddb.UpdateItemOutput:
		if out != nil {
			list = one(out.ConsumedCapacity)
		}
	case *ddb.DeleteItemOutput:
		if out != nil {
			list = one(out.ConsumedCapacity)
		}
	case *ddb.QueryOutput:
		if out != nil {
			list = one(out.ConsumedCapacity)
		}
	case *ddb.BatchGetItemOutput:
		if out != nil {
			list = out.ConsumedCapacity
		}
	case *ddb.TransactWriteItemsOutput:
		if out != nil {
			list = out.ConsumedCapacity
		}
	}
	for _, c := range list {
		units += aws.ToFloat64(c.CapacityUnits)
	}
	return units, len(list) > 0
}

// one turns an optional ConsumedCapacity into a list.
func one(c *ddb.ConsumedCapacity) []ddb.ConsumedCapacity {
	if c == nil {
		return nil
	}
	return []ddb.ConsumedCapacity{*c}
}
