package dynamo

// The key's ledger: one item per key (pk KEY#<id>, sk USAGE, the item that
// held only the key's lifetime counter before) with everything a
// reservation on the key's own limits needs, so that such a reservation is
// one conditional UpdateItem on one item and its settle one more:
//
//	v, costNanos, requests, successes, promptTokens, cachedTokens,
//	completionTokens, latencyMs   lifetime: committed and settled figures (KeyTotals)
//	cfg                           the key configuration's version, written with every
//	                              change of the key (UpdateKey & co., in one transaction
//	                              with the key item); a reservation's condition checks it,
//	                              so a revocation applies to the very next request
//	ucfg                          the version of the key's user, written by every change
//	                              of that user (UpdateUser, in one transaction with the
//	                              user item) and removed by every change of the key (its
//	                              user may have changed); a reserve planned from a user
//	                              checks it here, so a key with a user but no user limit
//	                              still reserves with one UpdateItem, and a revoked user
//	                              stops at the next request; a reserve that finds it
//	                              absent or older seeds it (seedUserVersion)
//	SPEND#mo#<yyyymm>, SPEND#<u>#<w>, REQ#<u>#<w>, RPM#<model>#<w>, TPM#<model>#<w>
//	                              the committed value of each windowed counter of the key,
//	                              named as the counter items were (counters.go); a new
//	                              window is a new attribute that ADD starts from zero, so
//	                              no condition has to guess the window; a reserve removes
//	                              the windows two and three before its own, the sweep other
//	                              ended windows shorter than a month (months stay, ~30
//	                              bytes each: their committed amount is read afterwards)
//	R#<reservation id>            an open reservation (JSON, "{...}": what its settle and
//	                              the sweep need) or its tombstone ("-<unix ms>"), which
//	                              stops a late copy of a released or abandoned reserve
//	seq                           reservations ever opened (the sweep's change detector)
//	P#<owner>#<yyyymm>#<f>, dreg, dseq
//	                              spend of the key's user and of the organisation
//	                              without limits, and (owner ORG~…) of requests that
//	                              allowances paid for, waiting to reach their shards
//	                              (deferral.go)
//	A#<counter>, av, D#<counter>  allowances of the organisation's limits (allowance.go)
//	gsi3pk, gsi3sk                LEDGERS / <unix ms>#K#<keyId> while reservations are open:
//	                              the sweep's index (the earliest deadline of a period of
//	                              activity, kept while the key stays busy; the sweep
//	                              moves it forward and removes it when none is open).
//	                              gsi3 projects only the keys and "data", which a ledger
//	                              does not have: writes that leave the index attributes
//	                              as they are do not write the index (gsi1 projects
//	                              everything: each ledger write would be written twice)
//
// Reservations that also reserve on a user's or the organisation's counters
// (limits there) put the same ledger update in a transaction with those
// items and the check of the organisation's version (the user's version is
// checked on the ledger, ucfg).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/jsonenc"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

const (
	gsiLedgers  = "LEDGERS" // gsi3 partition of ledgers with open reservations
	attrConfig  = "cfg"
	attrUserCfg = "ucfg"
	attrSeq     = "seq"
	entryPrefix = "R#"
	liveEntry   = "{" // an open reservation's value starts so
	tombEntry   = "-" // a tombstone's: "-<unix ms after which it may go>"
	// tombstoneLife is how long after a released reservation's deadline its
	// tombstone stays: a copy of its reserve can no longer land by then.
	tombstoneLife = time.Hour
	// windowMargin is how long after its end the sweep leaves a window's
	// counter, for clocks that lag.
	windowMargin = 5 * time.Minute
)

func ledgerKey(keyID string) map[string]ddb.AttributeValue { return key(keyPK(keyID), skUsage) }

func entryAttr(id string) string { return entryPrefix + id }

// counterAttr is the ledger attribute of one of the key's counters.
func counterAttr(c budget.Counter) string {
	if c.Kind == budget.Spend && c.Unit == budget.Lifetime {
		return attrCommitted
	}
	return counterSK(c)
}

// ledgerDue is the sweep's index sort key for a ledger due at t.
func ledgerDue(t time.Time, keyID string) string {
	return fmt.Sprintf("%013d#K#%s", t.UnixMilli(), keyID)
}

func tombstoneValue(r *budget.Reservation) string {
	return tombEntry + strconv.FormatInt(r.Deadline.Add(tombstoneLife).UnixMilli(), 10)
}

