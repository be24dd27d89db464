package dynamo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// Counter items (pk = charge owner, sk = counter name) hold:
//
//	v        the committed amount: settled plus outstanding reservations
//	costNanos, requests, successes, promptTokens, cachedTokens,
//	completionTokens, latencyMs   settled figures (spend counters only)
//	expiresAt  window counters expire a day after their window
//
// Reservation items (pk = RES#<id>, sk = RES; gsi1 RES / <deadline ms>#<id>)
// remember what a request reserved until it settles. A settle deletes it; a
// release (a request never forwarded) replaces it with a tombstone: the
// same key without gsi1 attributes, expiring a day after the reservation's
// deadline. The reserve's put is conditional on the key not existing, so a
// reserve transaction that reaches DynamoDB after its request was released
// (a timed-out attempt landing late) is cancelled whole: it charges nothing.

const (
	skReservation  = "RES"
	gsiReservation = "RES"
	attrCommitted  = "v"
)

// checkKey maps a version check to the configuration item it guards.
func checkKey(c budget.Check) (pk, sk string) {
	switch c.Kind {
	case budget.CheckKey:
		return keyPK(c.ID), skKey
	case budget.CheckUser:
		return userPK(c.ID), skUser
	default:
		return pkOrg, skOrg
	}
}

// Reserve applies r atomically: every version check holds and every charge
// fits under its limit, and then all amounts are added and r is stored, or
// nothing changes. A *LimitError names the first charge that did not fit.
// Transactions that collide with concurrent ones are retried with jitter.
// Deferred charges are not written: Settle counts them.
//
// Any other error leaves the outcome unknown (a timeout may be followed by
// the transaction landing): the caller must then Abandon r.
func (s *Store) Reserve(ctx context.Context, r *budget.Reservation) error {
	for _, c := range r.Charges {
		if !c.Fits() {
			return &budget.LimitError{Charge: c}
		}
	}
	resItem, err := reservationItem(r)
	if err != nil {
		return err
	}
	items := make([]types.TransactWriteItem, 0, len(r.Checks)+len(r.Charges)+1)
	var charged []budget.Charge // the charges written, in order
	for _, c := range r.Checks {
		pk, sk := checkKey(c)
		cc := &types.ConditionCheck{TableName: aws.String(s.table), Key: key(pk, sk)}
		if c.Version == 0 {
			cc.ConditionExpression = aws.String("attribute_not_exists(pk)")
		} else {
			cc.ConditionExpression = aws.String("version = :v")
			cc.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(c.Version)}
		}
		items = append(items, types.TransactWriteItem{ConditionCheck: cc})
	}
	for _, c := range r.Charges {
		if c.Deferred {
			continue
		}
		charged = append(charged, c)
		u := &types.Update{
			TableName:                 aws.String(s.table),
			Key:                       key(counterKey(c.Owner, c.Counter)),
			UpdateExpression:          aws.String("ADD v :a"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":a": num(c.Amount)},
		}
		if c.Limit > 0 {
			// Conditions cannot add, so the headroom is computed here.
			u.ConditionExpression = aws.String("attribute_not_exists(v) OR v <= :max")
			u.ExpressionAttributeValues[":max"] = num(c.Limit - c.Amount)
		}
		if exp := counterExpiry(c); exp > 0 {
			u.UpdateExpression = aws.String("ADD v :a SET expiresAt = :e")
			u.ExpressionAttributeValues[":e"] = num(exp)
		}
		items = append(items, types.TransactWriteItem{Update: u})
	}
	items = append(items, types.TransactWriteItem{Put: &types.Put{
		TableName: aws.String(s.table), Item: resItem, ConditionExpression: aws.String("attribute_not_exists(pk)"),
	}})
	err = s.transact(ctx, items, "reserve "+r.ID)
	var tc *types.TransactionCanceledException
	if errors.As(err, &tc) {
		for i, reason := range tc.CancellationReasons {
			if aws.ToString(reason.Code) != "ConditionalCheckFailed" {
				continue
			}
			switch {
			case i < len(r.Checks):
				return fmt.Errorf("reserve %s: %w", r.ID, budget.ErrStale)
			case i < len(r.Checks)+len(charged):
				return &budget.LimitError{Charge: charged[i-len(r.Checks)]}
			}
		}
	}
	return err
}

