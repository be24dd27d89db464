package dynamo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

// Counter items of users and the organisation (pk = charge owner, sk =
// counter name) hold:
//
//	v        the committed amount: settled plus outstanding reservations
//	costNanos, requests, successes, promptTokens, cachedTokens,
//	completionTokens, latencyMs   settled figures (spend counters only)
//	expiresAt  window counters expire a day after their window
//
// A key's counters and its open reservations are attributes of its ledger
// (keyledger.go).

const attrCommitted = "v"

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
//
// A reservation on the key's own counters only (no user or organisation
// limit: their spend is deferred) is one conditional UpdateItem on the
// key's ledger (keyledger.go); one that also reserves on a user's or the
// organisation's counters, or checks their versions, is a transaction of
// that same ledger update with those items, retried with jitter when it
// collides with concurrent ones. Deferred charges are not written: Settle
// counts them.
//
// Any other error leaves the outcome unknown (a timeout may be followed by
// the write landing): the caller must then Abandon r.
func (s *Store) Reserve(ctx context.Context, r *budget.Reservation) error {
	for _, c := range r.Charges {
		if !c.Fits() {
			return &budget.LimitError{Charge: c}
		}
	}
	p, err := splitReservation(r)
	if err != nil {
		return err
	}
	mode := onCounters
	var reclaimed []budget.Counter         // counters whose allowances this reserve took back
	var seen map[string]ddb.AttributeValue // the ledger as the last failed attempt found it
	if p.allowable() {
		mode = drawAllowance
	}
	for attempt := 0; ; attempt++ {
		if attempt >= 50 { // the modes below move on at most a few times
			return fmt.Errorf("reserve %s: %w", r.ID, errRace)
		}
		// The entry tells the settle whether allowances paid for the
		// organisation's charges (settleFunded). Not a grant of just the
		// amount: after a reclaim it is how keys that held nothing then
		// reserve, and a release to their allowance would be one the
		// reclaim never saw.
		r.Funded = 0
		if mode == drawAllowance || mode == grantSlice {
			r.Funded = p.orgVersion()
		}
		entry, err := encodeEntry(r, p)
		if err != nil {
			return err
		}
		e := p.reserveExpression(r, entry)
		var failed bool
		var old map[string]ddb.AttributeValue
		switch {
		case p.single():
			failed, old, err = s.updateLedger(ctx, p.keyID, e, "reserve "+r.ID)
		case mode == drawAllowance:
			failed, old, err = s.updateLedger(ctx, p.keyID, p.drawExpression(e), "reserve "+r.ID)
			if err == nil && failed && p.allowanceShort(old) && errors.Is(p.refusal(r, old), errRace) {
				if p.hasLeftovers(old) {
					// Granted under other settings: back to the pool first.
					a := &allowances{holders: []string{p.keyID}}
					for _, c := range p.others {
						a.counters = append(a.counters, counterRead{c: c.Counter})
					}
					if err := s.reclaimHolders(ctx, a, revokedMark); err != nil {
						return fmt.Errorf("reserve %s: %w", r.ID, err)
					}
					continue
				}
				mode, seen = grantSlice, old // the allowance is short: grant one
				continue
			}
		default:
			grants := p.grants(mode, seen, s.slice())
			if grants != nil {
				e = p.grantExpression(e, grants, seen)
			}
			failed, old, err = s.reserveTransaction(ctx, r, p, e, grants)
			if err == nil && failed && errors.Is(p.refusal(r, old), errRace) {
				// The key's allowances moved (its other requests drew or
				// were granted): plan again from what the ledger holds.
				seen = old
				if !p.allowanceShort(old) {
					mode = drawAllowance
				}
				continue
			}
			var le *budget.LimitError
			switch {
			case errors.Is(err, errCapped):
				mode = onCounters
				continue
			case !errors.As(err, &le):
			case mode == grantSlice:
				mode = grantExact // the slice does not fit: just the amount
				continue
			case errors.Is(err, errReclaimed) || slices.Contains(reclaimed, le.Charge.Counter) || !orgSpend(le.Charge):
				return le // no allowance of it is held: exact
			default:
				// Before a refusal every key's allowance of the counter
				// that refused comes back into the pool (this key's too,
				// when it reserves on the counter items: a user limit, a
				// provider ceiling, past the holders' cap).
				if err := s.reclaim(ctx, []budget.Counter{le.Charge.Counter}, p.orgVersion()); err != nil {
					return fmt.Errorf("reserve %s: %w", r.ID, err)
				}
				reclaimed = append(reclaimed, le.Charge.Counter)
				continue
			}
		}
		if err != nil || !failed {
			return err
		}
		seen = old
		switch err := p.refusal(r, old); {
		case errors.Is(err, errLanded):
			// An earlier attempt of this very reserve was stored: its
			// entry says whether allowances paid.
			r.Funded = 0
			if landed, err := decodeEntry(p.keyID, r.ID, getS(old, entryAttr(r.ID))); err == nil {
				r.Funded = landed.Funded
			}
			return nil
		case errors.Is(err, errUnseeded) && attempt < 3:
			if err := s.seedLedger(ctx, p.keyID, p.keyCheck.Version, p.own); err != nil {
				return fmt.Errorf("reserve %s: %w", r.ID, err)
			}
		case errors.Is(err, errUserBehind) && attempt < 3:
			if err := s.seedUserVersion(ctx, p.keyID, p.userCheck.ID, p.userCheck.Version); err != nil {
				return fmt.Errorf("reserve %s: %w", r.ID, err)
			}
		case errors.Is(err, errRace) && attempt < 10:
			// Concurrent settles changed the counters: the check passes now.
		case errors.Is(err, errUnseeded), errors.Is(err, errUserBehind), errors.Is(err, errRace):
			return fmt.Errorf("reserve %s: %w", r.ID, err)
		default:
			var le *budget.LimitError
			if errors.As(err, &le) {
				return le
			}
			return fmt.Errorf("reserve %s: %w", r.ID, err)
		}
	}
}