// ledgerPlan sorts a reservation's charges and checks by where they are
// kept: the key's ledger, other owners' counter items (then the reserve
// and settle are transactions), or nowhere until the event (deferred).
type ledgerPlan struct {
	keyID     string
	keyCheck  *budget.Check   // the key's version, checked on the ledger
	userCheck *budget.Check   // the user's version, checked on the ledger (ucfg)
	checks    []budget.Check  // other versions: condition checks in a transaction
	own       []budget.Charge // the key's charges
	others    []budget.Charge // reserved charges of users and the organisation
	deferred  []budget.Charge // counted at settle, never reserved
	// pending is the owners of deferred, when the ledger is the
	// reservation's only item: its settle counts their spend on the
	// ledger (deferral.go); otherwise the settle's transaction counts it
	// on their shards.
	pending []pendingOwner
}

func splitReservation(r *budget.Reservation) (*ledgerPlan, error) {
	p := &ledgerPlan{keyID: r.KeyID}
	if p.keyID == "" {
		for _, c := range r.Charges {
			if c.Owner.Kind == budget.OwnerKey {
				p.keyID = c.Owner.ID
				break
			}
		}
	}
	if p.keyID == "" {
		return nil, fmt.Errorf("reservation %s: no key", r.ID)
	}
	for _, c := range r.Charges {
		switch {
		case c.Deferred:
			p.deferred = append(p.deferred, c)
		case c.Owner == budget.KeyOwner(p.keyID):
			p.own = append(p.own, c)
		default:
			p.others = append(p.others, c)
		}
	}
	for i, c := range r.Checks {
		if c.Kind == budget.CheckKey && c.ID == p.keyID && c.Version > 0 && p.keyCheck == nil {
			p.keyCheck = &r.Checks[i]
			continue
		}
		if c.Kind == budget.CheckUser && c.Version > 0 && p.userCheck == nil {
			p.userCheck = &r.Checks[i]
			continue
		}
		p.checks = append(p.checks, c)
	}
	if len(p.others) == 0 && len(p.deferred) > 0 {
		var err error
		if p.pending, err = pendingOwners(p.deferred); err != nil {
			return nil, fmt.Errorf("reservation %s: %w", r.ID, err)
		}
	}
	return p, nil
}

// single reports whether the reservation is the key's alone: one item.
func (p *ledgerPlan) single() bool { return len(p.others) == 0 && len(p.checks) == 0 }

// ledgerEntry is an open reservation as its R#<id> attribute keeps it:
// small (about 200 bytes), because every write of the ledger costs a unit
// per KB of the whole item. Field names are short and empty fields left
// out; the event skeleton keeps what the request's own event would carry
// before the response (the id and key are the entry's).
type ledgerEntry struct {
	Deadline int64          `json:"d"` // unix ms
	Cost     money.Nanos    `json:"c"`
	Usage    entryUsage     `json:"u"`
	Own      []entryCharge  `json:"k,omitempty"`
	Others   []storedCharge `json:"o,omitempty"`
	Deferred []string       `json:"f,omitempty"` // "<owner> <counter>", amount Cost
	Event    entryEvent     `json:"e"`
	// Funded is budget.Reservation.Funded. Last, so that the settle's
	// condition can find it at the end of the entry (fundedTag).
	Funded int64 `json:"F,omitempty"`
}

type entryCharge struct {
	Name   string `json:"n"` // the counter (counterSK)
	Amount int64  `json:"a"`
}

type entryUsage struct {
	Prompt     int64 `json:"p,omitempty"`
	Cached     int64 `json:"c,omitempty"`
	Completion int64 `json:"o,omitempty"`
	CacheWrite int64 `json:"w,omitempty"`
}

type entryEvent struct {
	UserID         string `json:"u,omitempty"`
	ProviderID     string `json:"p,omitempty"`
	Model          string `json:"m,omitempty"`
	Path           string `json:"a,omitempty"`
	Method         string `json:"h,omitempty"`
	Stream         bool   `json:"s,omitempty"`
	CustomID       string `json:"i,omitempty"`
	CreatedAt      int64  `json:"t,omitempty"`
	RequestedModel string `json:"r,omitempty"`
	Status         int    `json:"x,omitempty"`
}

