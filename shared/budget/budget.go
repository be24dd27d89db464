// Package budget decides which counters a request must reserve on before it
// is forwarded, and how much: the plan behind stipend's "no overshoot"
// guarantee. It does no I/O; the storage package applies a plan atomically.
//
// Every window is fixed and aligned to UTC boundaries: a per-minute limit
// counts requests from hh:mm:00 to hh:mm:59, a monthly limit from the 1st,
// 00:00 UTC. Counters are named by their window, so a new window starts from
// zero without anyone resetting anything.
package budget

import (
	"errors"
	"fmt"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// Kind is what a counter counts.
type Kind string

// Kinds of counter.
const (
	Spend    Kind = "spend"    // nano-dollars
	Requests Kind = "requests" // requests
	Tokens   Kind = "tokens"   // prompt + completion tokens
)

// Unit is a window length: s, m, h, d (fixed UTC windows) or mo (calendar
// month, UTC). The empty unit means lifetime: no window.
type Unit string

// Window units.
const (
	Second   Unit = "s"
	Minute   Unit = "m"
	Hour     Unit = "h"
	Day      Unit = "d"
	Month    Unit = "mo"
	Lifetime Unit = ""
)

// ValidRateUnit reports whether u may window a request rate limit.
func ValidRateUnit(u string) bool {
	switch Unit(u) {
	case Second, Minute, Hour, Day:
		return true
	}
	return false
}

// ValidCostUnit reports whether u may window a spend limit.
func ValidCostUnit(u string) bool {
	switch Unit(u) {
	case Minute, Hour, Day, Month:
		return true
	}
	return false
}

// Window returns the fixed UTC window of unit u that contains t, and a
// label naming it. Lifetime has no window: zero times and label "all".
func Window(u Unit, t time.Time) (start, end time.Time, label string) {
	t = t.UTC()
	switch u {
	case Second:
		start = t.Truncate(time.Second)
		return start, start.Add(time.Second), start.Format("20060102T150405")
	case Minute:
		start = t.Truncate(time.Minute)
		return start, start.Add(time.Minute), start.Format("20060102T1504")
	case Hour:
		start = t.Truncate(time.Hour)
		return start, start.Add(time.Hour), start.Format("20060102T15")
	case Day:
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1), start.Format("20060102")
	case Month:
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0), start.Format("200601")
	}
	return time.Time{}, time.Time{}, "all"
}

// MonthLabel names the calendar month (UTC) of t as Window(Month) does.
func MonthLabel(t time.Time) string {
	_, _, l := Window(Month, t)
	return l
}

// OwnerKind is whose counters a charge is on.
type OwnerKind string

// Kinds of owner.
const (
	OwnerKey  OwnerKind = "key"
	OwnerUser OwnerKind = "user"
	OwnerOrg  OwnerKind = "org"
	// OwnerProvider is a provider setting: its ceilings are shared by
	// every key that uses it.
	OwnerProvider OwnerKind = "provider"
)

// Owner is whose counter a charge is on: a key, a user (ID is the key's id
// or the user's id) or the organisation (ID is empty). Storage decides how
// an owner is kept; budget only names it.
type Owner struct {
	Kind OwnerKind
	ID   string
}

// KeyOwner, UserOwner and OrgOwner name the owners of counters.
func KeyOwner(id string) Owner      { return Owner{Kind: OwnerKey, ID: id} }
func UserOwner(userID string) Owner { return Owner{Kind: OwnerUser, ID: userID} }
func OrgOwner() Owner               { return Owner{Kind: OwnerOrg} }

// ProviderOwner is provider setting id's own counters.
func ProviderOwner(id string) Owner { return Owner{Kind: OwnerProvider, ID: id} }

// ProviderCeiling is a provider setting's own per-minute limits (the
// school's tier with the provider), shared by every key that uses it;
// 0 means none.
type ProviderCeiling struct {
	ID       string
	RPM, TPM int64
}

