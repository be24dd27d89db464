package dynamo

// Allowances: part of the organisation's spend limit held on a key's
// ledger, so that a request of a key under an organisation limit (and no
// user limit) reserves with the single conditional UpdateItem a key
// without one uses, instead of a transaction on the organisation's hot
// counter item.
//
//	ledger    A#<counter>   the key's unspent allowance of the organisation's
//	                        counter (as counterSK names it: SPEND#mo#<yyyymm> for
//	                        the month, USAGE for the lifetime), nanodollars
//	          av            the organisation's settings version they were granted
//	                        under: a draw requires the version its plan was made from,
//	                        and so does a settle that gives back to them; PutOrg's
//	                        revocation removes it
//	          D#<counter>   the settings version under which a reclaim took the
//	                        allowance back: no settle gives back to it after that
//	          P#ORG~<l|m|lm>#<yyyymm>#<f>
//	                        figures of settled requests that allowances paid for,
//	                        pending (deferral.go)
//	counter   hold          the keys that were granted an allowance of it
//	                        (string set), at most maxHolders
//	          drained       the settings version under which a grant of just the
//	                        amount first did not fit: no slice is granted any more
//	                        under that version
//	          reclaimed     the version under which every allowance was then taken
//	                        back: none is held, so a grant of just the amount that
//	                        does not fit is an exact refusal
//
// The counter item's committed value v counts every grant, spent or not,
// besides the reservations of keys that reserve on it directly; so
// committed spend is v less the holders' unspent allowances, and v never
// passes the limit (the grant's condition is the reserve's condition).
//
//   - Draw: the reserve's ledger update also subtracts each organisation
//     charge from its allowance, on the condition that the allowance holds
//     it and was granted under the settings the request was planned from
//     (a plan from cached older settings goes to the grant, whose version
//     check refuses it as stale). The entry lists the organisation's
//     charges as a transaction's reserve does, and records the version
//     (Funded).
//   - Settle (allowsettle.go): the ledger's UpdateItem gives what the
//     request did not spend back to the allowance and leaves its figures
//     pending on the ledger, while the allowance is still one (the
//     ledger's av is the version, and no reclaim marked it, D#<counter>);
//     otherwise, or when the request cost more than it reserved, the
//     transaction with the counter items moves v from the reserved amount
//     to the actual one.
//   - Grant, when the allowance is short: the transaction a reserve on the
//     counter items is, adding a slice of the limit (1/allowanceShare, at
//     least the amount) to v instead of the amount, the slice less the
//     amount to the key's allowance, and the key to hold. When the slice
//     does not fit under the limit, exactly the amount.
//   - Reclaim, before the first refusal: when a grant of just the amount
//     does not fit, the counters are marked drained (no slice is granted
//     after that, nor anything a settle could give back to), every holder's
//     ledger is marked (D#: no settle gives back to it after that, so its
//     allowance only shrinks) and its allowance taken back into the pool (a
//     transaction per holder, on the condition that the allowance is still
//     what the mark returned), and the counters are marked reclaimed. From then on no allowance is held, and the reserve
//     is a grant of just the amount: when it does not fit, the refusal is
//     as exact as a reserve on the counter item was, and the slices come
//     back only with new settings (or, for a month, the next month). Only
//     the counter that refused is reclaimed.
//   - A change of the organisation's settings (PutOrg) takes every
//     allowance back before it returns (removing av first), so a lowered
//     limit applies at the next request; a grant planned from the older settings fails the
//     version check every grant carries, a draw the ledger's av, and the
//     marks of older settings no longer count. A ledger's leftovers from
//     other settings go back to the pool before it is granted under new.
//
// A key past maxHolders, or whose reserve is a transaction anyway (a user
// limit, a provider ceiling), reserves on the counter items as before; its
// refusal, too, comes only after the reclaim. A counter's hold set only
// grows: the lifetime's, over the keys that ever held an allowance of it.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