// reserveTransaction runs the ledger update e with the checks of the user's
// and organisation's versions and the reservations on their counters. When
// the ledger's own condition failed it returns failed and its old image; a
// failed check is budget.ErrStale, a counter over its limit a LimitError.
//
// With grants (allowance.go) each counter of p.others grows by grants[i]
// instead of the charge's amount, on the condition that that fits, and
// records the key among its holders (errCapped when it has maxHolders
// others already), except a counter granted 0, which the ledger's update
// draws on.
func (s *Store) reserveTransaction(ctx context.Context, r *budget.Reservation, p *ledgerPlan, e *expression, grants []int64) (bool, map[string]ddb.AttributeValue, error) {
	items := make([]ddb.TransactWriteItem, 0, len(p.checks)+len(p.others)+1)
	for _, c := range p.checks {
		pk, sk := checkKey(c)
		cc := &ddb.ConditionCheck{TableName: aws.String(s.table), Key: key(pk, sk)}
		if c.Version == 0 {
			cc.ConditionExpression = aws.String("attribute_not_exists(pk)")
		} else {
			cc.ConditionExpression = aws.String("version = :v")
			cc.ExpressionAttributeValues = map[string]ddb.AttributeValue{":v": num(c.Version)}
		}
		items = append(items, ddb.TransactWriteItem{ConditionCheck: cc})
	}
	items = append(items, ddb.TransactWriteItem{Update: s.ledgerUpdate(p.keyID, e)})
	shards, before, err := s.readBefore(ctx, r, p)
	if err != nil {
		return false, nil, fmt.Errorf("reserve %s: %w", r.ID, err)
	}
	var at []int // the index in p.others of each counter written
	for i, c := range p.others {
		amount := c.Amount
		if grants != nil {
			if amount = grants[i]; amount == 0 {
				continue // drawn from the key's allowance
			}
		}
		at = append(at, i)
		u := &ddb.Update{
			TableName:                 aws.String(s.table),
			Key:                       key(counterKey(c.Owner, c.Counter)),
			UpdateExpression:          aws.String("ADD v :a"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":a": num(amount)},
		}
		if c.Limit > 0 {
			// Conditions cannot add, so the headroom is computed here.
			headroom := c.Limit - amount - shards[i]
			if headroom < 0 {
				return false, nil, &budget.LimitError{Charge: c} // the shards alone leave no room
			}
			u.ConditionExpression = aws.String("attribute_not_exists(v) OR v <= :max")
			u.ExpressionAttributeValues[":max"] = num(headroom)
		}
		if grants != nil {
			u.UpdateExpression = aws.String("ADD v :a, #h :k")
			u.ConditionExpression = aws.String("(" + aws.ToString(u.ConditionExpression) +
				") AND (attribute_not_exists(#h) OR size(#h) < :cap OR contains(#h, :id))")
			u.ExpressionAttributeNames = map[string]string{"#h": attrHolders}
			if r.Funded != 0 {
				// A slice, or what an allowance pays for: not once the
				// limit was reached, when the reclaim has marked every
				// key that holds one (settleFunded).
				u.ConditionExpression = aws.String(aws.ToString(u.ConditionExpression) + " AND (attribute_not_exists(#d) OR #d <> :ov)")
				u.ExpressionAttributeNames["#d"] = attrDrained
				u.ExpressionAttributeValues[":ov"] = num(p.orgVersion())
			}
			u.ExpressionAttributeValues[":k"] = &ddb.AttributeValueMemberSS{Value: []string{p.keyID}}
			u.ExpressionAttributeValues[":id"] = str(p.keyID)
			u.ExpressionAttributeValues[":cap"] = num(maxHolders)
			u.ReturnValuesOnConditionCheckFailure = ddb.ReturnValuesOnConditionCheckFailureAllOld
		}
		if exp := counterExpiry(c); exp > 0 {
			u.UpdateExpression = aws.String(aws.ToString(u.UpdateExpression) + " SET expiresAt = :e")
			u.ExpressionAttributeValues[":e"] = num(exp)
		}
		items = append(items, ddb.TransactWriteItem{Update: u})
	}
	err = s.transact(ctx, items, "reserve "+r.ID)
	if err == nil && before != nil {
		r.Counted = make([]int64, len(r.Charges))
		for i, c := range r.Charges {
			r.Counted[i] = -1
			if before[i] >= 0 {
				r.Counted[i] = before[i] + c.Reserved()
			}
		}
	}
	var tc *ddb.TransactionCanceledException
	if errors.As(err, &tc) {
		for i, reason := range tc.CancellationReasons {
			if aws.ToString(reason.Code) != "ConditionalCheckFailed" {
				continue
			}
			switch {
			case i < len(p.checks):
				return false, nil, fmt.Errorf("reserve %s: %w", r.ID, budget.ErrStale)
			case i == len(p.checks):
				old := reason.Item
				if old == nil {
					old = map[string]ddb.AttributeValue{}
				}
				return true, old, nil
			default:
				le := &budget.LimitError{Charge: p.others[at[i-len(p.checks)-1]]}
				switch {
				case grants != nil && capped(reason.Item, p.keyID):
					return false, nil, errCapped
				case grants != nil && reclaimed(reason.Item, p.orgVersion()):
					return false, nil, fmt.Errorf("%w: %w", errReclaimed, le)
				}
				return false, nil, le
			}
		}
	}
	return false, nil, err
}

