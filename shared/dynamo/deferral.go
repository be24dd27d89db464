package dynamo

// Deferred spend on the key's ledger. The lifetime and monthly spend of a
// user or of the organisation without a spend limit (deferred charges,
// budget.Plan) is counted, for a key whose reservation is its ledger alone
// (no user or organisation limits), by the settle's UpdateItem of that
// ledger, the write that ends the reservation anyway: such a request writes
// no item of its user or organisation at all. The ledger keeps
//
//	P#<owner pk>#<yyyymm>#<f>   the settled figures (f: pendingFigure) of the
//	                            owner's spend in that month not yet moved to the
//	                            owner's shards; its lifetime is the sum of its months
//	dreg                        the owners it may hold pending spend of (string set)
//	dseq                        how many drains have moved its pending spend
//
// and each such owner has one item that lists those ledgers:
//
//	USER#<id> | ORG, sk DEFERRAL, keys   (string set of key ids)
//
// What holds at every moment:
//   - A ledger holds an owner's pending spend only while dreg names the
//     owner: the settle's condition is contains(dreg, owner). A key's
//     first such settle finds it absent, registers the key (register: dreg
//     and the owner's DEFERRAL list in one transaction) and tries again.
//   - An owner's DEFERRAL list names exactly the ledgers registered for it:
//     only register and a deregistering drain change either, and each
//     changes both in one transaction.
//   - A drain moves pending spend to the owner's shards (shards.go) in one
//     transaction, on the condition that each value it moves is still the
//     one it read (a concurrent settle makes it read again), and counts
//     itself in dseq.
//
// So an owner's counter is its item, plus its shards, plus the pending
// spend on the ledgers its DEFERRAL lists. OwnerTotals reads those ledgers
// before and after the shards and reads again when a drain moved one in
// between; Counters reads them once (headers and estimates).
//
// A limit set on the owner needs the whole of its spend in one place
// before it is checked. A reserve on a user's or the organisation's
// limited lifetime or month reads the owner's DEFERRAL item with the
// counter's shards (readBefore); when it lists keys, the reserve first
// closes the deferral (closeDeferral: drains and deregisters each
// ledger) and reads again. Its keys' requests then reserve on the counter
// (the limit makes their plan a transaction) and nothing is pending. A
// settle planned before the limit was known (a proxy's cached
// configuration, up to KeyTTL) registers its key again, and the next
// limited reserve closes it again: such requests were admitted without the
// limit, as before this layout, and their spend counts once it is drained.
//
// The sweep drains the months that have ended (tidyLedger), so a busy
// ledger carries at most the current month's figures per owner: it stays
// under the 1 KB that one write unit pays for.
//
// Funded spend. A request whose organisation charges were paid from
// allowances of its limits (allowance.go) settles with the ledger's
// UpdateItem too (settleFunded). Its figures wait on the ledger as the
// pending spend of an owner named after the counters the allowances paid
// for: ORG~l (the lifetime), ORG~m (the month) or ORG~lm. Those counters'
// v counted the cost when the allowance was granted, so a drain adds only
// the figures to their shards; the other counter (without a limit, so
// deferred) gets v as well, as the organisation's own pending spend does.
// Each such owner has its own DEFERRAL list. What waits on it is missing
// from the v of the other counter only, which had no limit when the
// request was planned; should that counter have a limit now, a reserve on
// it closes that list as it closes the owner's own (listOwners: ORG~m for
// the lifetime, ORG~l for the month), and its readings add it.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

const (
	skDeferral      = "DEFERRAL"
	attrDeferKeys   = "keys"
	attrDeferOwners = "dreg"
	attrDrains      = "dseq"
	pendingPrefix   = "P#"
	// closeRounds bounds how often a limited reserve closes a deferral
	// that settles planned without the limit keep opening.
	closeRounds = 3
)

// fundedSep separates the organisation's pk from the counters the
// allowances of a funded owner paid for.
const fundedSep = "~"

// fundedOwner is the owner of the pending spend of requests whose
// organisation lifetime and/or month allowances paid for.
func fundedOwner(lifetime, month bool) string {
	f := ""
	if lifetime {
		f += "l"
	}
	if month {
		f += "m"
	}
	return pkOrg + fundedSep + f
}

// fundedOwners are all the owners fundedOwner names.
func fundedOwners() []string {
	return []string{fundedOwner(true, false), fundedOwner(false, true), fundedOwner(true, true)}
}

// drainTarget is the owner whose counters a pending owner's spend moves
// to, and whether the move adds it to the committed value (v) of the
// lifetime and of the month: not for counters an allowance paid for.
func drainTarget(pending string) (owner string, commitLifetime, commitMonth bool) {
	owner, f, ok := strings.Cut(pending, fundedSep)
	if !ok {
		return pending, true, true
	}
	return owner, !strings.Contains(f, "l"), !strings.Contains(f, "m")
}