const (
	allowPrefix   = "A#"
	drainedPrefix = "D#"
	attrHolders   = "hold"
	attrDrained   = "drained"   // the organisation's version it was marked under
	attrReclaimed = "reclaimed" // likewise
	attrAllowVer  = "av"        // on the ledger: the version its allowances were granted under
	// maxHolders bounds the keys holding allowances of one counter (a class
	// of 100 fits), and so the work of a reclaim and of PutOrg's revocation
	// (two writes per holder, reclaimFanOut at a time) and the size of the
	// counter item, which the response headers read (128 key ids in its
	// hold set keep it under 4 KB: one read unit).
	maxHolders = 128
	// reclaimFanOut is how many holders a reclaim works on at once.
	reclaimFanOut = 8
	// allowanceShare: a grant is the limit divided by this, or the amount
	// if larger (Store.share: tests set fewer, larger slices).
	allowanceShare = 256
)

// allowAttr is the ledger attribute of the key's allowance of counter c.
func allowAttr(c budget.Counter) string { return allowPrefix + counterSK(c) }

// drainedAttr is the ledger attribute that records the settings version
// under which the key's allowance of counter c was taken back because the
// limit was reached.
func drainedAttr(c budget.Counter) string { return drainedPrefix + counterSK(c) }

// allowanceMode is how a reserve takes its amount of the organisation's
// limited counters.
type allowanceMode int

const (
	onCounters    allowanceMode = iota // on the counter items, in a transaction
	drawAllowance                      // from the key's allowance, on its ledger
	grantSlice                         // granting a slice of the limit, in a transaction
	grantExact                         // granting just the amount, in a transaction
)

// allowable reports whether p reserves, besides the key's own counters,
// only on the organisation's limited lifetime or monthly spend, and checks
// only the organisation's version: such a reserve may use allowances.
func (p *ledgerPlan) allowable() bool {
	if len(p.others) == 0 || len(p.checks) != 1 || p.checks[0].Kind != budget.CheckOrg {
		return false
	}
	for _, c := range p.others {
		if !orgSpend(c) {
			return false
		}
	}
	return true
}

// orgVersion is the organisation's settings version p was planned from.
func (p *ledgerPlan) orgVersion() int64 {
	for _, c := range p.checks {
		if c.Kind == budget.CheckOrg {
			return c.Version
		}
	}
	return 0
}

// drawExpression adds to e, the reserve's ledger update, the draw of each
// organisation charge from the key's allowance, on the condition that the
// allowance holds it and was granted under the settings p was planned from
// (a plan from older or newer settings takes the grant's path, whose
// version check tells).
func (p *ledgerPlan) drawExpression(e *expression) *expression {
	e.cond(e.name(attrAllowVer) + " = " + e.value(num(p.orgVersion())))
	for _, c := range p.others {
		n := allowAttr(c.Counter)
		e.cond(e.name(n) + " >= " + e.value(num(c.Amount)))
		e.add(n, -c.Amount)
	}
	return e
}

// drawable reports whether the ledger as last seen (old) holds, under the
// settings p was planned from, the amount of p.others[i]'s counter.
func (p *ledgerPlan) drawable(old map[string]ddb.AttributeValue, i int) bool {
	_, ok := old[attrAllowVer]
	return ok && getN(old, attrAllowVer) == p.orgVersion() && getN(old, allowAttr(p.others[i].Counter)) >= p.others[i].Amount
}

// allowanceShort reports, from the ledger as a failed draw found it, that
// an allowance could not pay its charge.
func (p *ledgerPlan) allowanceShort(old map[string]ddb.AttributeValue) bool {
	for i := range p.others {
		if !p.drawable(old, i) {
			return true
		}
	}
	return false
}

// hasLeftovers reports whether the ledger as seen (old) holds any of
// p.others' counters under other settings than p's, or under none (a
// revocation that removed av and failed before it took them back): they
// go back into the pool before the key is granted anything under p's.
func (p *ledgerPlan) hasLeftovers(old map[string]ddb.AttributeValue) bool {
	if _, ok := old[attrAllowVer]; ok && getN(old, attrAllowVer) == p.orgVersion() {
		return false
	}
	for _, c := range p.others {
		if getN(old, allowAttr(c.Counter)) > 0 {
			return true
		}
	}
	return false
}