// readBefore reads, when some limited charge among p.others has shards,
// what those shards hold (spend counted while the counter had no limit,
// which the reserve subtracts from its headroom: shards[i] for
// p.others[i], 0 for the others) and, in the same round trip, the value
// of every limited counter of r (before[i] for r.Charges[i], -1 for the
// unlimited): a transaction returns nothing, so the reserve reports these
// plus its amounts as what it counted (budget.Reservation.Counted, for the
// response's headers), sparing a read after it. When no limited charge has
// shards it reads nothing (shards all 0, before nil). Only spend of
// requests admitted without the limit still lands on shards, so the read
// does not race the limit.
//
// The same round trip reads the owners' DEFERRAL lists (deferral.go): when
// key ledgers hold spend of such an owner, it closes the deferral (the
// spend moves to the shards) and reads again. Should settles planned
// without the limit keep opening it, after closeRounds the pending spend is
// read and subtracted from the headroom as the shards are.
func (s *Store) readBefore(ctx context.Context, r *budget.Reservation, p *ledgerPlan) (shards, before []int64, err error) {
	where := make([][]place, len(p.others), len(p.others)+len(r.Charges))
	var owners []string
	for i, c := range p.others {
		if c.Limit > 0 && sharded(c) {
			where[i] = places(c)[1:]
			for _, o := range listOwners(c) {
				if !slices.Contains(owners, o) {
					owners = append(owners, o)
				}
			}
		}
	}
	if len(owners) == 0 {
		return make([]int64, len(p.others)), nil, nil
	}
	for _, c := range r.Charges {
		var ps []place
		if c.Limit > 0 {
			ps = places(c)
		}
		where = append(where, ps)
	}
	var vals []int64
	for round := 0; ; round++ {
		var lists map[string][]string
		if vals, lists, err = s.readCounters(ctx, where, owners); err != nil {
			return nil, nil, err
		}
		if len(lists) == 0 {
			break
		}
		if round == closeRounds {
			// The pending spend first, then the shards again: a drain
			// between the two reads is counted twice (less headroom),
			// never missed.
			pending := make([]int64, len(p.others))
			if err := s.pendingInto(ctx, p.others, lists, pending); err != nil {
				return nil, nil, err
			}
			if vals, _, err = s.readCounters(ctx, where, nil); err != nil {
				return nil, nil, err
			}
			for i := range pending {
				vals[i] += pending[i]
			}
			break
		}
		for _, o := range owners {
			if err := s.closeDeferral(ctx, o, lists[o]); err != nil {
				return nil, nil, err
			}
		}
	}
	before = vals[len(p.others):]
	for i, c := range r.Charges {
		if c.Limit <= 0 {
			before[i] = -1
		}
	}
	return vals[:len(p.others)], before, nil
}

