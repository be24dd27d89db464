package proxy

// Admission: a request is forwarded only once its worst case is reserved on
// every limit that applies to it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/user"
)

// Limiter reserves a request's worst case on every counter that applies
// before it is forwarded, and settles it to the actual cost afterwards.
//
// Reserve fails with a *budget.LimitError or budget.ErrStale when nothing
// was written; any other error leaves its outcome unknown, and the request,
// answered 503, is then Abandoned: afterwards nothing of it is charged, even
// if the reserve lands later. Settle, Release and Abandon are retried until
// they succeed: they return budget.ErrSettled when the reservation had
// already ended (an earlier attempt committed unseen) and
// budget.ErrRejected when no retry can help.
type Limiter interface {
	Reserve(ctx context.Context, r *budget.Reservation) error
	Settle(ctx context.Context, r *budget.Reservation, ev *ledger.Event) error
	Release(ctx context.Context, r *budget.Reservation) error
	Abandon(ctx context.Context, r *budget.Reservation) error
	Counters(ctx context.Context, charges []budget.Charge) ([]int64, error)
}

// Owners finds a key's user and the organisation's settings. An unknown user
// is an error with a NotFound() bool method.
type Owners interface {
	GetUser(ctx context.Context, userID string) (*user.User, error)
	GetOrg(ctx context.Context) (*user.Org, error)
}

// maxOutputFallback bounds output for a model whose price entry names no
// maximum: large, so the reservation stays an upper bound.
const maxOutputFallback = 100_000

// promptUsage is the worst case's prompt alone.
func (w worst) promptUsage() ledger.Usage {
	u := w.usage
	u.CompletionTokens = 0
	return u
}

// worst is a request's worst-case usage and cost.
type worst struct {
	prompt, output, choices int64
	usage                   ledger.Usage
	cost                    money.Nanos
}

// promptTokens counts the prompt with the tokenizer, conservatively: never
// below what the provider bills.
func (h *Handler) promptTokens(path string, body []byte, price pricing.Price) (int64, error) {
	n, err := h.cfg.Tokenizer.Prompt(price.Encoding, path, body)
	if err != nil {
		return 0, inputError(err) // request.go
	}
	return price.BoundTokens(n), nil
}

// worstCase prices prompt tokens plus every choice running to its output
// cap, or to the model's maximum output when the request sets none.
func worstCase(path string, req *request, body []byte, prompt int64, price pricing.Price) worst {
	w := worst{prompt: prompt, choices: req.choices()}
	if generates(path) {
		limit := price.MaxOutputTokens
		if limit <= 0 {
			limit = maxOutputFallback
		}
		w.output = req.maxOutput()
		if w.output <= 0 || w.output > limit {
			w.output = limit
		}
	}
	w.usage = worstPrompt(prompt, price, body)
	w.usage.CompletionTokens = w.output * w.choices
	w.cost = price.Cost(w.usage)
	return w
}

// worstPrompt is the costliest way the provider may bill a prompt of n
// tokens: all of it written to the prompt cache when cache writes cost more
// than plain input (Anthropic's 1.25x), for one hour (2x) when the body may
// ask for that (it mentions "1h"), else all of it as plain input.
func worstPrompt(n int64, price pricing.Price, body []byte) ledger.Usage {
	u := ledger.Usage{PromptTokens: n}
	if price.CacheWrite > price.Input {
		u.CacheWriteTokens = n
		if bytes.Contains(body, []byte(`"1h"`)) && price.CacheWrite1h > price.CacheWrite {
			u.CacheWrite1hTokens = n
		}
	}
	return u
}

// admission is the outcome of reserving: the reservation, and the request
// body (rewritten when max tokens were lowered).
type admission struct {
	res     *budget.Reservation
	body    []byte
	lowered int64 // the new output cap, when stipend lowered it
	// key is the key's configuration the reservation was made with: read
	// again when the one the request started with was stale, so the rest
	// of the request (moderation, its strike limit) follows it.
	key *apikey.Key
}