// grants is what a reserve in mode adds to each of p.others' counters
// (nil: the charges' amounts, no allowance): 0 for a counter whose
// allowance held the charge when the ledger was last seen (old: it draws
// on it), else a slice of the limit or just the amount.
func (p *ledgerPlan) grants(mode allowanceMode, old map[string]ddb.AttributeValue, share int64) []int64 {
	if mode != grantSlice && mode != grantExact {
		return nil
	}
	g := make([]int64, len(p.others))
	for i, c := range p.others {
		switch {
		case p.drawable(old, i):
			g[i] = 0
		case mode == grantSlice:
			g[i] = max(c.Amount, c.Limit/share)
		default:
			g[i] = c.Amount
		}
	}
	return g
}

// grantExpression adds to e, the reserve's ledger update, what grants give
// the key's allowances beyond the amounts it reserves, on the condition
// that the allowance is still short: a key's concurrent requests that all
// found it short do not each take a slice.
//
// A counter granted nothing (0) is drawn on, as drawExpression does. The
// ledger's allowances become those of the settings p was planned from: on
// the condition that they were (or none was granted), or, when the ledger
// was seen (old) under other settings, that it still is and holds nothing
// of p's counters (Reserve takes such leftovers back first).
func (p *ledgerPlan) grantExpression(e *expression, grants []int64, old map[string]ddb.AttributeValue) *expression {
	av := e.name(attrAllowVer)
	ov := e.value(num(p.orgVersion()))
	if _, ok := old[attrAllowVer]; ok && getN(old, attrAllowVer) != p.orgVersion() {
		e.cond(av + " = " + e.value(num(getN(old, attrAllowVer))))
		for _, c := range p.others {
			n := e.name(allowAttr(c.Counter))
			e.cond("attribute_not_exists(" + n + ") OR " + n + " = " + e.value(num(0)))
		}
	} else {
		e.cond("attribute_not_exists(" + av + ") OR " + av + " = " + ov)
	}
	e.set(av + " = " + ov)
	for i, c := range p.others {
		switch extra := grants[i] - c.Amount; {
		case grants[i] == 0:
			n := e.name(allowAttr(c.Counter))
			e.cond(n + " >= " + e.value(num(c.Amount)))
			e.add(allowAttr(c.Counter), -c.Amount)
		case extra > 0:
			n := e.name(allowAttr(c.Counter))
			e.cond("attribute_not_exists(" + n + ") OR " + n + " < " + e.value(num(c.Amount)))
			e.add(allowAttr(c.Counter), extra)
		}
	}
	return e
}

// errCapped: the counter has maxHolders holders already; the key reserves
// on the counter items.
var errCapped = errors.New("the organisation's allowances have as many holders as they may")

// errReclaimed: the counter is reclaimed (no allowance is held: a grant of
// the amount that does not fit is an exact refusal).
var errReclaimed = errors.New("the organisation's limit was reached: no allowance is held")

// reclaimed reports whether the counter, as it was (old), was reclaimed
// under the settings version.
func reclaimed(old map[string]ddb.AttributeValue, version int64) bool {
	_, ok := old[attrReclaimed]
	return ok && getN(old, attrReclaimed) == version
}

// capped reports whether a grant to keyID failed because the counter, as it
// was (old), has maxHolders other holders.
func capped(old map[string]ddb.AttributeValue, keyID string) bool {
	hold := getSS(old, attrHolders)
	return len(hold) >= maxHolders && !slices.Contains(hold, keyID)
}

// allowances is what the organisation's counters and their holders' ledgers
// held when read.
type allowances struct {
	counters []counterRead
	// holders is every key the counters' hold sets name, sorted.
	holders []string
}

type counterRead struct {
	c         budget.Counter
	holders   []string
	reclaimed int64 // the settings version of the mark, 0 when none
}