// seedLedger gives keyID's ledger the configuration version of a key
// stored before ledgers had one, if the key item still has that version:
// budget.ErrStale when it has another. Every change of a key writes the
// version to its ledger too, so this runs once per key at most. The values
// of own's windows (the current month, window and rate counters of the
// reservation being made) are carried over from the counter items of that
// layout, so a limit's window does not start again at the upgrade; the
// lifetime counter was already on the ledger's item.
func (s *Store) seedLedger(ctx context.Context, keyID string, version int64, own []budget.Charge) error {
	e := newExpression()
	e.set(e.name(attrConfig) + " = " + e.value(num(version)))
	e.cond("attribute_not_exists(" + e.name(attrConfig) + ")")
	var windows []budget.Counter
	var where [][]place
	for _, c := range own {
		if c.Unit != budget.Lifetime && c.Owner.ID == keyID {
			windows = append(windows, c.Counter)
			where = append(where, []place{{keyPK(keyID), counterSK(c.Counter), attrCommitted}})
		}
	}
	legacy, _, err := s.readCounters(ctx, where, nil)
	if err != nil {
		return err
	}
	for i, c := range windows {
		if legacy[i] != 0 {
			e.add(counterAttr(c), legacy[i])
		}
	}
	err = s.transact(ctx, []ddb.TransactWriteItem{
		{ConditionCheck: &ddb.ConditionCheck{
			TableName: aws.String(s.table), Key: key(keyPK(keyID), skKey),
			ConditionExpression:       aws.String("version = :v"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": num(version)},
		}},
		{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: ledgerKey(keyID),
			UpdateExpression: aws.String(e.update()), ConditionExpression: e.condition(),
			ExpressionAttributeNames: e.namesOrNil(), ExpressionAttributeValues: e.valuesOrNil(),
		}},
	}, "seed the ledger of key "+keyID)
	if failed := conditionsFailed(err); len(failed) > 0 {
		if failed[0] == 0 {
			return budget.ErrStale
		}
		return nil // seeded concurrently
	}
	return err
}