// listOwners are the owners whose pending spend (on the ledgers their
// DEFERRAL lists name) counts in the committed value of c, a user's or the
// organisation's lifetime or month: c's owner, and for the organisation's
// the funded owner whose allowances paid for the other counter only.
func listOwners(c budget.Charge) []string {
	pk := ownerPK(c.Owner)
	if pk != pkOrg {
		return []string{pk}
	}
	if c.Unit == budget.Lifetime {
		return []string{pk, fundedOwner(false, true)}
	}
	return []string{pk, fundedOwner(true, false)}
}

// commits reports whether the pending spend of owner (a DEFERRAL list's)
// adds to the committed value of a counter of unit u.
func commits(owner string, u budget.Unit) bool {
	_, lifetime, month := drainTarget(owner)
	if u == budget.Lifetime {
		return lifetime
	}
	return month
}

// pendingFigure is the one-letter name, on a ledger, of a settled figure
// (settledFigures); "" for any other name.
func pendingFigure(name string) string {
	switch name {
	case "costNanos":
		return "c"
	case "requests":
		return "n"
	case "successes":
		return "s"
	case "promptTokens":
		return "p"
	case "cachedTokens":
		return "t"
	case "completionTokens":
		return "o"
	case "latencyMs":
		return "l"
	}
	return ""
}

// settledFigure is the settled figure a pendingFigure letter names.
func settledFigure(letter string) string {
	for _, name := range []string{"costNanos", "requests", "successes", "promptTokens", "cachedTokens", "completionTokens", "latencyMs"} {
		if pendingFigure(name) == letter {
			return name
		}
	}
	return ""
}

func pendingAttr(owner, month, letter string) string {
	return pendingPrefix + owner + "#" + month + "#" + letter
}

// parsePending splits a ledger attribute named by pendingAttr.
func parsePending(name string) (owner, month, letter string, ok bool) {
	rest, ok := strings.CutPrefix(name, pendingPrefix)
	if !ok {
		return "", "", "", false
	}
	rest, letter, ok1 := cutLast(rest, "#")
	owner, month, ok2 := cutLast(rest, "#")
	if !ok1 || !ok2 || owner == "" || len(month) != 6 || settledFigure(letter) == "" {
		return "", "", "", false
	}
	return owner, month, letter, true
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// pendingOwner is an owner whose spend a settle counts on the ledger, in
// the month of the reservation's monthly counter.
type pendingOwner struct {
	pk, month string
}

// pendingOwners pairs deferred charges (a reservation on the ledger alone)
// by owner: each owner's lifetime and month are deferred together, since a
// limit on either would make the owner's counters part of the reservation.
func pendingOwners(deferred []budget.Charge) ([]pendingOwner, error) {
	months := map[string]string{}
	lifetimes := map[string]bool{}
	var order []string
	for _, c := range deferred {
		pk := ownerPK(c.Owner)
		if _, seen := months[pk]; !seen && !lifetimes[pk] {
			order = append(order, pk)
		}
		switch {
		case c.Kind == budget.Spend && c.Unit == budget.Lifetime:
			lifetimes[pk] = true
		case c.Kind == budget.Spend && c.Unit == budget.Month && len(c.Window) == 6:
			months[pk] = c.Window
		default:
			return nil, fmt.Errorf("deferred charge %s %s: only a lifetime or a month's spend can be deferred", pk, counterSK(c.Counter))
		}
	}
	out := make([]pendingOwner, 0, len(order))
	for _, pk := range order {
		if !lifetimes[pk] || months[pk] == "" {
			return nil, fmt.Errorf("deferred spend of %s: its lifetime and its month go together", pk)
		}
		out = append(out, pendingOwner{pk, months[pk]})
	}
	return out, nil
}

// addPending adds ev's settled figures to each owner's pending spend on
// the ledger, on the condition that the ledger is registered for it.
func addPending(e *expression, owners []pendingOwner, ev *ledger.Event) {
	for _, o := range owners {
		for _, f := range settledFigures(ev) {
			if f.value != 0 || f.name == "requests" {
				e.add(pendingAttr(o.pk, o.month, pendingFigure(f.name)), f.value)
			}
		}
		e.cond("contains(" + e.name(attrDeferOwners) + ", " + e.value(str(o.pk)) + ")")
	}
}

// unregistered is the owners the ledger (as read) is not registered for.
func unregistered(led map[string]ddb.AttributeValue, owners []pendingOwner) []string {
	var out []string
	for _, o := range owners {
		if !slices.Contains(getSS(led, attrDeferOwners), o.pk) {
			out = append(out, o.pk)
		}
	}
	return out
}

func getSS(item map[string]ddb.AttributeValue, name string) []string {
	if v, ok := item[name].(*ddb.AttributeValueMemberSS); ok {
		return v.Value
	}
	return nil
}

// register lets keyID's ledger hold the pending spend of owners: the
// ledger's dreg and each owner's DEFERRAL list, in one transaction.
func (s *Store) register(ctx context.Context, keyID string, owners []string) error {
	led := newExpression()
	led.addTo(attrDeferOwners, owners...)
	items := []ddb.TransactWriteItem{{Update: s.ledgerUpdate(keyID, led)}}
	for _, o := range owners {
		e := newExpression()
		e.addTo(attrDeferKeys, keyID)
		items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
			TableName: aws.String(s.table), Key: key(o, skDeferral),
			UpdateExpression: aws.String(e.update()), ExpressionAttributeNames: e.namesOrNil(), ExpressionAttributeValues: e.valuesOrNil(),
		}})
	}
	return s.transact(ctx, items, "register the ledger of key "+keyID+" for deferred spend")
}