// counterExpiry lets window counters shorter than a month expire a day after
// their window; lifetime and monthly counters stay (they feed statements).
func counterExpiry(c budget.Charge) int64 {
	if c.Resets.IsZero() || c.Kind == budget.Spend && c.Unit == budget.Month {
		return 0
	}
	return c.Resets.Add(24 * time.Hour).Unix()
}

// transact runs a write transaction, retrying cancellations caused only by
// conflicts with concurrent transactions on the same items.
func (s *Store) transact(ctx context.Context, items []types.TransactWriteItem, what string) error {
	in := &dynamodb.TransactWriteItemsInput{TransactItems: items, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal}
	backoff := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		out, err := s.db.TransactWriteItems(ctx, in)
		s.account(1, out)
		if err == nil {
			return nil
		}
		var tc *types.TransactionCanceledException
		if !errors.As(err, &tc) || !onlyConflicts(tc) || attempt >= 30 {
			if permanent(err) {
				return fmt.Errorf("%s: %w: %w", what, budget.ErrRejected, err)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		sleep := backoff/2 + rand.N(backoff)
		backoff = min(backoff*2, 200*time.Millisecond)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(sleep):
		}
	}
}

// permanent reports an error no retry can cure: DynamoDB refused the
// request itself (malformed, an item too large), as opposed to a timeout, a
// throttle, a server error or a conflict. Conditional check failures are
// the callers' to interpret and are not permanent here.
func permanent(err error) bool {
	var tc *types.TransactionCanceledException
	if errors.As(err, &tc) {
		for _, r := range tc.CancellationReasons {
			switch aws.ToString(r.Code) {
			case "ValidationError", "ItemCollectionSizeLimitExceeded":
				return true
			}
		}
		return false
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorFault() != smithy.FaultClient {
		return false
	}
	switch ae.ErrorCode() {
	case "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
		"TransactionInProgressException", "LimitExceededException", "ConditionalCheckFailedException":
		return false
	}
	return true
}

func onlyConflicts(tc *types.TransactionCanceledException) bool {
	conflict := false
	for _, r := range tc.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "TransactionConflict":
			conflict = true
		case "None", "":
		default:
			return false
		}
	}
	return conflict
}

func encodeReservation(r *budget.Reservation) ([]byte, error) {
	st := storedReservation{ID: r.ID, KeyID: r.KeyID, Cost: r.Cost, Usage: r.Usage, Deadline: r.Deadline, Event: r.Event}
	for _, c := range r.Charges {
		if c.Deferred {
			pk, sk := counterKey(c.Owner, c.Counter)
			st.Deferred = append(st.Deferred, pk+" "+sk)
		} else {
			st.Charges = append(st.Charges, storeCharge(c))
		}
	}
	return json.Marshal(st)
}

func decodeReservation(data string) (*budget.Reservation, error) {
	var st storedReservation
	if err := json.Unmarshal([]byte(data), &st); err != nil {
		return nil, err
	}
	r := &budget.Reservation{ID: st.ID, KeyID: st.KeyID, Cost: st.Cost, Usage: st.Usage, Deadline: st.Deadline, Event: st.Event}
	for _, sc := range st.Charges {
		c, err := loadCharge(sc)
		if err != nil {
			return nil, err
		}
		r.Charges = append(r.Charges, c)
	}
	for _, d := range st.Deferred {
		owner, name, ok := strings.Cut(d, " ")
		if !ok {
			return nil, fmt.Errorf("deferred charge %q", d)
		}
		c, err := loadCharge(storedCharge{Owner: owner, Name: name, Kind: budget.Spend, Amount: int64(r.Cost), Deferred: true})
		if err != nil {
			return nil, err
		}
		r.Charges = append(r.Charges, c)
	}
	return r, nil
}