// ledgerVersion is the write that keeps keyID's ledger's configuration
// version equal to the key item's, in the transaction that writes the key.
// It removes the user's version: the key's user may have changed, and the
// next reserve planned from a user seeds it again (seedUserVersion).
func (s *Store) ledgerVersion(keyID string, version int64) ddb.TransactWriteItem {
	return ddb.TransactWriteItem{Update: &ddb.Update{
		TableName: aws.String(s.table), Key: ledgerKey(keyID),
		UpdateExpression:          aws.String("SET cfg = :v REMOVE ucfg"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": num(version)},
	}}
}

// seedUserVersion gives keyID's ledger the version of its user userID, if
// the user item still has that version (budget.ErrStale when it has
// another): a transaction of a check on the user item and the ledger's
// update, on the condition that the ledger has no newer one. It runs after
// each change of the key and when a user change could not reach the
// ledger (UpdateUser writes the user's version to its keys' ledgers).
func (s *Store) seedUserVersion(ctx context.Context, keyID, userID string, version int64) error {
	err := s.transact(ctx, []ddb.TransactWriteItem{
		{ConditionCheck: &ddb.ConditionCheck{
			TableName: aws.String(s.table), Key: key(userPK(userID), skUser),
			ConditionExpression:       aws.String("version = :v"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": num(version)},
		}},
		{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: ledgerKey(keyID),
			UpdateExpression:          aws.String("SET ucfg = :v"),
			ConditionExpression:       aws.String("attribute_not_exists(ucfg) OR ucfg < :v"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": num(version)},
		}},
	}, "seed the user version of the ledger of key "+keyID)
	if failed := conditionsFailed(err); len(failed) > 0 {
		if failed[0] == 0 {
			return budget.ErrStale
		}
		return nil // seeded concurrently, or a newer version is there: the reserve tells
	}
	return err
}

// userLedgers are the writes of a user's new version to the ledgers of
// the user's keys, for the transaction that writes the user.
func (s *Store) userLedgers(keyIDs []string, version int64) []ddb.TransactWriteItem {
	items := make([]ddb.TransactWriteItem, 0, len(keyIDs))
	for _, id := range keyIDs {
		items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: ledgerKey(id),
			UpdateExpression:          aws.String("SET ucfg = :v"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": num(version)},
		}})
	}
	return items
}

// counterExpiry lets window counters shorter than a month expire a day after
// their window; lifetime and monthly counters stay (they feed statements).
func counterExpiry(c budget.Charge) int64 {
	if c.Resets.IsZero() || c.Kind == budget.Spend && c.Unit == budget.Month {
		return 0
	}
	return c.Resets.Add(24 * time.Hour).Unix()
}

// Settle ends r with the request's actual usage: ev is stored (a
// conditional PutItem, on the event being new; the reporting aggregates
// follow by the fold, fold.go), then r ends on the key's ledger (one
// conditional UpdateItem; a transaction with the user's or organisation's
// counters when r reserved on them): each counter moves from the reserved
// amount to the actual one and the settled figures grow. The deferred spend
// of the user and the organisation is counted by that same write: on the
// ledger itself when it is one UpdateItem (deferral.go), on the owners'
// shards when it is a transaction. All of it happens once:
// ErrSettled if r was already settled (for example by
// the stale sweep). When ev's item exists already (an earlier attempt, or
// the sweep, stored it and did not get to the ledger), the stored event is
// what the ledger is settled with, so the two always agree. Actual cost
// above the reservation is recorded as it is (never hidden).
//
// The ledger is the judge of whether r is still open, after the event: a
// reservation that had ended (released or abandoned: its request was never
// forwarded, so no handler settles it; settled by the sweep: then the
// event, of the same id and time, was stored already) has the event this
// call stored taken back, on the condition that it is still there (the
// fold skips the events of reservations that are tombstones, so the
// aggregates never counted it). Nothing else
// ends a reservation while its request may still settle it (the sweep waits
// for its deadline, past the invocation's end), so that path is a guard,
// not a step of the common case, which is two writes and no read.
func (s *Store) Settle(ctx context.Context, r *budget.Reservation, ev *ledger.Event) error {
	p, err := splitReservation(r)
	if err != nil {
		return err
	}
	stored, fresh, err := s.storeEvent(ctx, ev)
	if err != nil {
		return fmt.Errorf("settle %s: %w", r.ID, err)
	}
	err = s.settleLedger(ctx, r, p, stored, "settle")
	if fresh && errors.Is(err, budget.ErrSettled) {
		if uerr := s.unrecordEvent(ctx, stored); uerr != nil {
			return fmt.Errorf("%w; and taking its event back: %w", err, uerr)
		}
	}
	return err
}