// Counter names one counter of an owner: what it counts, over which window
// (Unit and the window's label, as Window returns it; Lifetime and "" for
// a counter without window) and, for a per-model limit, of which model.
// Counters are compared with ==: two charges on the same Owner and Counter
// are on the same stored counter.
type Counter struct {
	Kind   Kind
	Unit   Unit
	Window string // the window's label; "" for Lifetime
	Model  string // per-model limits only
}

// LifetimeSpend is an owner's lifetime spend counter.
func LifetimeSpend() Counter { return Counter{Kind: Spend, Unit: Lifetime} }

// MonthSpend is an owner's spend counter for the calendar month (UTC) of t.
func MonthSpend(t time.Time) Counter {
	return Counter{Kind: Spend, Unit: Month, Window: MonthLabel(t)}
}

// Charge is one counter a request reserves on: Amount is added if and only
// if the counter stays at or below Limit (0 = no limit: tracked only).
//
// A Deferred charge is not reserved at all: it is a spend counter of a user
// or of the organisation that has no limit on it, counted only when the
// request settles (its actual cost, in the settle's one transaction, so
// exactly once). Its scope's spend is thus always counted, and a limit set
// later is checked against all of it, without every request of the
// organisation writing the one organisation item twice.
type Charge struct {
	Owner Owner
	Counter
	Amount int64
	Limit  int64
	Scope  string    // what the limit is, for messages: "key monthly spend"
	Resets time.Time // end of the window; zero for lifetime
	// Deferred: counted at settle only, never reserved (Limit is 0).
	Deferred bool
}

// Reserved is the amount the reservation added to the counter: Amount, or
// nothing for a deferred charge.
func (c Charge) Reserved() int64 {
	if c.Deferred {
		return 0
	}
	return c.Amount
}

// Fits reports whether Amount can ever fit under Limit.
func (c Charge) Fits() bool { return c.Limit == 0 || c.Amount <= c.Limit }

// RetryAfter is how long until c's window ends (0 for lifetime counters).
func (c Charge) RetryAfter(now time.Time) time.Duration {
	if c.Resets.IsZero() {
		return 0
	}
	return max(c.Resets.Sub(now), time.Second)
}

// Limits is the limits of one owner (a key, a user or the organisation).
// Zero means no limit.
type Limits struct {
	Lifetime     money.Nanos
	PerMonth     money.Nanos
	OverTime     money.Nanos
	OverTimeUnit Unit
	Rate         int64
	RateUnit     Unit
	Models       map[string]apikey.ModelLimit
}

// KeyLimits returns the limits configured on k.
func KeyLimits(k *apikey.Key) Limits {
	return Limits{
		Lifetime: k.CostLimitLifetime, PerMonth: k.CostLimitPerMonth,
		OverTime: k.CostLimitOverTime, OverTimeUnit: Unit(k.CostLimitUnit),
		Rate: k.RateLimitOverTime, RateUnit: Unit(k.RateLimitUnit),
		Models: k.ModelLimits,
	}
}

// Request is what Plan needs to know of one request.
type Request struct {
	KeyID  string
	Key    Limits
	UserID string  // "" when the key has no user
	User   *Limits // nil when the user has no limits (its spend is still counted)
	Org    *Limits // nil when the organisation has no limits (its spend is still counted)
	// Model is the model as requested; Family the price table's entry for
	// it. Model limits match Model first, then Family.
	Model, Family string
	Cost          money.Nanos // worst-case cost
	Tokens        int64       // worst-case prompt + completion tokens
	Now           time.Time
	// Provider is the ceiling of the provider setting the request is sent
	// to, if it has one.
	Provider *ProviderCeiling
}