// pendingSums are one owner's pending figures on one ledger, per month.
type pendingSums struct {
	attrs  map[string]int64            // attribute -> value, as read
	months map[string]map[string]int64 // month -> settled figure -> value
}

// pendingOn reads owner's pending spend from a ledger's item, in the
// months before until (all when until is "").
func pendingOn(led map[string]ddb.AttributeValue, owner, until string) pendingSums {
	ps := pendingSums{attrs: map[string]int64{}, months: map[string]map[string]int64{}}
	for name := range led {
		o, month, letter, ok := parsePending(name)
		if !ok || o != owner || until != "" && month >= until {
			continue
		}
		v := getN(led, name)
		ps.attrs[name] = v
		if ps.months[month] == nil {
			ps.months[month] = map[string]int64{}
		}
		ps.months[month][settledFigure(letter)] += v
	}
	return ps
}

// totals adds the pending figures of month (all months when "") to tot,
// and their cost to its committed value when commit is set.
func (ps pendingSums) totals(month string, commit bool, tot *ledger.Totals) {
	for m, figs := range ps.months {
		if month != "" && m != month {
			continue
		}
		t := totalsOf(figureItem(figs))
		if commit {
			t.Committed = t.Cost
		}
		tot.Add(t)
	}
}

func figureItem(figs map[string]int64) map[string]ddb.AttributeValue {
	item := make(map[string]ddb.AttributeValue, len(figs))
	for name, v := range figs {
		item[name] = num(v)
	}
	return item
}

// drain moves owner's pending spend of the months before until (all of it
// when until is "") from keyID's ledger to the owner's shards, and, when
// deregister is set, takes the ledger off the owner's DEFERRAL list in the
// same transaction, so that it holds none of the owner's spend from then
// on.
func (s *Store) drain(ctx context.Context, keyID, owner, until string, deregister bool) error {
	what := "drain the spend of " + owner + " on the ledger of key " + keyID
	for attempt := 0; attempt < 20; attempt++ {
		led, err := s.getItem(ctx, keyPK(keyID), skUsage, "ledger of key "+keyID)
		if errors.Is(err, ErrNotFound) {
			led, err = map[string]ddb.AttributeValue{}, nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		ps := pendingOn(led, owner, until)
		registered := slices.Contains(getSS(led, attrDeferOwners), owner)
		deregister := deregister && registered
		if len(ps.attrs) == 0 && !deregister {
			return nil
		}
		e := newExpression()
		for _, name := range slices.Sorted(maps.Keys(ps.attrs)) {
			e.remove(name)
			e.cond(e.name(name) + " = " + e.value(num(ps.attrs[name])))
		}
		e.add(attrDrains, 1)
		if deregister {
			e.deleteFrom(attrDeferOwners, owner)
			e.cond("contains(" + e.name(attrDeferOwners) + ", " + e.value(str(owner)) + ")")
		}
		items := []ddb.TransactWriteItem{{Update: s.ledgerUpdate(keyID, e)}}
		if deregister {
			d := newExpression()
			d.deleteFrom(attrDeferKeys, keyID)
			items = append(items, ddb.TransactWriteItem{Update: &ddb.Update{
				TableName: aws.String(s.table), Key: key(owner, skDeferral),
				UpdateExpression: aws.String(d.update()), ExpressionAttributeNames: d.namesOrNil(), ExpressionAttributeValues: d.valuesOrNil(),
			}})
		}
		to, commitLifetime, commitMonth := drainTarget(owner)
		var life ledger.Totals
		for _, month := range slices.Sorted(maps.Keys(ps.months)) {
			var t ledger.Totals
			ps.totals(month, false, &t)
			life.Add(t)
			items = append(items, s.shardAdd(to, budget.Counter{Kind: budget.Spend, Unit: budget.Month, Window: month}, t, commitMonth))
		}
		if len(ps.months) > 0 {
			items = append(items, s.shardAdd(to, budget.LifetimeSpend(), life, commitLifetime))
		}
		err = s.transact(ctx, items, what)
		if len(conditionsFailed(err)) > 0 {
			continue // a settle or another drain moved it: read again
		}
		return err
	}
	return fmt.Errorf("%s: the ledger kept changing", what)
}

// shardAdd adds t's figures to a random shard of owner's counter c, and
// its cost to the shard's committed value when commit is set.
func (s *Store) shardAdd(owner string, c budget.Counter, t ledger.Totals, commit bool) ddb.TransactWriteItem {
	e := newExpression()
	if commit {
		e.add(attrCommitted, int64(t.Cost))
	}
	e.add("costNanos", int64(t.Cost))
	e.add("requests", t.Requests)
	e.add("successes", t.Successes)
	e.add("promptTokens", t.PromptTokens)
	e.add("cachedTokens", t.CachedTokens)
	e.add("completionTokens", t.CompletionTokens)
	e.add("latencyMs", t.LatencyMs)
	return ddb.TransactWriteItem{Update: &ddb.Update{
		TableName: aws.String(s.table), Key: key(owner, shardSK(c, rand.IntN(shardCount))),
		UpdateExpression: aws.String(e.update()), ExpressionAttributeNames: e.namesOrNil(), ExpressionAttributeValues: e.valuesOrNil(),
	}}
}

// deferredKeys is owner's DEFERRAL list (read strongly consistently).
func (s *Store) deferredKeys(ctx context.Context, owner string) ([]string, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: key(owner, skDeferral), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("read the deferred spend of %s: %w", owner, err)
	}
	return getSS(out.Item, attrDeferKeys), nil
}