// Release undoes r for a request that was never forwarded: spend and token
// amounts are given back, the request still counts against rate limits, no
// event is stored, and r's entry becomes a tombstone, so a late copy of r's
// reserve can never land. ErrSettled when r was already released or settled
// (a retry whose earlier attempt committed).
func (s *Store) Release(ctx context.Context, r *budget.Reservation) error {
	p, err := splitReservation(r)
	if err != nil {
		return err
	}
	return s.settleLedger(ctx, r, p, nil, "release")
}

// Abandon ends r after a Reserve whose outcome is unknown (it timed out, so
// its write may have landed, may still land later, or never will), for a
// request answered 503 and never forwarded. It first puts r's tombstone on
// the key's ledger on the condition that r has no entry there: when that
// succeeds, no reserve of r has landed and none ever will (its condition
// requires no entry), so nothing was charged. When r has an entry, either
// the reserve landed — then Release gives every amount back and leaves the
// tombstone — or an earlier Abandon already did all this. Abandon is
// idempotent: call it until it returns nil or a permanent error.
func (s *Store) Abandon(ctx context.Context, r *budget.Reservation) error {
	p, err := splitReservation(r)
	if err != nil {
		return err
	}
	e := newExpression()
	ea := e.name(entryAttr(r.ID))
	e.set(ea + " = " + e.value(str(tombstoneValue(r))))
	e.cond("attribute_not_exists(" + ea + ")")
	failed, old, err := s.updateLedger(ctx, p.keyID, e, "abandon "+r.ID)
	switch {
	case err != nil:
		return err
	case !failed, strings.HasPrefix(getS(old, entryAttr(r.ID)), tombEntry):
		return nil
	}
	if err := s.Release(ctx, r); err != nil && !errors.Is(err, budget.ErrSettled) {
		return fmt.Errorf("abandon %s: %w", r.ID, err)
	}
	return nil
}