// Plan returns every counter the request must reserve on. The lifetime and
// monthly spend of the key, of its user and of the organisation are always
// counted, limits or not, so a limit set at any time is checked against all
// the spend of its scope. The key's are reserved (they feed reports and
// statements; one item per key); a user's or the organisation's spend
// counter without a limit is Deferred: counted at settle, never reserved.
func Plan(r Request) []Charge {
	var cs []Charge
	key := KeyOwner(r.KeyID)
	cs = appendSpend(cs, key, "key", r.Key, r.Cost, r.Now, true)
	cs = appendRate(cs, key, "key", r.Key, r.Now)
	if ml, model, ok := modelLimit(r.Key.Models, r.Model, r.Family); ok {
		_, end, label := Window(Minute, r.Now)
		if ml.RPM > 0 {
			cs = append(cs, Charge{Owner: key, Counter: Counter{Kind: Requests, Unit: Minute, Window: label, Model: model}, Amount: 1, Limit: ml.RPM,
				Scope: fmt.Sprintf("requests per minute for %s", model), Resets: end})
		}
		if ml.TPM > 0 {
			cs = append(cs, Charge{Owner: key, Counter: Counter{Kind: Tokens, Unit: Minute, Window: label, Model: model}, Amount: r.Tokens, Limit: ml.TPM,
				Scope: fmt.Sprintf("tokens per minute for %s", model), Resets: end})
		}
	}
	if r.UserID != "" {
		var l Limits
		if r.User != nil {
			l = *r.User
		}
		cs = appendSpend(cs, UserOwner(r.UserID), "user", l, r.Cost, r.Now, false)
		cs = appendRate(cs, UserOwner(r.UserID), "user", l, r.Now)
	}
	if p := r.Provider; p != nil && (p.RPM > 0 || p.TPM > 0) {
		_, end, label := Window(Minute, r.Now)
		if p.RPM > 0 {
			cs = append(cs, Charge{Owner: ProviderOwner(p.ID), Counter: Counter{Kind: Requests, Unit: Minute, Window: label}, Amount: 1, Limit: p.RPM,
				Scope: fmt.Sprintf("provider setting %s requests per minute", p.ID), Resets: end})
		}
		if p.TPM > 0 {
			cs = append(cs, Charge{Owner: ProviderOwner(p.ID), Counter: Counter{Kind: Tokens, Unit: Minute, Window: label}, Amount: r.Tokens, Limit: p.TPM,
				Scope: fmt.Sprintf("provider setting %s tokens per minute", p.ID), Resets: end})
		}
	}
	var org Limits
	if r.Org != nil {
		org = *r.Org
	}
	return appendSpend(cs, OrgOwner(), "organisation", org, r.Cost, r.Now, false)
}

// appendSpend adds owner's lifetime and monthly spend counters (reserved
// when reserve is set or the counter has a limit, Deferred otherwise) and its
// over-time window when it has one.
func appendSpend(cs []Charge, owner Owner, who string, l Limits, cost money.Nanos, now time.Time, reserve bool) []Charge {
	cs = append(cs, Charge{Owner: owner, Counter: LifetimeSpend(), Amount: int64(cost), Limit: int64(l.Lifetime),
		Scope: who + " lifetime spend", Deferred: !reserve && l.Lifetime <= 0})
	_, monthEnd, _ := Window(Month, now)
	monthLimit := l.PerMonth
	overTime := l.OverTime
	if l.OverTimeUnit == Month && overTime > 0 {
		// Both a monthly limit and an over-time limit in months: the
		// stricter one applies to the one monthly counter.
		if monthLimit == 0 || overTime < monthLimit {
			monthLimit = overTime
		}
		overTime = 0
	}
	cs = append(cs, Charge{Owner: owner, Counter: MonthSpend(now), Amount: int64(cost), Limit: int64(monthLimit),
		Scope: who + " monthly spend", Resets: monthEnd, Deferred: !reserve && monthLimit <= 0})
	if overTime > 0 && ValidCostUnit(string(l.OverTimeUnit)) {
		_, end, label := Window(l.OverTimeUnit, now)
		cs = append(cs, Charge{Owner: owner, Counter: Counter{Kind: Spend, Unit: l.OverTimeUnit, Window: label}, Amount: int64(cost), Limit: int64(overTime),
			Scope: fmt.Sprintf("%s spend per %s", who, unitName(l.OverTimeUnit)), Resets: end})
	}
	return cs
}