// appendJSON appends en's JSON to b: the bytes encoding/json's Marshal
// writes for it (TestEntryJSON holds it to that), without reflection but
// for the charges of other owners, which a key without user or
// organisation limits has none of.
func (en *ledgerEntry) appendJSON(b []byte) ([]byte, error) {
	o := jsonenc.Open(b)
	o.Int("d", en.Deadline)
	o.Name("c")
	o.B = en.Cost.Append(o.B)
	o.Name("u")
	u := jsonenc.Open(o.B)
	for _, f := range [...]struct {
		name string
		n    int64
	}{{"p", en.Usage.Prompt}, {"c", en.Usage.Cached}, {"o", en.Usage.Completion}, {"w", en.Usage.CacheWrite}} {
		if f.n != 0 {
			u.Int(f.name, f.n)
		}
	}
	o.B = u.Close()
	if len(en.Own) > 0 {
		o.Name("k")
		o.B = jsonenc.Array(o.B, en.Own, func(b []byte, c entryCharge) []byte {
			co := jsonenc.Open(b)
			co.String("n", c.Name)
			co.Int("a", c.Amount)
			return co.Close()
		})
	}
	if len(en.Others) > 0 {
		others, err := json.Marshal(en.Others)
		if err != nil {
			return nil, err
		}
		o.Name("o")
		o.B = append(o.B, others...)
	}
	if len(en.Deferred) > 0 {
		o.Name("f")
		o.B = jsonenc.Array(o.B, en.Deferred, jsonenc.String)
	}
	o.Name("e")
	ev, e := jsonenc.Open(o.B), &en.Event
	for _, f := range [...]struct{ name, s string }{{"u", e.UserID}, {"p", e.ProviderID}, {"m", e.Model}, {"a", e.Path}, {"h", e.Method}} {
		if f.s != "" {
			ev.String(f.name, f.s)
		}
	}
	if e.Stream {
		ev.Bool("s", true)
	}
	if e.CustomID != "" {
		ev.String("i", e.CustomID)
	}
	if e.CreatedAt != 0 {
		ev.Int("t", e.CreatedAt)
	}
	if e.RequestedModel != "" {
		ev.String("r", e.RequestedModel)
	}
	if e.Status != 0 {
		ev.Int("x", int64(e.Status))
	}
	o.B = ev.Close()
	if en.Funded != 0 {
		o.Int("F", en.Funded)
	}
	return o.Close(), nil
}

func encodeEntry(r *budget.Reservation, p *ledgerPlan) (string, error) {
	u, ev := r.Usage, r.Event
	en := ledgerEntry{
		Deadline: r.Deadline.UnixMilli(), Cost: r.Cost,
		Usage: entryUsage{Prompt: u.PromptTokens, Cached: u.CachedTokens, Completion: u.CompletionTokens, CacheWrite: u.CacheWriteTokens},
		Event: entryEvent{UserID: ev.UserID, ProviderID: ev.ProviderID, Model: ev.Model, Path: ev.Path, Method: ev.Method,
			Stream: ev.Stream, CustomID: ev.CustomID, CreatedAt: ev.CreatedAt, RequestedModel: ev.RequestedModel, Status: ev.Status},
		Funded: r.Funded,
	}
	for _, c := range p.own {
		en.Own = append(en.Own, entryCharge{Name: counterSK(c.Counter), Amount: c.Amount})
	}
	for _, c := range p.others {
		sc := storeCharge(c)
		sc.Scope, sc.Limit = "", 0
		en.Others = append(en.Others, sc)
	}
	for _, c := range p.deferred {
		pk, sk := counterKey(c.Owner, c.Counter)
		en.Deferred = append(en.Deferred, pk+" "+sk)
	}
	b, err := en.appendJSON(make([]byte, 0, 512))
	if err != nil {
		return "", fmt.Errorf("encode reservation %s: %w", r.ID, err)
	}
	return string(b), nil
}