// admit loads the key's user and the organisation, plans the request's
// charges and reserves them. When the spend does not fit and the key allows
// it, it lowers the output cap to what the remaining budget can pay for.
//
// The store's part, from reading the user to the reservation, is bounded
// by ctx (forward: Config.ReserveTimeout for all the store's work before
// forwarding): when the store stalls the client gets its 503 soon. A
// reserve that ran out of time may still land: its 503 is a
// *pendingRelease, and the handler abandons the reservation once the client
// has its answer.
func (h *Handler) admit(ctx context.Context, r *http.Request, key *apikey.Key, req *request, body []byte, price pricing.Price, ceiling *budget.ProviderCeiling, ev *ledger.Event) (*admission, error) {
	adm := &admission{body: body}
	// Lowering the output cap changes the body but not the prompt: count once.
	prompt, err := h.promptTokens(r.URL.Path, body, price)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		usr, org, err := h.owners(ctx, key)
		if err != nil {
			return nil, err
		}
		w := worstCase(r.URL.Path, req, adm.body, prompt, price)
		res := h.plan(r.Context(), key, usr, org, req, price, ceiling, w, ev)
		err = h.cfg.Limiter.Reserve(ctx, res)
		if err == nil {
			// The places left in the key's window, and at the last one
			// the requests after it refused here, not by the store
			// (refusals.go).
			h.fullWindows.reserved(key, res, h.cfg.Now())
			adm.res, adm.key = res, key
			return adm, nil
		}
		var le *budget.LimitError
		switch {
		case errors.Is(err, budget.ErrStale) && attempt < 3:
			// Something changed (revoked, new limits): read it again.
			h.keys.Forget(key.ID)
			h.users.Forget(key.UserID)
			h.org.Forget("")
			if key, err = h.keys.Get(ctx, key.ID); err != nil {
				return nil, storeUnavailable(err)
			}
			if err := h.checkKey(key); err != nil {
				return nil, err
			}
			continue
		case errors.As(err, &le) && le.Charge.Kind == budget.Spend && attempt < 3 && key.MayLowerMaxTokens() && generates(r.URL.Path):
			fit, ferr := h.fitOutput(ctx, res, price, w)
			if ferr != nil {
				return nil, ferr
			}
			if fit < h.cfg.MinLoweredTokens || fit >= w.output {
				return nil, limitError(le.Charge, h.cfg.Now())
			}
			if adm.body, err = setField(adm.body, outputField(r.URL.Path, req), fit); err != nil {
				return nil, apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body is not a JSON object")
			}
			adm.lowered = fit
			setCap(req, r.URL.Path, fit)
			continue
		case errors.As(err, &le):
			h.fullWindows.note(key, le.Charge, h.cfg.Now())
			return nil, limitError(le.Charge, h.cfg.Now())
		default:
			return nil, &pendingRelease{res: res, err: storeUnavailable(err)}
		}
	}
}

// pendingRelease is the 503 of a request whose reserve's outcome is unknown
// (a timeout while the store stalls): its transaction may have committed, or
// may commit later. The handler answers the client first, then abandons the
// reservation (Handler.abandon), so the request is never charged.
type pendingRelease struct {
	err error
	res *budget.Reservation
}

func (e *pendingRelease) Error() string { return e.err.Error() }
func (e *pendingRelease) Unwrap() error { return e.err }

// fitOutput returns how many output tokens the tightest spend limit still
// pays for, after the prompt.
func (h *Handler) fitOutput(ctx context.Context, res *budget.Reservation, price pricing.Price, w worst) (int64, error) {
	// Only limited counters: the spend of an owner without a limit may be
	// spread over its keys' ledgers, a larger read.
	charges := limitedOnly(res.Charges)
	vals, err := h.cfg.Limiter.Counters(ctx, charges)
	if err != nil {
		return 0, storeUnavailable(err)
	}
	remaining := money.Nanos(-1)
	for i, c := range charges {
		if c.Kind != budget.Spend || c.Limit == 0 {
			continue
		}
		left := money.Nanos(c.Limit - vals[i])
		if remaining < 0 || left < remaining {
			remaining = left
		}
	}
	if remaining < 0 {
		return 0, nil
	}
	promptCost := price.Cost(w.promptUsage())
	return budget.FitOutput(remaining, promptCost, price.Output, w.choices), nil
}

func (h *Handler) owners(ctx context.Context, key *apikey.Key) (*user.User, *user.Org, error) {
	var usr *user.User
	if key.UserID != "" {
		u, err := h.users.Get(ctx, key.UserID)
		switch {
		case isNotFound(err):
			return nil, nil, apierror.New(http.StatusUnauthorized, apierror.CodeInvalidAPIKey, "this key's user no longer exists")
		case err != nil:
			return nil, nil, storeUnavailable(err)
		case u.Revoked:
			return nil, nil, apierror.New(http.StatusUnauthorized, apierror.CodeKeyRevoked, "this key's user has been revoked")
		case u.Expired(h.cfg.Now()):
			return nil, nil, apierror.New(http.StatusUnauthorized, apierror.CodeKeyExpired, "this key's user has expired")
		}
		usr = u
	}
	org, err := h.org.Get(ctx, "")
	if err != nil {
		return nil, nil, storeUnavailable(err)
	}
	return usr, org, nil
}