// readAllowances reads cs's counter items (their holders and marks),
// strongly consistent.
func (s *Store) readAllowances(ctx context.Context, cs []budget.Counter) (*allowances, error) {
	a := &allowances{}
	for _, c := range cs {
		out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
			TableName: aws.String(s.table), Key: key(counterKey(budget.OrgOwner(), c)), ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return nil, fmt.Errorf("read the organisation's %s: %w", counterSK(c), err)
		}
		cr := counterRead{c: c, holders: getSS(out.Item, attrHolders), reclaimed: getN(out.Item, attrReclaimed)}
		a.counters = append(a.counters, cr)
		for _, h := range cr.holders {
			if !slices.Contains(a.holders, h) {
				a.holders = append(a.holders, h)
			}
		}
	}
	sort.Strings(a.holders)
	return a, nil
}

// holderMark is what taking a holder's allowances back first writes on its
// ledger, so that a reservation settled after it gives
// what it did not spend back to the pool, not to the allowance
// (settleFunded's condition).
type holderMark func(e *expression, cs []budget.Counter)

// drainedMark marks, under the settings version, each counter of cs taken
// back because the limit was reached (D#<counter>).
func drainedMark(version int64) holderMark {
	return func(e *expression, cs []budget.Counter) {
		for _, c := range cs {
			e.set(e.name(drainedAttr(c)) + " = " + e.value(num(version)))
		}
	}
}

// revokedMark removes the ledger's av: its allowances were of settings that
// changed.
func revokedMark(e *expression, _ []budget.Counter) { e.remove(attrAllowVer) }

// reclaimHolders writes mark on the ledger of each holder a names, then
// takes back into the pool what it holds of a's counters: one transaction
// of its ledger (each allowance on the condition that it is what was
// read) and the counters. After the mark no settle gives back to the
// allowance, so the take-back meets at most the key's draws (and, after a
// revocation, a grant under the newer settings, which it takes back too:
// v counted it); a holder found holding nothing is done. Holders are independent: an allowance taken back is in
// the pool whatever happens to the others.
func (s *Store) reclaimHolders(ctx context.Context, a *allowances, mark holderMark) error {
	cs := make([]budget.Counter, len(a.counters))
	for i, cr := range a.counters {
		cs[i] = cr.c
	}
	return forEach(ctx, len(a.holders), reclaimFanOut, func(ctx context.Context, i int) error {
		return s.reclaimHolder(ctx, a.holders[i], cs, mark)
	})
}

// reclaimHolder marks h's ledger and takes back what it holds of cs
// (reclaimHolders).
func (s *Store) reclaimHolder(ctx context.Context, h string, cs []budget.Counter, mark holderMark) error {
	e := newExpression()
	mark(e, cs)
	e.cond("attribute_exists(" + e.name(attrPK) + ")")
	in := updateItemInput(s.ledgerUpdate(h, e))
	in.ReturnValues = ddb.ReturnValueAllNew
	in.ReturnValuesOnConditionCheckFailure = ""
	out, err := s.db.UpdateItem(ctx, in)
	if isConditionFailed(err) {
		return nil // no ledger: nothing held
	}
	if err != nil {
		return fmt.Errorf("mark the ledger of key %s: %w", h, err)
	}
	s.accountOne(out.ConsumedCapacity)
	item := out.Attributes
	// Each lost race is the key drawing on what it holds (after the mark
	// nothing gives back to it), so what it holds shrinks, and the loop
	// ends when it is gone: only races that take nothing off (a grant under
	// newer settings, which the take-back then takes too) are counted, so
	// that a busy key drawing again and again does not fail a reserve of
	// another key (the reserve's timeout bounds the whole).
	held, stalled := int64(-1), 0
	for {
		total := int64(0)
		for _, c := range cs {
			total += max(getN(item, allowAttr(c)), 0)
		}
		if held >= 0 && total >= held {
			stalled++
		}
		if stalled >= 20 {
			return fmt.Errorf("take back the allowances of key %s: %w", h, errRace)
		}
		held = total
		e := newExpression()
		items := []ddb.TransactWriteItem{}
		for _, c := range cs {
			amount := getN(item, allowAttr(c))
			if amount <= 0 {
				continue
			}
			e.cond(e.name(allowAttr(c)) + " = " + e.value(num(amount)))
			e.add(allowAttr(c), -amount)
			pk, sk := counterKey(budget.OrgOwner(), c)
			items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
				TableName: aws.String(s.table), Key: key(pk, sk), UpdateExpression: aws.String("ADD v :a"),
				ExpressionAttributeValues: map[string]ddb.AttributeValue{":a": num(-amount)},
			}})
		}
		if len(items) == 0 {
			return nil
		}
		items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: ledgerKey(h), UpdateExpression: aws.String(e.update()),
			ConditionExpression: e.condition(), ExpressionAttributeNames: e.namesOrNil(), ExpressionAttributeValues: e.valuesOrNil(),
		}})
		err := s.transact(ctx, items, "take back the allowances of key "+h)
		if err == nil || len(conditionsFailed(err)) == 0 {
			return err
		}
		// The key drew on it meanwhile: read what it holds now.
		if item, err = s.getItem(ctx, keyPK(h), skUsage, "the ledger of key "+h); err != nil {
			return err
		}
	}
}