// settleLedger ends r on its key's ledger with ev (a release when nil),
// with the counters of other owners r reserved on in the same transaction.
func (s *Store) settleLedger(ctx context.Context, r *budget.Reservation, p *ledgerPlan, ev *ledger.Event, what string) error {
	what += " " + r.ID
	if r.Funded > 0 && len(p.others) > 0 {
		if done, err := s.settleFunded(ctx, r, p, ev, what); done {
			return err
		}
	}
	e := p.settleExpression(r, ev)
	if len(p.others) == 0 {
		for attempt := 0; ; attempt++ {
			failed, old, err := s.updateLedger(ctx, p.keyID, e, what)
			if err != nil || !failed {
				return err
			}
			missing := unregistered(old, p.pending)
			if ev == nil || !strings.HasPrefix(getS(old, entryAttr(r.ID)), liveEntry) || len(missing) == 0 {
				return fmt.Errorf("%s: %w", what, budget.ErrSettled)
			}
			if attempt >= 3 {
				return fmt.Errorf("%s: the ledger is still not registered for the spend of %v", what, missing)
			}
			// The key's first request since the owner's deferral was
			// opened or closed (deferral.go).
			if err := s.register(ctx, p.keyID, missing); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	items := []ddb.TransactWriteItem{{Update: s.ledgerUpdate(p.keyID, e)}}
	items = append(items, counterMoves(s.table, p.others, ev, chargeKey)...)
	// The deferred charges are counted here, on their shards; a release
	// has none to count.
	items = append(items, counterMoves(s.table, p.deferred, ev, anyShard)...)
	err := s.transact(ctx, items, what)
	if failed := conditionsFailed(err); len(failed) > 0 && failed[0] == 0 {
		return fmt.Errorf("%s: %w", what, budget.ErrSettled)
	}
	return err
}

// counterMoves moves each of cs (on the item at names, not the ledger) from its
// reserved amount to ev's actual one (a deferred charge: by the whole
// actual cost; a release, ev nil, gives back what was reserved), adding the
// settled figures to spend counters.
func counterMoves(table string, cs []budget.Charge, ev *ledger.Event, at func(budget.Charge) (pk, sk string)) []ddb.TransactWriteItem {
	var items []ddb.TransactWriteItem
	var cost, tokens int64
	if ev != nil {
		cost, tokens = int64(ev.Cost), ev.Usage.Total()
	}
	for _, c := range cs {
		e := newExpression()
		switch c.Kind {
		case budget.Spend:
			if c.Deferred && ev == nil {
				continue // never reserved, nothing to give back
			}
			e.add(attrCommitted, cost-c.Reserved())
			if ev != nil {
				for _, f := range settledFigures(ev) {
					e.add(f.name, f.value)
				}
			}
		case budget.Tokens:
			e.add(attrCommitted, tokens-c.Reserved())
		default:
			continue // a request stays counted
		}
		items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
			TableName: aws.String(table), Key: key(at(c)),
			UpdateExpression: aws.String(e.update()), ExpressionAttributeNames: e.namesOrNil(), ExpressionAttributeValues: e.valuesOrNil(),
		}})
	}
	return items
}

// recordEvent stores ev, on the condition that it is new (the aggregates
// follow by the fold), and returns the event as stored: ev, or the one an
// earlier attempt stored. A nil ev (a release) records nothing.
func (s *Store) recordEvent(ctx context.Context, ev *ledger.Event) (*ledger.Event, error) {
	stored, _, err := s.storeEvent(ctx, ev)
	return stored, err
}

// storeEvent is recordEvent, and reports whether this call stored the
// event (fresh) rather than an earlier one.
func (s *Store) storeEvent(ctx context.Context, ev *ledger.Event) (*ledger.Event, bool, error) {
	if ev == nil {
		return nil, false, nil
	}
	evItem, err := eventItem(ev, s.retention)
	if err != nil {
		return nil, false, err
	}
	evItem[attrByFold] = num(1) // its aggregates follow by the fold
	out, err := s.db.PutItem(ctx, &ddb.PutItemInput{
		TableName: aws.String(s.table), Item: evItem, ConditionExpression: aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: ddb.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *ddb.ConditionalCheckFailedException
	switch {
	case err == nil:
		s.accountOne(out.ConsumedCapacity)
		return ev, true, nil
	case !errors.As(err, &ccf):
		if permanent(err) {
			return nil, false, fmt.Errorf("record event %s: %w: %w", ev.ID, budget.ErrRejected, err)
		}
		return nil, false, fmt.Errorf("record event %s: %w", ev.ID, err)
	}
	old := ccf.Item
	if len(old) == 0 {
		if old, err = s.getItem(ctx, eventPK(ev.KeyID), eventSK(ev.CreatedAt, ev.ID), "event "+ev.ID); err != nil {
			return nil, false, err
		}
	}
	stored, err := decodeEvent(old)
	return stored, false, err
}

// unrecordEvent takes back what storeEvent(ev) stored: the event's delete,
// on the condition that it is there. The fold never counted it: its
// reservation is a tombstone (Settle), which the fold skips.
func (s *Store) unrecordEvent(ctx context.Context, ev *ledger.Event) error {
	_, err := s.db.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName: aws.String(s.table), Key: key(eventPK(ev.KeyID), eventSK(ev.CreatedAt, ev.ID)),
		ConditionExpression: aws.String("attribute_exists(pk)"),
	})
	var ccf *ddb.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return nil // taken back already
	}
	if err != nil {
		return fmt.Errorf("take back event %s: %w", ev.ID, err)
	}
	return nil
}