func reservationItem(r *budget.Reservation) (map[string]types.AttributeValue, error) {
	b, err := encodeReservation(r)
	if err != nil {
		return nil, fmt.Errorf("encode reservation %s: %w", r.ID, err)
	}
	item := key("RES#"+r.ID, skReservation)
	item[attrGSI1PK] = str(gsiReservation)
	item[attrGSI1SK] = str(fmt.Sprintf("%013d#%s", r.Deadline.UnixMilli(), r.ID))
	item["data"] = str(string(b))
	return item, nil
}

// Settle ends r with the request's actual usage: each spend and token
// counter moves from the reserved amount to the actual one, the settled
// figures grow, ev is stored and r is deleted — atomically, and only once:
// ErrSettled if r was already settled (for example by the stale sweep).
// Actual cost above the reservation is recorded as it is (never hidden).
func (s *Store) Settle(ctx context.Context, r *budget.Reservation, ev *ledger.Event) error {
	items, err := s.settleItems(r, ev)
	if err != nil {
		return err
	}
	return s.finish(ctx, r, items, "settle")
}

// Release undoes r for a request that was never forwarded: spend and token
// amounts are given back, the request still counts against rate limits, no
// event is stored, and r's item becomes a tombstone, so a late copy of r's
// reserve can never land. ErrSettled when r was already released or settled
// (a retry whose earlier attempt committed).
func (s *Store) Release(ctx context.Context, r *budget.Reservation) error {
	items, err := s.settleItems(r, nil)
	if err != nil {
		return err
	}
	return s.finish(ctx, r, items, "release")
}

// Abandon ends r after a Reserve whose outcome is unknown (it timed out, so
// its transaction may have committed, may still commit later, or never
// will), for a request answered 503 and never forwarded. It first puts r's
// tombstone on the condition that r's key is free: when that succeeds, no
// reserve of r has landed and none ever will (its put requires the key to
// be free), so nothing was charged. When the key is taken, either the
// reserve landed — then Release gives every amount back and leaves the
// tombstone — or an earlier Abandon already did all this (Release then finds
// no reservation: ErrSettled, which Abandon reports as done). Abandon is
// idempotent: call it until it returns nil or a permanent error.
func (s *Store) Abandon(ctx context.Context, r *budget.Reservation) error {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table), Item: tombstone(r), ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	var cf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &cf):
		if permanent(err) {
			return fmt.Errorf("abandon %s: %w: %w", r.ID, budget.ErrRejected, err)
		}
		return fmt.Errorf("abandon %s: %w", r.ID, err)
	}
	if err := s.Release(ctx, r); err != nil && !errors.Is(err, budget.ErrSettled) {
		return fmt.Errorf("abandon %s: %w", r.ID, err)
	}
	return nil
}

// tombstone is the item that replaces a released reservation: its key,
// without gsi1 attributes (the stale sweep never sees it), expiring a day
// after the reservation's deadline, when no copy of its reserve can land.
func tombstone(r *budget.Reservation) map[string]types.AttributeValue {
	item := key("RES#"+r.ID, skReservation)
	item["released"] = &types.AttributeValueMemberBOOL{Value: true}
	item[attrExpires] = num(r.Deadline.Add(24 * time.Hour).Unix())
	return item
}

func (s *Store) finish(ctx context.Context, r *budget.Reservation, items []types.TransactWriteItem, what string) error {
	err := s.transact(ctx, items, what+" "+r.ID)
	var tc *types.TransactionCanceledException
	if errors.As(err, &tc) && len(tc.CancellationReasons) > 0 && aws.ToString(tc.CancellationReasons[0].Code) == "ConditionalCheckFailed" {
		return fmt.Errorf("%s %s: %w", what, r.ID, budget.ErrSettled)
	}
	return err
}

