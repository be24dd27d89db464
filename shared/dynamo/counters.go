package dynamo

// Counter items: how budget's owners and counters become item keys.
//
//	pk  KEY#<keyId> | USER#<userId> | ORG
//	sk  USAGE                       lifetime spend
//	    SPEND#<unit>#<window>       spend per window (SPEND#mo#<yyyymm>: the month)
//	    REQ#<unit>#<window>         requests per window
//	    RPM#<model>#<window>        requests per minute of one model
//	    TPM#<model>#<window>        tokens per minute of one model
//
// The statements of a month sit beside them (statements.go).

import (
	"fmt"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// ownerPK is the partition key of an owner's counters and statements.
func ownerPK(o budget.Owner) string {
	switch o.Kind {
	case budget.OwnerKey:
		return keyPK(o.ID)
	case budget.OwnerUser:
		return userPK(o.ID)
	case budget.OwnerProvider:
		return providerUsePK(o.ID)
	default:
		return pkOrg
	}
}

// parseOwner reads an owner back from its partition key.
func parseOwner(pk string) (budget.Owner, error) {
	switch {
	case pk == pkOrg:
		return budget.OrgOwner(), nil
	case strings.HasPrefix(pk, keyPK("")):
		return budget.KeyOwner(strings.TrimPrefix(pk, keyPK(""))), nil
	case strings.HasPrefix(pk, userPK("")):
		return budget.UserOwner(strings.TrimPrefix(pk, userPK(""))), nil
	case strings.HasPrefix(pk, providerUsePK("")):
		return budget.ProviderOwner(strings.TrimPrefix(pk, providerUsePK(""))), nil
	}
	return budget.Owner{}, fmt.Errorf("unknown counter owner %q", pk)
}

// Sort-key prefixes of counters.
const (
	skSpend         = "SPEND"
	skRequests      = "REQ"
	skModelRequests = "RPM"
	skModelTokens   = "TPM"
	skTokens        = "TOK"
)

// providerUsePK is the partition of a provider setting's ceiling counters,
// apart from the setting's own item.
func providerUsePK(id string) string { return "PROVIDERUSE#" + id }

// counterSK is the sort key of a counter.
func counterSK(c budget.Counter) string {
	switch {
	case c.Kind == budget.Spend && c.Unit == budget.Lifetime:
		return skUsage
	case c.Kind == budget.Spend:
		return skSpend + "#" + string(c.Unit) + "#" + c.Window
	case c.Model != "" && c.Kind == budget.Tokens:
		return skModelTokens + "#" + c.Model + "#" + c.Window
	case c.Model != "":
		return skModelRequests + "#" + c.Model + "#" + c.Window
	case c.Kind == budget.Tokens:
		return skTokens + "#" + string(c.Unit) + "#" + c.Window
	default:
		return skRequests + "#" + string(c.Unit) + "#" + c.Window
	}
}

// parseCounter reads a counter back from its sort key.
func parseCounter(sk string) (budget.Counter, error) {
	if sk == skUsage {
		return budget.LifetimeSpend(), nil
	}
	prefix, rest, ok1 := strings.Cut(sk, "#")
	i := strings.LastIndex(rest, "#")
	if !ok1 || i < 0 {
		return budget.Counter{}, fmt.Errorf("unknown counter %q", sk)
	}
	mid, window := rest[:i], rest[i+1:]
	switch prefix {
	case skSpend:
		return budget.Counter{Kind: budget.Spend, Unit: budget.Unit(mid), Window: window}, nil
	case skRequests:
		return budget.Counter{Kind: budget.Requests, Unit: budget.Unit(mid), Window: window}, nil
	case skModelRequests:
		return budget.Counter{Kind: budget.Requests, Unit: budget.Minute, Window: window, Model: mid}, nil
	case skTokens:
		return budget.Counter{Kind: budget.Tokens, Unit: budget.Unit(mid), Window: window}, nil
	case skModelTokens:
		return budget.Counter{Kind: budget.Tokens, Unit: budget.Minute, Window: window, Model: mid}, nil
	}
	return budget.Counter{}, fmt.Errorf("unknown counter %q", sk)
}

// counterKey is the pk and sk of the counter a charge is on.
func counterKey(o budget.Owner, c budget.Counter) (pk, sk string) { return ownerPK(o), counterSK(c) }

// chargeKey is the key of the counter item of c.
func chargeKey(c budget.Charge) (pk, sk string) { return counterKey(c.Owner, c.Counter) }

// storedCharge is a charge as a reservation item keeps it (in "data").
type storedCharge struct {
	Owner    string      `json:"owner"` // pk: "KEY#<id>", "USER#<userId>", "ORG"
	Name     string      `json:"name"`  // sk: the counter
	Kind     budget.Kind `json:"kind"`
	Amount   int64       `json:"amount"`
	Limit    int64       `json:"limit,omitempty"`
	Scope    string      `json:"scope"`
	Resets   time.Time   `json:"resets,omitzero"`
	Deferred bool        `json:"deferred,omitempty"`
}

func storeCharge(c budget.Charge) storedCharge {
	pk, sk := counterKey(c.Owner, c.Counter)
	return storedCharge{Owner: pk, Name: sk, Kind: c.Kind, Amount: c.Amount, Limit: c.Limit, Scope: c.Scope, Resets: c.Resets, Deferred: c.Deferred}
}

func loadCharge(s storedCharge) (budget.Charge, error) {
	o, err := parseOwner(s.Owner)
	if err != nil {
		return budget.Charge{}, err
	}
	c, err := parseCounter(s.Name)
	if err != nil {
		return budget.Charge{}, err
	}
	if c.Kind != s.Kind {
		return budget.Charge{}, fmt.Errorf("counter %q counts %s, not %s", s.Name, c.Kind, s.Kind)
	}
	return budget.Charge{Owner: o, Counter: c, Amount: s.Amount, Limit: s.Limit, Scope: s.Scope, Resets: s.Resets, Deferred: s.Deferred}, nil
}

// storedReservation is a reservation as its item keeps it (in "data"):
// deferred charges only as "<owner> <counter>" (their amount is the
// reservation's cost), so that counting a user's and the organisation's
// spend keeps the item within one write unit (1 KB) for most requests.
// Its fields, in this order, are the stored layout: change neither.
type storedReservation struct {
	ID       string         `json:"id"`
	KeyID    string         `json:"keyId"`
	Charges  []storedCharge `json:"charges"`
	Cost     money.Nanos    `json:"cost"`
	Usage    ledger.Usage   `json:"usage"`
	Deadline time.Time      `json:"deadline"`
	Event    ledger.Event   `json:"event"`
	Deferred []string       `json:"deferred,omitempty"`
}