// setMarks sets the attribute mark of cs's counter items to version.
func (s *Store) setMarks(ctx context.Context, cs []budget.Counter, mark string, version int64) error {
	for _, c := range cs {
		pk, sk := counterKey(budget.OrgOwner(), c)
		_, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName: aws.String(s.table), Key: key(pk, sk), UpdateExpression: aws.String("SET #m = :v"),
			ExpressionAttributeNames:  map[string]string{"#m": mark},
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": num(version)},
		})
		if err != nil {
			return fmt.Errorf("mark the organisation's %s %s: %w", sk, mark, err)
		}
	}
	return nil
}

// reclaim takes every allowance of cs's counters back into the pool, once
// per counter and settings version: it marks the counters drained (no
// slice is granted under those settings after that, so allowances only
// shrink), takes back what every holder holds, and marks the counters
// reclaimed. From then on no allowance is held, so a grant of just the
// amount that does not fit is an exact refusal. The marks carry the
// version: settings changed meanwhile make them stale, not wrong.
func (s *Store) reclaim(ctx context.Context, cs []budget.Counter, version int64) error {
	if err := s.setMarks(ctx, cs, attrDrained, version); err != nil {
		return err
	}
	a, err := s.readAllowances(ctx, cs)
	if err != nil {
		return err
	}
	done := true
	for _, cr := range a.counters {
		done = done && cr.reclaimed == version
	}
	if done {
		return nil
	}
	if err := s.reclaimHolders(ctx, a, drainedMark(version)); err != nil {
		return err
	}
	return s.setMarks(ctx, cs, attrReclaimed, version)
}

// revokeAllowances takes every allowance of the organisation's lifetime and
// current monthly spend back into the pool (PutOrg, after the settings
// changed; grants planned from older settings fail their version check,
// and draws on older settings' allowances fail theirs, so what it reads
// is all there is of those). The counters' marks carry the older version:
// they no longer count.
func (s *Store) revokeAllowances(ctx context.Context, month budget.Counter) error {
	a, err := s.readAllowances(ctx, []budget.Counter{budget.LifetimeSpend(), month})
	if err != nil {
		return fmt.Errorf("revoke the organisation's allowances: %w", err)
	}
	if err := s.reclaimHolders(ctx, a, revokedMark); err != nil {
		return fmt.Errorf("revoke the organisation's allowances: %w", err)
	}
	return nil
}

// slice is the divisor of a grant's slice: allowanceShare unless a test
// set another.
func (s *Store) slice() int64 {
	if s.share > 0 {
		return s.share
	}
	return allowanceShare
}

// orgSpend reports whether c is on the organisation's limited lifetime or
// monthly spend: a counter keys may hold allowances of.
func orgSpend(c budget.Charge) bool {
	return c.Owner.Kind == budget.OwnerOrg && c.Kind == budget.Spend && c.Limit > 0 &&
		(c.Unit == budget.Lifetime || c.Unit == budget.Month)
}