// settleItems returns the writes of one settle transaction: the
// reservation's delete (or, for a release, its replacement by a tombstone),
// each counter's move from reserved to actual (a deferred counter: by the
// whole actual cost) and, when ev is not nil, the event and its reporting
// aggregates (at most 2 items more than before: the key's day-and-model item
// and, with a custom id, its custom-id item). The first write is conditional
// on the reservation (not a tombstone) existing, so r ends exactly once.
func (s *Store) settleItems(r *budget.Reservation, ev *ledger.Event) ([]types.TransactWriteItem, error) {
	const pending = "attribute_exists(" + attrGSI1PK + ")" // a reservation, not a tombstone
	first := types.TransactWriteItem{Delete: &types.Delete{
		TableName: aws.String(s.table), Key: key("RES#"+r.ID, skReservation), ConditionExpression: aws.String(pending),
	}}
	if ev == nil {
		first = types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table), Item: tombstone(r), ConditionExpression: aws.String(pending),
		}}
	}
	items := []types.TransactWriteItem{first}
	var cost, tokens int64
	var u ledger.Usage
	if ev != nil {
		cost, u = int64(ev.Cost), ev.Usage
		tokens = u.Total()
	}
	for _, c := range r.Charges {
		vals := map[string]types.AttributeValue{}
		var expr string
		switch c.Kind {
		case budget.Spend:
			if c.Deferred && ev == nil {
				continue // never reserved, nothing to give back
			}
			vals[":d"] = num(cost - c.Reserved())
			expr = "ADD v :d"
			if ev != nil {
				success := int64(0)
				if ev.Success() {
					success = 1
				}
				expr += ", costNanos :c, requests :one, successes :s, promptTokens :p, cachedTokens :ct, completionTokens :o, latencyMs :l"
				vals[":c"], vals[":one"], vals[":s"] = num(cost), num(1), num(success)
				vals[":p"], vals[":ct"], vals[":o"], vals[":l"] = num(u.PromptTokens), num(u.CachedTokens), num(u.CompletionTokens), num(ev.LatencyMs)
			}
		case budget.Tokens:
			vals[":d"] = num(tokens - c.Reserved())
			expr = "ADD v :d"
		default:
			continue // a request stays counted
		}
		items = append(items, types.TransactWriteItem{Update: &types.Update{
			TableName: aws.String(s.table), Key: key(counterKey(c.Owner, c.Counter)),
			UpdateExpression: aws.String(expr), ExpressionAttributeValues: vals,
		}})
	}
	if ev != nil {
		evItem, err := eventItem(ev, s.retention)
		if err != nil {
			return nil, err
		}
		items = append(items, types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table), Item: evItem, ConditionExpression: aws.String("attribute_not_exists(pk)"),
		}})
		// The reporting aggregates (reports.go) grow in the same
		// transaction, so they always equal the sum of the stored events.
		items = append(items, s.aggregateItems(ev)...)
	}
	return items, nil
}

// StaleReservations returns reservations whose deadline is before now: their
// invocation died before it could settle them.
func (s *Store) StaleReservations(ctx context.Context, now time.Time) ([]*budget.Reservation, error) {
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:              aws.String(s.table),
		IndexName:              aws.String(indexGSI1),
		KeyConditionExpression: aws.String("gsi1pk = :pk AND gsi1sk < :now"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(gsiReservation), ":now": str(fmt.Sprintf("%013d", now.UnixMilli())),
		},
	})
	var list []*budget.Reservation
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("query stale reservations: %w", err)
		}
		for _, item := range page.Items {
			r, err := decodeReservation(getS(item, "data"))
			if err != nil {
				return nil, fmt.Errorf("decode reservation %s: %w", getS(item, attrPK), err)
			}
			list = append(list, r)
		}
	}
	return list, nil
}

// SettleStale settles r at its reserved worst case — the true usage is
// unknown and the provider may have billed it — with its event marked
// incomplete. ErrSettled when someone settled it first.
func (s *Store) SettleStale(ctx context.Context, r *budget.Reservation) error {
	ev := r.Event
	ev.Usage, ev.Cost = r.Usage, r.Cost
	ev.Incomplete, ev.Estimated = true, true
	ev.ErrorCode = "reservation_expired"
	return s.Settle(ctx, r, &ev)
}

