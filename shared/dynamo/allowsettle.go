package dynamo

// The settle of a reservation that allowances paid for (allowance.go): the
// key's ledger alone, with one conditional UpdateItem, as a key without
// organisation limits settles. What the request did not spend goes back
// to the allowance it came from; its figures wait on the ledger as the
// pending spend of a funded owner (deferral.go), for the organisation's
// totals to add and the sweep to drain.
//
// The release goes to the allowance only while that allowance is still
// one: the condition of the settle is that the ledger's av is the version
// the reservation was granted under (PutOrg's revocation removes it) and
// that no reclaim under that version marked the counter on the ledger
// (D#<counter>: after the limit was reached, allowances only shrink, which
// is what makes a refusal exact). Otherwise, and when the request cost
// more than it reserved (the excess must reach the counter's v, which
// grants are checked against), the settle is the transaction of the
// counter items, as for any other reservation.

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

// fundedTag is how a ledger entry of a reservation that allowances of the
// settings version paid for ends (ledgerEntry.Funded is its last field).
func fundedTag(version int64) string { return `,"F":` + strconv.FormatInt(version, 10) + "}" }

// fundedPending is where a funded settle of r with ev counts the spend it
// defers: the user's pending spend, as a settle on the ledger alone does,
// and the organisation's under the funded owner of the counters that
// allowances paid for. ok is false when r cannot settle so: it was not
// funded, it reserved on other counters than the organisation's limited
// spend, or ev cost more than it reserved.
func (p *ledgerPlan) fundedPending(r *budget.Reservation, ev *ledger.Event) (owners []pendingOwner, ok bool) {
	if r.Funded <= 0 || !p.allowable() {
		return nil, false
	}
	cost := actualCost(ev)
	lifetime, month, window := false, false, ""
	for _, c := range p.others {
		if cost > c.Reserved() {
			return nil, false
		}
		switch c.Unit {
		case budget.Lifetime:
			lifetime = true
		case budget.Month:
			month, window = true, c.Window
		}
	}
	var users []budget.Charge
	for _, c := range p.deferred {
		switch {
		case c.Owner.Kind != budget.OwnerOrg:
			users = append(users, c)
		case c.Unit == budget.Month:
			window = c.Window
		}
	}
	if ev == nil {
		return nil, true // a release counts no spend
	}
	if len(window) != 6 {
		return nil, false
	}
	owners, err := pendingOwners(users)
	if err != nil {
		return nil, false
	}
	return append(owners, pendingOwner{fundedOwner(lifetime, month), window}), true
}

// actualCost is what ev cost; 0 for a release (nil).
func actualCost(ev *ledger.Event) int64 {
	if ev == nil {
		return 0
	}
	return int64(ev.Cost)
}

// settleFunded ends r on its ledger alone when allowances paid for it
// (above). done is false when it could not, and nothing was written: the
// caller settles with the counter items' transaction.
func (s *Store) settleFunded(ctx context.Context, r *budget.Reservation, p *ledgerPlan, ev *ledger.Event, what string) (done bool, err error) {
	owners, ok := p.fundedPending(r, ev)
	if !ok {
		return false, nil
	}
	q := *p
	q.pending = owners
	e := q.settleExpression(r, ev)
	cost := actualCost(ev)
	e.cond("contains(" + e.name(entryAttr(r.ID)) + ", " + e.value(str(fundedTag(r.Funded))) + ")")
	e.cond(e.name(attrAllowVer) + " = " + e.value(num(r.Funded)))
	for _, c := range p.others {
		d := e.name(drainedAttr(c.Counter))
		e.cond("attribute_not_exists(" + d + ") OR " + d + " <> " + e.value(num(r.Funded)))
		if back := c.Reserved() - cost; back > 0 {
			e.add(allowAttr(c.Counter), back)
		}
	}
	for attempt := 0; ; attempt++ {
		failed, old, err := s.updateLedger(ctx, p.keyID, e, what)
		if err != nil || !failed {
			return true, err
		}
		if !strings.HasPrefix(getS(old, entryAttr(r.ID)), liveEntry) {
			return true, fmt.Errorf("%s: %w", what, budget.ErrSettled)
		}
		missing := unregistered(old, owners)
		if len(missing) == 0 || attempt >= 3 || !p.givesBack(r, old) {
			return false, nil // the allowance is no longer one: the counters' transaction
		}
		// The key's first such settle since its deferral was opened or
		// closed (deferral.go).
		if err := s.register(ctx, p.keyID, missing); err != nil {
			return true, fmt.Errorf("%s: %w", what, err)
		}
	}
}

// givesBack reports whether the ledger as read (old) would take back what
// r did not spend: its entry was funded under r.Funded, its allowances are
// of that version and no reclaim under it marked them.
func (p *ledgerPlan) givesBack(r *budget.Reservation, old map[string]ddb.AttributeValue) bool {
	if !strings.HasSuffix(getS(old, entryAttr(r.ID)), fundedTag(r.Funded)) || getN(old, attrAllowVer) != r.Funded {
		return false
	}
	for _, c := range p.others {
		if getN(old, drainedAttr(c.Counter)) == r.Funded {
			return false
		}
	}
	return true
}

// returnLeftover gives what keyID's allowance of c (a month that ended)
// held when read back to c's counter item, and removes the allowance, on
// the condition that it still holds that; a settle that gave back to it
// meanwhile leaves it for the next sweep.
func (s *Store) returnLeftover(ctx context.Context, keyID string, c budget.Counter, amount int64) error {
	e := newExpression()
	n := e.name(allowAttr(c))
	e.cond(n + " = " + e.value(num(amount)))
	e.remove(allowAttr(c))
	what := "return the allowance of key " + keyID + " of " + counterSK(c)
	if amount == 0 {
		_, _, err := s.updateLedger(ctx, keyID, e, what)
		return err
	}
	pk, sk := counterKey(budget.OrgOwner(), c)
	err := s.transact(ctx, []ddb.TransactWriteItem{
		{Update: s.ledgerUpdate(keyID, e)},
		{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: key(pk, sk), UpdateExpression: aws.String("ADD v :a"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":a": num(-amount)},
		}},
	}, what)
	if len(conditionsFailed(err)) > 0 {
		return nil
	}
	return err
}

// heldAllowances is what the holders hold, unspent, of the organisation's
// counter (named as counterSK names it).
func (s *Store) heldAllowances(ctx context.Context, counter string, holders []string) (int64, error) {
	where := make([][]place, len(holders))
	for i, h := range holders {
		where[i] = []place{{keyPK(h), skUsage, allowPrefix + counter}}
	}
	vals, _, err := s.readCounters(ctx, where, nil)
	if err != nil {
		return 0, fmt.Errorf("read the allowances of the organisation's %s: %w", counter, err)
	}
	var sum int64
	for _, v := range vals {
		sum += max(v, 0)
	}
	return sum, nil
}