func decodeEntry(keyID, id, data string) (*budget.Reservation, error) {
	var en ledgerEntry
	if err := json.Unmarshal([]byte(data), &en); err != nil {
		return nil, fmt.Errorf("decode reservation %s of key %s: %w", id, keyID, err)
	}
	e := en.Event
	r := &budget.Reservation{ID: id, KeyID: keyID, Cost: en.Cost, Deadline: time.UnixMilli(en.Deadline), Funded: en.Funded,
		Usage: ledger.Usage{PromptTokens: en.Usage.Prompt, CachedTokens: en.Usage.Cached, CompletionTokens: en.Usage.Completion, CacheWriteTokens: en.Usage.CacheWrite},
		Event: ledger.Event{ID: id, KeyID: keyID, UserID: e.UserID, ProviderID: e.ProviderID, Model: e.Model, Path: e.Path, Method: e.Method,
			Stream: e.Stream, CustomID: e.CustomID, CreatedAt: e.CreatedAt, RequestedModel: e.RequestedModel, Status: e.Status}}
	r.Event.Usage, r.Event.Cost = r.Usage, r.Cost
	for _, ec := range en.Own {
		c, err := parseCounter(ec.Name)
		if err != nil {
			return nil, fmt.Errorf("reservation %s: %w", id, err)
		}
		r.Charges = append(r.Charges, budget.Charge{Owner: budget.KeyOwner(keyID), Counter: c, Amount: ec.Amount})
	}
	for _, sc := range en.Others {
		c, err := loadCharge(sc)
		if err != nil {
			return nil, fmt.Errorf("reservation %s: %w", id, err)
		}
		r.Charges = append(r.Charges, c)
	}
	for _, d := range en.Deferred {
		owner, name, ok := strings.Cut(d, " ")
		if !ok {
			return nil, fmt.Errorf("reservation %s: deferred charge %q", id, d)
		}
		c, err := loadCharge(storedCharge{Owner: owner, Name: name, Kind: budget.Spend, Amount: int64(en.Cost), Deferred: true})
		if err != nil {
			return nil, fmt.Errorf("reservation %s: %w", id, err)
		}
		r.Charges = append(r.Charges, c)
	}
	return r, nil
}

// amounts sums charges per ledger attribute, in a stable order (two charges
// on one attribute would make an invalid update).
func amounts(cs []budget.Charge, amount func(budget.Charge) (int64, bool)) ([]string, map[string]int64) {
	var names []string
	sums := map[string]int64{}
	for _, c := range cs {
		a, ok := amount(c)
		if !ok {
			continue
		}
		n := counterAttr(c.Counter)
		if _, seen := sums[n]; !seen {
			names = append(names, n)
		}
		sums[n] += a
	}
	return names, sums
}

// reserveExpression adds r's amounts to the key's counters on the condition
// that r is new, the key's version is the one planned from and each limit
// holds, and opens r's entry.
func (p *ledgerPlan) reserveExpression(r *budget.Reservation, entry string) *expression {
	e := newExpression()
	ea := e.name(entryAttr(r.ID))
	e.set(ea + " = " + e.value(str(entry)))
	e.set(e.name(attrGSI3PK) + " = " + e.value(str(gsiLedgers)))
	gs := e.name(attrGSI3SK)
	e.set(gs + " = if_not_exists(" + gs + ", " + e.value(str(ledgerDue(r.Deadline, p.keyID))) + ")")
	e.add(attrSeq, 1)
	e.cond("attribute_not_exists(" + ea + ")")
	// The fold's fence (fold.go): a reservation older than it is refused.
	fw := e.name(attrFence)
	e.cond("attribute_not_exists(" + fw + ") OR " + fw + " <= " + e.value(num(r.Event.CreatedAt)))
	if p.keyCheck != nil {
		e.cond(e.name(attrConfig) + " = " + e.value(num(p.keyCheck.Version)))
	}
	if p.userCheck != nil {
		e.cond(e.name(attrUserCfg) + " = " + e.value(num(p.userCheck.Version)))
	}
	names, sums := amounts(p.own, func(c budget.Charge) (int64, bool) { return c.Amount, true })
	for _, n := range names {
		e.add(n, sums[n])
	}
	for _, n := range oldWindows(p.own, sums) {
		e.remove(n)
	}
	for _, c := range p.own {
		if c.Limit > 0 {
			n := e.name(counterAttr(c.Counter))
			// Conditions cannot add, so the headroom is computed here.
			e.cond("attribute_not_exists(" + n + ") OR " + n + " <= " + e.value(num(c.Limit-c.Amount)))
		}
	}
	e.updated = func(item map[string]ddb.AttributeValue) { r.Counted = p.counted(r, item) }
	return e
}