func storeUnavailable(err error) error {
	return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
		"the limits store is unavailable, so the request was not forwarded; try again shortly")
}

// plan builds the reservation for one request; ctx is the request's own
// context, whose deadline (if any) the reservation's outlives.
func (h *Handler) plan(ctx context.Context, key *apikey.Key, usr *user.User, org *user.Org, req *request, price pricing.Price, ceiling *budget.ProviderCeiling, w worst, ev *ledger.Event) *budget.Reservation {
	now := h.cfg.Now()
	br := budget.Request{
		KeyID: key.ID, Key: budget.KeyLimits(key), Model: req.Model, Family: price.Model,
		Cost: w.cost, Tokens: w.usage.Total(), Now: now, Provider: ceiling,
	}
	checks := []budget.Check{{Kind: budget.CheckKey, ID: key.ID, Version: key.Version}}
	if usr != nil {
		br.UserID = usr.UserID
		if l := userLimits(usr); l.Lifetime > 0 || l.OverTime > 0 || l.Rate > 0 {
			br.User = &l
		}
		checks = append(checks, budget.Check{Kind: budget.CheckUser, ID: usr.UserID, Version: usr.Version})
	}
	if org.CostLimitLifetime > 0 || org.CostLimitPerMonth > 0 {
		br.Org = &budget.Limits{Lifetime: org.CostLimitLifetime, PerMonth: org.CostLimitPerMonth}
		// Only then: a check on the one organisation item would make every
		// request in the organisation conflict with every other. Without
		// organisation limits, newly set ones apply within KeyTTL.
		checks = append(checks, budget.Check{Kind: budget.CheckOrg, Version: org.Version})
	}
	skeleton := *ev
	skeleton.Usage, skeleton.Cost = w.usage, w.cost
	return &budget.Reservation{
		ID: ev.ID, KeyID: key.ID, Checks: checks, Charges: budget.Plan(br),
		Cost: w.cost, Usage: w.usage, Deadline: h.deadline(ctx, now), Event: skeleton,
	}
}

func userLimits(u *user.User) budget.Limits {
	return budget.Limits{
		Lifetime: u.CostLimitLifetime, OverTime: u.CostLimitOverTime, OverTimeUnit: budget.Unit(u.CostLimitUnit),
		Rate: u.RateLimitOverTime, RateUnit: budget.Unit(u.RateLimitUnit),
	}
}

// deadline is when an unsettled reservation counts as abandoned and the
// stale sweep may charge it its worst case: ReservationTTL after now, or,
// when the request's context has a later deadline (in Lambda, the end of the
// invocation), a margin after that. The settle keeps trying until the
// invocation ends (Handler.afterContext), so the sweep only ever charges
// reservations of invocations that really died.
func (h *Handler) deadline(ctx context.Context, now time.Time) time.Time {
	d := now.Add(h.cfg.ReservationTTL)
	if end, ok := ctx.Deadline(); ok {
		if late := now.Add(time.Until(end) + sweepMargin); late.After(d) {
			d = late
		}
	}
	return d
}

// limitError turns a charge that did not fit into the client's 429.
func limitError(c budget.Charge, now time.Time) error {
	if c.Kind == budget.Spend {
		msg := fmt.Sprintf("You have reached your %s limit of $%s", c.Scope, money.Nanos(c.Limit))
		if !c.Resets.IsZero() {
			msg += fmt.Sprintf("; it resets at %s", c.Resets.UTC().Format(time.RFC3339))
		}
		return apierror.New(http.StatusTooManyRequests, apierror.CodeInsufficientQuota, msg+".")
	}
	e := apierror.New(http.StatusTooManyRequests, apierror.CodeRateLimitExceeded,
		fmt.Sprintf("Rate limit reached for %s (limit %d); retry after %s.", c.Scope, c.Limit, c.RetryAfter(now).Round(time.Second)))
	e.RetryAfter = c.RetryAfter(now)
	return e
}

// setField returns body with the top-level field name set to n.
func setField(body []byte, name string, n int64) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	obj[name] = json.RawMessage(strconv.FormatInt(n, 10))
	return json.Marshal(obj)
}