func appendRate(cs []Charge, owner Owner, who string, l Limits, now time.Time) []Charge {
	if l.Rate <= 0 || !ValidRateUnit(string(l.RateUnit)) {
		return cs
	}
	_, end, label := Window(l.RateUnit, now)
	return append(cs, Charge{Owner: owner, Counter: Counter{Kind: Requests, Unit: l.RateUnit, Window: label}, Amount: 1, Limit: l.Rate,
		Scope: fmt.Sprintf("%s requests per %s", who, unitName(l.RateUnit)), Resets: end})
}

func unitName(u Unit) string {
	switch u {
	case Second:
		return "second"
	case Minute:
		return "minute"
	case Hour:
		return "hour"
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return string(u)
}

func modelLimit(m map[string]apikey.ModelLimit, model, family string) (apikey.ModelLimit, string, bool) {
	if l, ok := m[model]; ok && (l.RPM > 0 || l.TPM > 0) {
		return l, model, true
	}
	if l, ok := m[family]; ok && (l.RPM > 0 || l.TPM > 0) {
		return l, family, true
	}
	return apikey.ModelLimit{}, "", false
}

// FitOutput returns how many output tokens (across n choices) fit in
// remaining after the prompt's worst-case cost, at outPico pico-dollars per
// output token; 0 when none fit.
func FitOutput(remaining, promptCost money.Nanos, outPico int64, n int64) int64 {
	left := int64(remaining - promptCost)
	if left <= 0 || n <= 0 {
		return 0
	}
	if outPico <= 0 {
		return 1 << 30
	}
	// Costs round up per request; keep one nano of slack for it.
	return max((left-1)*1000/outPico/n, 0)
}

// CheckKind names the configuration a reservation depends on.
type CheckKind string

// Configurations a reservation can check.
const (
	CheckKey  CheckKind = "key"
	CheckUser CheckKind = "user"
	CheckOrg  CheckKind = "org"
)

// Check makes a reservation fail with ErrStale when the configuration it was
// planned from changed since it was read: a revoked key or a lowered limit
// takes effect at the next request, not when a cache expires. Version 0
// means "must not exist".
type Check struct {
	Kind    CheckKind
	ID      string
	Version int64
}

// Reservation is what one request reserved before it was forwarded. How it
// is kept until it settles is storage's business.
type Reservation struct {
	ID       string // the request's event id
	KeyID    string
	Checks   []Check
	Charges  []Charge
	Cost     money.Nanos  // worst case reserved
	Usage    ledger.Usage // worst-case tokens behind Cost
	Deadline time.Time
	// Event is recorded, marked incomplete, if the reservation goes stale.
	Event ledger.Event
	// Counted is set by a Reserve that learned them: the counters' values
	// with this reservation included, one per charge (Counted[i] is
	// Charges[i]'s; -1 where not learned). A reserve in a transaction
	// reports the values it read just before, plus its own amounts (a
	// lower bound: concurrent reserves may have added since). It is nil
	// when the store learned none (a transaction that read nothing first,
	// or a reserve whose landing was only found on a retry).
	Counted []int64
	// Funded is set by a Reserve whose store took the organisation's
	// charges from allowances of its limits held for the key: the
	// organisation settings version they were granted under (0: none).
	// The store's Settle and Release read it; nothing else needs to.
	Funded int64
}

// LimitError reports the charge whose limit a reservation would break.
type LimitError struct{ Charge Charge }

func (e *LimitError) Error() string { return "limit reached: " + e.Charge.Scope }

// Reservation errors.
var (
	// ErrStale: a configuration changed since it was read; re-read and retry.
	ErrStale = errors.New("configuration changed")
	// ErrSettled: the reservation was already settled (or never existed).
	ErrSettled = errors.New("reservation already settled")
	// ErrRejected: the store refused the write itself (malformed, too
	// large); retrying cannot help, unlike a timeout or a throttle.
	ErrRejected = errors.New("write rejected by the store")
)