// counted reads the key's own counters of r from the attributes its
// reserve wrote (budget.Reservation.Counted).
func (p *ledgerPlan) counted(r *budget.Reservation, item map[string]ddb.AttributeValue) []int64 {
	out := make([]int64, len(r.Charges))
	for i, c := range r.Charges {
		out[i] = -1
		if c.Deferred || c.Owner != budget.KeyOwner(p.keyID) {
			continue
		}
		if _, ok := item[counterAttr(c.Counter)]; ok {
			out[i] = getN(item, counterAttr(c.Counter))
		}
	}
	return out
}

// windowLength is the length of the fixed windows of u shorter than a month.
var windowLength = map[budget.Unit]time.Duration{
	budget.Second: time.Second, budget.Minute: time.Minute, budget.Hour: time.Hour, budget.Day: 24 * time.Hour,
}

// oldWindows names the attributes of the windows two and three before each
// windowed charge's, which the reserve removes so that a busy key's ledger
// does not grow by a window a minute between sweeps. No reserve reads them
// any more unless its clock lags by more than a whole window; a settle that
// comes later only recreates one, for the sweep to remove.
func oldWindows(cs []budget.Charge, written map[string]int64) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range cs {
		d, ok := windowLength[c.Unit]
		if !ok || c.Resets.IsZero() {
			continue
		}
		for back := 3; back <= 4; back++ {
			_, _, label := budget.Window(c.Unit, c.Resets.Add(-time.Duration(back)*d))
			old := c.Counter
			old.Window = label
			n := counterAttr(old)
			if _, adding := written[n]; !adding && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// Why a ledger's condition failed, read from its old image.
var (
	errUnseeded   = errors.New("ledger has no configuration version yet")
	errUserBehind = errors.New("ledger has no or an older version of the key's user")
	errAbandoned  = fmt.Errorf("reservation abandoned: %w", budget.ErrSettled)
	errLanded     = errors.New("reservation already stored")
	errRace       = errors.New("ledger changed between the write and its check")
	errFenced     = errors.New("reservation created before the fold's fence (its reserve came too late, or its clock lags)")
)

// refusal explains a failed reserve condition from the ledger's old image:
// errLanded (an earlier attempt of this reserve was stored), errAbandoned, errFenced,
// errUnseeded, errUserBehind, budget.ErrStale, a *budget.LimitError, or errRace when the
// condition would hold now (concurrent settles moved the counters).
func (p *ledgerPlan) refusal(r *budget.Reservation, old map[string]ddb.AttributeValue) error {
	if v := getS(old, entryAttr(r.ID)); v != "" {
		if strings.HasPrefix(v, tombEntry) {
			return errAbandoned
		}
		return errLanded
	}
	if _, ok := old[attrFence]; ok && getN(old, attrFence) > r.Event.CreatedAt {
		return errFenced
	}
	if p.keyCheck != nil {
		if _, ok := old[attrConfig]; !ok {
			return errUnseeded
		}
		if getN(old, attrConfig) != p.keyCheck.Version {
			return budget.ErrStale
		}
	}
	if p.userCheck != nil {
		_, ok := old[attrUserCfg]
		switch v := getN(old, attrUserCfg); {
		case !ok || v < p.userCheck.Version:
			return errUserBehind
		case v > p.userCheck.Version:
			return budget.ErrStale
		}
	}
	for _, c := range p.own {
		if _, ok := old[counterAttr(c.Counter)]; c.Limit > 0 && ok && getN(old, counterAttr(c.Counter)) > c.Limit-c.Amount {
			return &budget.LimitError{Charge: c}
		}
	}
	return errRace
}

// settleExpression ends r on the ledger: its entry goes (settle; a
// tombstone replaces it when ev is nil: a release), each counter of the key
// moves from the reserved amount to the actual one (requests stay counted),
// and the lifetime's settled figures grow, and so does the pending spend of
// the owners deferred to the ledger (deferral.go). Its condition is that r
// is open and, for those owners, that the ledger is registered for them.
func (p *ledgerPlan) settleExpression(r *budget.Reservation, ev *ledger.Event) *expression {
	e := newExpression()
	ea := e.name(entryAttr(r.ID))
	e.cond("begins_with(" + ea + ", " + e.value(str(liveEntry)) + ")")
	var cost, tokens int64
	if ev == nil {
		e.set(ea + " = " + e.value(str(tombstoneValue(r))))
	} else {
		e.remove(entryAttr(r.ID))
		cost, tokens = int64(ev.Cost), ev.Usage.Total()
	}
	names, sums := amounts(p.own, func(c budget.Charge) (int64, bool) {
		switch c.Kind {
		case budget.Spend:
			return cost - c.Amount, true
		case budget.Tokens:
			return tokens - c.Amount, true
		}
		return 0, false // a request stays counted
	})
	for _, n := range names {
		e.add(n, sums[n])
	}
	if ev != nil {
		for _, f := range settledFigures(ev) {
			e.add(f.name, f.value)
		}
		addPending(e, p.pending, ev)
	}
	return e
}

type figure struct {
	name  string
	value int64
}

// settledFigures are what a settled request adds to a spend counter.
func settledFigures(ev *ledger.Event) []figure {
	success := int64(0)
	if ev.Success() {
		success = 1
	}
	return []figure{
		{"costNanos", int64(ev.Cost)}, {"requests", 1}, {"successes", success},
		{"promptTokens", ev.Usage.PromptTokens}, {"cachedTokens", ev.Usage.CachedTokens},
		{"completionTokens", ev.Usage.CompletionTokens}, {"latencyMs", ev.LatencyMs},
	}
}

// updateLedger applies e to keyID's ledger. When e's condition fails it
// returns failed and the ledger as it was (empty when absent).
func (s *Store) updateLedger(ctx context.Context, keyID string, e *expression, what string) (failed bool, old map[string]ddb.AttributeValue, err error) {
	in := updateItemInput(s.ledgerUpdate(keyID, e))
	if e.updated != nil {
		in.ReturnValues = ddb.ReturnValueUpdatedNew
	}
	out, err := s.db.UpdateItem(ctx, in)
	if out != nil {
		s.accountOne(out.ConsumedCapacity)
	}
	var ccf *ddb.ConditionalCheckFailedException
	switch {
	case err == nil:
		if e.updated != nil {
			e.updated(out.Attributes)
		}
		return false, nil, nil
	case errors.As(err, &ccf):
		if ccf.Item == nil {
			ccf.Item = map[string]ddb.AttributeValue{}
		}
		return true, ccf.Item, nil
	case permanent(err):
		return false, nil, fmt.Errorf("%s: %w: %w", what, budget.ErrRejected, err)
	}
	return false, nil, fmt.Errorf("%s: %w", what, err)
}

func (s *Store) ledgerUpdate(keyID string, e *expression) *ddb.Update {
	u := &ddb.Update{
		TableName: aws.String(s.table), Key: ledgerKey(keyID),
		UpdateExpression: aws.String(e.update()), ConditionExpression: e.condition(),
		ExpressionAttributeNames: e.namesOrNil(), ExpressionAttributeValues: e.valuesOrNil(),
	}
	if u.ConditionExpression != nil {
		u.ReturnValuesOnConditionCheckFailure = ddb.ReturnValuesOnConditionCheckFailureAllOld
	}
	return u
}

// updateItemInput is u as one UpdateItem call.
func updateItemInput(u *ddb.Update) *ddb.UpdateItemInput {
	return &ddb.UpdateItemInput{
		TableName: u.TableName, Key: u.Key, UpdateExpression: u.UpdateExpression, ConditionExpression: u.ConditionExpression,
		ExpressionAttributeNames: u.ExpressionAttributeNames, ExpressionAttributeValues: u.ExpressionAttributeValues,
		ReturnValuesOnConditionCheckFailure: u.ReturnValuesOnConditionCheckFailure,
	}
}

// tidyLedger reads one ledger found by the sweep's index (item, as a
// consistent read returned it): it returns the open reservations whose deadline has
// passed, removes tombstones past their time and counters of windows that
// ended more than windowMargin ago, months apart (a settle that comes later only
// recreates an ended window's attribute, which no reserve reads), drains the
// pending spend of months that ended to its owners' shards (deferral.go), and moves
// the index to the earliest deadline still open — unless a reservation was
// opened since the item was read (seq changed) — or removes it when none is
// open. Expired reservations keep the index in the past until settled.
func (s *Store) tidyLedger(ctx context.Context, keyID string, item map[string]ddb.AttributeValue, now time.Time) ([]*budget.Reservation, error) {
	var stale []*budget.Reservation
	var next, past time.Time
	var leftovers []budget.Counter // allowances of months that ended
	// endedMonth parses a month's counter that ended more than
	// windowMargin ago.
	endedMonth := func(counter string) (budget.Counter, bool) {
		c, err := parseCounter(counter)
		if err != nil || c.Unit != budget.Month {
			return c, false
		}
		end, ok := windowEnd(c.Unit, c.Window)
		return c, ok && end.Add(windowMargin).Before(now)
	}
	clean := newExpression()
	for name := range item {
		if id, ok := strings.CutPrefix(name, entryPrefix); ok {
			val := getS(item, name)
			if until, ok := strings.CutPrefix(val, tombEntry); ok {
				if ms, err := strconv.ParseInt(until, 10, 64); err == nil && ms < now.UnixMilli() {
					clean.remove(name)
				}
				continue
			}
			r, err := decodeEntry(keyID, id, val)
			if err != nil {
				return nil, err
			}
			if r.Deadline.Before(now) {
				stale = append(stale, r)
				if past.IsZero() || r.Deadline.Before(past) {
					past = r.Deadline
				}
			} else if next.IsZero() || r.Deadline.Before(next) {
				next = r.Deadline
			}
			continue
		}
		if rest, ok := strings.CutPrefix(name, drainedPrefix); ok {
			if _, ok := endedMonth(rest); ok {
				clean.remove(name)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(name, allowPrefix); ok {
			if c, ok := endedMonth(rest); ok {
				leftovers = append(leftovers, c)
			}
			continue
		}
		c, err := parseCounter(name)
		if err != nil || c.Unit == budget.Lifetime || c.Unit == budget.Month {
			continue // months stay: a month's committed amount is read after it ends
		}
		if end, ok := windowEnd(c.Unit, c.Window); ok && end.Add(windowMargin).Before(now) {
			clean.remove(name)
		}
	}
	sort.Slice(stale, func(i, j int) bool { return stale[i].Deadline.Before(stale[j].Deadline) })
	if len(clean.removes) > 0 {
		if _, _, err := s.updateLedger(ctx, keyID, clean, "tidy the ledger of key "+keyID); err != nil {
			return nil, err
		}
	}
	// What allowances of months that ended still hold goes back to their
	// counters, so that the month's committed figure is what it spent.
	for _, c := range leftovers {
		if err := s.returnLeftover(ctx, keyID, c, getN(item, allowAttr(c))); err != nil {
			return nil, err
		}
	}
	// Months that ended move to their owners' shards (deferral.go).
	_, _, month := budget.Window(budget.Month, now)
	for _, owner := range getSS(item, attrDeferOwners) {
		if len(pendingOn(item, owner, month).attrs) > 0 {
			if err := s.drain(ctx, keyID, owner, month, false); err != nil {
				return nil, err
			}
		}
	}
	idx := newExpression()
	seen := getS(item, attrGSI3SK)
	idx.cond(idx.name(attrGSI3SK) + " = " + idx.value(str(seen)))
	if _, ok := item[attrSeq]; ok {
		idx.cond(idx.name(attrSeq) + " = " + idx.value(num(getN(item, attrSeq))))
	} else {
		idx.cond("attribute_not_exists(" + idx.name(attrSeq) + ")")
	}
	switch due := past; {
	case due.IsZero() && next.IsZero():
		// The ledger leaves the index, the fold's list of keys with
		// traffic, only once all its events are folded (fold.go).
		if complete, err := s.FoldKey(ctx, keyID, now); err != nil || !complete {
			return stale, err
		}
		idx.remove(attrGSI3PK)
		idx.remove(attrGSI3SK)
	default:
		if due.IsZero() {
			due = next
		}
		if ledgerDue(due, keyID) == seen {
			return stale, nil
		}
		idx.set(idx.name(attrGSI3SK) + " = " + idx.value(str(ledgerDue(due, keyID))))
	}
	// A failed condition means the ledger moved on: the next sweep looks again.
	if _, _, err := s.updateLedger(ctx, keyID, idx, "index the ledger of key "+keyID); err != nil {
		return nil, err
	}
	return stale, nil
}

// windowEnd is when the window labelled label (as budget.Window names it)
// of unit u ends.
func windowEnd(u budget.Unit, label string) (time.Time, bool) {
	layout, ok := map[budget.Unit]string{
		budget.Second: "20060102T150405", budget.Minute: "20060102T1504", budget.Hour: "20060102T15",
		budget.Day: "20060102", budget.Month: "200601",
	}[u]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(layout, label)
	if err != nil {
		return time.Time{}, false
	}
	_, end, _ := budget.Window(u, t)
	return end, true
}