// closeDeferral drains and deregisters every ledger on keys (owner's
// DEFERRAL list, as read): after it, until a settle registers a key again,
// all of owner's spend is on its counter item and shards.
func (s *Store) closeDeferral(ctx context.Context, owner string, keys []string) error {
	for _, k := range keys {
		if err := s.drain(ctx, k, owner, "", true); err != nil {
			return fmt.Errorf("close the deferred spend of %s: %w", owner, err)
		}
	}
	return nil
}

// withPending returns read's totals of owner's counter (its item and
// shards) plus the pending spend of month ("" for all: the lifetime) on
// the ledgers owner's DEFERRAL lists (and, for the organisation, its funded
// owners' lists), read before and after read: when a drain moved any of
// them in between (dseq), it reads all again, so the sum counts each
// amount once.
func (s *Store) withPending(ctx context.Context, owner, month string, read func() (ledger.Totals, error)) (ledger.Totals, error) {
	listed := []string{owner}
	if owner == pkOrg {
		listed = append(listed, fundedOwners()...)
	}
	for attempt := 0; attempt < 20; attempt++ {
		lists := map[string][]string{}
		var keys []string
		for _, o := range listed {
			ks, err := s.deferredKeys(ctx, o)
			if err != nil {
				return ledger.Totals{}, err
			}
			lists[o] = ks
			for _, k := range ks {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
		if len(keys) == 0 {
			return read()
		}
		before, err := s.ledgers(ctx, keys)
		if err != nil {
			return ledger.Totals{}, err
		}
		tot, err := read()
		if err != nil {
			return ledger.Totals{}, err
		}
		after, err := s.ledgers(ctx, keys)
		if err != nil {
			return ledger.Totals{}, err
		}
		moved := false
		for k, led := range before {
			moved = moved || getN(led, attrDrains) != getN(after[k], attrDrains)
		}
		if moved {
			continue
		}
		for _, o := range listed {
			commit := commits(o, budget.Lifetime)
			if month != "" {
				commit = commits(o, budget.Month)
			}
			for _, k := range lists[o] {
				pendingOn(before[k], o, "").totals(month, commit, &tot)
			}
		}
		return tot, nil
	}
	return ledger.Totals{}, fmt.Errorf("read the spend of %s: drains kept moving it", owner)
}

// ledgers reads the ledgers of keys, by key id.
func (s *Store) ledgers(ctx context.Context, keys []string) (map[string]map[string]ddb.AttributeValue, error) {
	ks := make([]map[string]ddb.AttributeValue, len(keys))
	for i, k := range keys {
		ks[i] = ledgerKey(k)
	}
	out := make(map[string]map[string]ddb.AttributeValue, len(keys))
	err := s.batchGet(ctx, ks, "read ledgers with deferred spend", func(item map[string]ddb.AttributeValue) error {
		out[strings.TrimPrefix(getS(item, attrPK), keyPK(""))] = item
		return nil
	})
	return out, err
}
