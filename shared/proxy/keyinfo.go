package proxy

// GET /v1/key/info: a key's own limits, spend and latest requests.

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
)

// limitView is one limit in GET /v1/key/info.
type limitView struct {
	Scope     string `json:"scope"`
	Kind      string `json:"kind"`
	Limit     any    `json:"limit"` // US dollars for spend, a count otherwise
	Used      any    `json:"used"`
	Remaining any    `json:"remaining"`
	ResetsAt  int64  `json:"resetsAt,omitempty"` // unix seconds; absent for lifetime limits
}

// recentEventLimit is how many of its latest events GET /v1/key/info lists.
const recentEventLimit = 20

// keyInfo lets a key's holder read its own limits and spend, and nothing else.
func (h *Handler) keyInfo(w http.ResponseWriter, r *http.Request, key *apikey.Key) error {
	ctx := r.Context()
	usr, org, err := h.owners(ctx, key)
	if err != nil {
		return err
	}
	res := h.plan(ctx, key, usr, org, &request{}, pricing.Price{}, nil, worst{}, &ledger.Event{})
	charges := res.Charges
	// Per-model limits are planned only for a request's model: add each one
	// the key has, as a request for that model would see it.
	type counterID struct {
		owner   budget.Owner
		counter budget.Counter
	}
	seen := map[counterID]bool{}
	for _, c := range charges {
		seen[counterID{c.Owner, c.Counter}] = true
	}
	for _, m := range slices.Sorted(maps.Keys(key.ModelLimits)) {
		for _, c := range h.plan(ctx, key, usr, org, &request{Model: m}, pricing.Price{Model: m}, nil, worst{}, &ledger.Event{}).Charges {
			if id := (counterID{c.Owner, c.Counter}); !seen[id] {
				seen[id] = true
				charges = append(charges, c)
			}
		}
	}
	// Shown: the key's spend and every limit. The spend of a user or an
	// organisation without a limit is not, and may be spread over all
	// their keys' ledgers: a larger read, left out.
	charges = slices.DeleteFunc(charges, func(c budget.Charge) bool { return c.Limit == 0 && c.Owner != budget.KeyOwner(key.ID) })
	vals, err := h.cfg.Limiter.Counters(ctx, charges)
	if err != nil {
		return storeUnavailable(err)
	}
	amount := func(k budget.Kind, v int64) any {
		if k == budget.Spend {
			return money.Nanos(v)
		}
		return v
	}
	out := struct {
		KeyID         string                       `json:"keyId"`
		Name          string                       `json:"name"`
		UserID        string                       `json:"userId,omitempty"`
		Revoked       bool                         `json:"revoked"`
		ExpiresAt     int64                        `json:"expiresAt,omitempty"`
		AllowedModels []string                     `json:"allowedModels"`
		AllowedPaths  []apikey.PathRule            `json:"allowedPaths"`
		ModelLimits   map[string]apikey.ModelLimit `json:"modelLimits"`
		SpendInUsd    money.Nanos                  `json:"spendInUsd"`
		MonthInUsd    money.Nanos                  `json:"spendThisMonthInUsd"`
		Limits        []limitView                  `json:"limits"`
		RecentEvents  []recentEvent                `json:"recentEvents"`
	}{
		KeyID: key.ID, Name: key.Name, UserID: key.UserID, Revoked: key.Revoked, ExpiresAt: key.ExpiresAt,
		AllowedModels: key.AllowedModels, AllowedPaths: key.AllowedPaths, ModelLimits: key.ModelLimits,
		Limits: []limitView{}, RecentEvents: []recentEvent{},
	}
	for i, c := range charges {
		switch {
		case c.Owner == budget.KeyOwner(key.ID) && c.Counter == budget.LifetimeSpend():
			out.SpendInUsd = money.Nanos(vals[i])
		case c.Owner == budget.KeyOwner(key.ID) && c.Counter == budget.MonthSpend(h.cfg.Now()):
			out.MonthInUsd = money.Nanos(vals[i])
		}
		if c.Limit == 0 {
			continue
		}
		v := limitView{Scope: c.Scope, Kind: string(c.Kind), Limit: amount(c.Kind, c.Limit), Used: amount(c.Kind, vals[i]),
			Remaining: amount(c.Kind, remaining(c, vals[i]))}
		if !c.Resets.IsZero() {
			v.ResetsAt = c.Resets.Unix()
		}
		out.Limits = append(out.Limits, v)
	}
	if h.cfg.History != nil {
		evs, err := h.cfg.History.RecentEvents(ctx, key.ID, recentEventLimit)
		if err != nil {
			return storeUnavailable(err)
		}
		for _, ev := range evs {
			out.RecentEvents = append(out.RecentEvents, recentEvent{CreatedAt: ev.CreatedAt / 1000, Model: ev.Model, Path: ev.Path,
				Status: ev.Status, PromptTokens: ev.Usage.PromptTokens, CompletionTokens: ev.Usage.CompletionTokens,
				Cost: ev.Cost, ErrorCode: ev.ErrorCode, CustomID: ev.CustomID})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// recentEvent is one of the key's latest requests in GET /v1/key/info: what
// was asked and what it cost, never the bodies.
type recentEvent struct {
	CreatedAt        int64       `json:"createdAt"` // unix seconds
	Model            string      `json:"model"`
	Path             string      `json:"path"`
	Status           int         `json:"status"`
	PromptTokens     int64       `json:"promptTokens"`
	CompletionTokens int64       `json:"completionTokens"`
	Cost             money.Nanos `json:"costInUsd"`
	ErrorCode        string      `json:"errorCode,omitempty"`
	CustomID         string      `json:"customId,omitempty"`
}