// Counters returns the committed value of each charge's counter (0 for
// counters not yet written), read strongly consistently in one round trip.
func (s *Store) Counters(ctx context.Context, charges []budget.Charge) ([]int64, error) {
	out := make([]int64, len(charges))
	if len(charges) == 0 {
		return out, nil
	}
	keys := make([]map[string]types.AttributeValue, 0, len(charges))
	seen := map[string]bool{}
	for _, c := range charges {
		pk, sk := counterKey(c.Owner, c.Counter)
		if id := pk + "\x00" + sk; !seen[id] {
			seen[id] = true
			keys = append(keys, key(pk, sk))
		}
	}
	values := map[string]int64{}
	req := map[string]types.KeysAndAttributes{s.table: {Keys: keys, ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String("pk, sk, v")}}
	for attempt := 0; len(req) > 0; attempt++ {
		res, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal})
		if err != nil {
			return nil, fmt.Errorf("read counters: %w", err)
		}
		s.accountBatch(res)
		for _, item := range res.Responses[s.table] {
			values[getS(item, attrPK)+"\x00"+getS(item, attrSK)] = getN(item, attrCommitted)
		}
		req = res.UnprocessedKeys
		if attempt > 5 {
			return nil, errors.New("read counters: unprocessed keys remain")
		}
	}
	for i, c := range charges {
		pk, sk := counterKey(c.Owner, c.Counter)
		out[i] = values[pk+"\x00"+sk]
	}
	return out, nil
}

// CounterTotals returns the settled figures of one of owner's counters.
func (s *Store) CounterTotals(ctx context.Context, owner budget.Owner, c budget.Counter) (ledger.Totals, error) {
	return s.OwnerTotals(ctx, ownerPK(owner), counterSK(c))
}

// OwnerTotals returns the settled figures of one counter by its stored
// names, e.g. a key's month: KEY#<id> / SPEND#mo#<yyyymm> (counters.go).
func (s *Store) OwnerTotals(ctx context.Context, owner, counter string) (ledger.Totals, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), Key: key(owner, counter), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return ledger.Totals{}, fmt.Errorf("get %s %s: %w", owner, counter, err)
	}
	return totalsOf(out.Item), nil
}

func totalsOf(it map[string]types.AttributeValue) ledger.Totals {
	return ledger.Totals{
		Cost:             money.Nanos(getN(it, "costNanos")),
		Committed:        money.Nanos(getN(it, attrCommitted)),
		Requests:         getN(it, "requests"),
		Successes:        getN(it, "successes"),
		PromptTokens:     getN(it, "promptTokens"),
		CachedTokens:     getN(it, "cachedTokens"),
		CompletionTokens: getN(it, "completionTokens"),
		LatencyMs:        getN(it, "latencyMs"),
	}
}

// ---- consumed capacity, for benchmarks ----

// Stats are the DynamoDB calls a Store made and the capacity units they consumed.
type Stats struct {
	Calls    int64
	Capacity float64
}

func (s *Store) account(calls int64, out *dynamodb.TransactWriteItemsOutput) {
	var units float64
	if out != nil {
		for _, c := range out.ConsumedCapacity {
			units += aws.ToFloat64(c.CapacityUnits)
		}
	}
	s.addStats(calls, units)
}

func (s *Store) accountBatch(out *dynamodb.BatchGetItemOutput) {
	var units float64
	for _, c := range out.ConsumedCapacity {
		units += aws.ToFloat64(c.CapacityUnits)
	}
	s.addStats(1, units)
}

func (s *Store) addStats(calls int64, units float64) {
	s.statsMu.Lock()
	s.stats.Calls += calls
	s.stats.Capacity += units
	s.statsMu.Unlock()
}

// Stats returns the calls and capacity counted so far.
func (s *Store) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}
