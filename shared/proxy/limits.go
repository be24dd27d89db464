package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
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

// generates reports whether path produces billed output tokens.
func generates(path string) bool {
	return path != "/v1/embeddings" && path != "/v1/moderations"
}

// outputField is the body field that caps output on path.
func outputField(path string, req *request) string {
	switch path {
	case "/v1/responses":
		return "max_output_tokens"
	case "/v1/chat/completions":
		if req.MaxTokens != nil && req.MaxCompletionTokens == nil {
			return "max_tokens"
		}
		return "max_completion_tokens"
	}
	return "max_tokens"
}

// choices is how many completions one request is billed for.
func (req *request) choices() int64 {
	n := int64(1)
	if req.N != nil && *req.N > n {
		n = *req.N
	}
	if req.BestOf != nil && *req.BestOf > n {
		n = *req.BestOf
	}
	return n
}

// maxOutput is the output cap the request asked for (0 when none).
func (req *request) maxOutput() int64 {
	for _, v := range []*int64{req.MaxCompletionTokens, req.MaxOutputTokens, req.MaxTokens} {
		if v != nil && *v > 0 {
			return *v
		}
	}
	return 0
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
func worstCase(path string, req *request, prompt int64, price pricing.Price) worst {
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
	w.usage = ledger.Usage{PromptTokens: prompt, CompletionTokens: w.output * w.choices}
	w.cost = price.Cost(w.usage)
	return w
}

// admission is the outcome of reserving: the reservation, and the request
// body (rewritten when max tokens were lowered).
type admission struct {
	res     *budget.Reservation
	body    []byte
	lowered int64 // the new output cap, when stipend lowered it
}

// admit loads the key's user and the organisation, plans the request's
// charges and reserves them. When the spend does not fit and the key allows
// it, it lowers the output cap to what the remaining budget can pay for.
//
// The store's part, from reading the user to the reservation, has
// Config.ReserveTimeout: when the store stalls the client gets its 503 soon.
// A reserve that ran out of time may still land: its 503 is a
// *pendingRelease, and the handler abandons the reservation once the client
// has its answer.
func (h *Handler) admit(r *http.Request, key *apikey.Key, req *request, body []byte, price pricing.Price, ev *ledger.Event) (*admission, error) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReserveTimeout)
	defer cancel()
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
		w := worstCase(r.URL.Path, req, prompt, price)
		res := h.plan(r.Context(), key, usr, org, req, price, w, ev)
		err = h.cfg.Limiter.Reserve(ctx, res)
		if err == nil {
			adm.res = res
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

// setCap records a lowered output cap in req, as the body now says.
func setCap(req *request, path string, n int64) {
	switch outputField(path, req) {
	case "max_output_tokens":
		req.MaxOutputTokens = &n
	case "max_completion_tokens":
		req.MaxCompletionTokens = &n
	default:
		req.MaxTokens = &n
	}
}

// fitOutput returns how many output tokens the tightest spend limit still
// pays for, after the prompt.
func (h *Handler) fitOutput(ctx context.Context, res *budget.Reservation, price pricing.Price, w worst) (int64, error) {
	vals, err := h.cfg.Limiter.Counters(ctx, res.Charges)
	if err != nil {
		return 0, storeUnavailable(err)
	}
	remaining := money.Nanos(-1)
	for i, c := range res.Charges {
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
	promptCost := price.Cost(ledger.Usage{PromptTokens: w.prompt})
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
func (h *Handler) plan(ctx context.Context, key *apikey.Key, usr *user.User, org *user.Org, req *request, price pricing.Price, w worst, ev *ledger.Event) *budget.Reservation {
	now := h.cfg.Now()
	br := budget.Request{
		KeyID: key.ID, Key: budget.KeyLimits(key), Model: req.Model, Family: price.Model,
		Cost: w.cost, Tokens: w.usage.Total(), Now: now,
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

// sweepMargin separates the last attempt to end a reservation from its
// deadline, when the stale sweep may settle it.
const sweepMargin = 30 * time.Second

// afterContext is the context of the work after a response (settle,
// release): not cancelled by the client, and lasting until the request's
// deadline when it has one (in Lambda, the invocation's: as long as the
// invocation may run), else Config.RecordTimeout; in either case ending
// before res's deadline, after which the stale sweep owns res.
func (h *Handler) afterContext(ctx context.Context, res *budget.Reservation) (context.Context, context.CancelFunc) {
	end := time.Now().Add(h.cfg.RecordTimeout)
	if d, ok := ctx.Deadline(); ok {
		end = d
	}
	margin := min(sweepMargin, h.cfg.ReservationTTL/4)
	// res.Deadline is on the handler's clock (Config.Now); end on the wall clock.
	if sweep := time.Now().Add(res.Deadline.Sub(h.cfg.Now()) - margin); sweep.Before(end) {
		end = sweep
	}
	return context.WithDeadline(context.WithoutCancel(ctx), end)
}

// persist runs op until it succeeds, returns an error no retry changes
// (budget.ErrSettled, budget.ErrRejected), or ctx ends, backing off
// exponentially with jitter between attempts. retried reports whether an
// earlier attempt failed, and so may have committed unseen.
func persist(ctx context.Context, op func(context.Context) error) (retried bool, err error) {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err = op(ctx)
		if err == nil || errors.Is(err, budget.ErrSettled) || errors.Is(err, budget.ErrRejected) || ctx.Err() != nil {
			return attempt > 0, err
		}
		sleep := backoff/2 + rand.N(backoff)
		backoff = min(2*backoff, 2*time.Second)
		select {
		case <-ctx.Done():
			return true, err
		case <-time.After(sleep):
		}
	}
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

// limited reports whether any charge has a limit (and so a header to show).
func limited(charges []budget.Charge) bool {
	for _, c := range charges {
		if c.Limit > 0 {
			return true
		}
	}
	return false
}

// limitHeaders reads the reserved counters and describes the tightest
// request, token and spend limits in OpenAI's x-ratelimit-* headers and
// stipend's x-stipend-budget-remaining (US dollars).
func (h *Handler) limitHeaders(ctx context.Context, all []budget.Charge) http.Header {
	out := http.Header{}
	var charges []budget.Charge // only limited counters have a header to show
	for _, c := range all {
		if c.Limit > 0 {
			charges = append(charges, c)
		}
	}
	vals, err := h.cfg.Limiter.Counters(ctx, charges)
	if err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "could not read counters for headers", slog.String("cause", err.Error()))
		return out
	}
	now := h.cfg.Now()
	var req, tok, spend *budget.Charge
	var reqLeft, tokLeft, spendLeft int64
	for i := range charges {
		c := &charges[i]
		if c.Limit == 0 {
			continue
		}
		left := remaining(*c, vals[i])
		switch c.Kind {
		case budget.Requests:
			if req == nil || left < reqLeft {
				req, reqLeft = c, left
			}
		case budget.Tokens:
			if tok == nil || left < tokLeft {
				tok, tokLeft = c, left
			}
		case budget.Spend:
			if spend == nil || left < spendLeft {
				spend, spendLeft = c, left
			}
		}
	}
	if req != nil {
		out.Set("X-Ratelimit-Limit-Requests", strconv.FormatInt(req.Limit, 10))
		out.Set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(reqLeft, 10))
		out.Set("X-Ratelimit-Reset-Requests", req.RetryAfter(now).Round(time.Second).String())
	}
	if tok != nil {
		out.Set("X-Ratelimit-Limit-Tokens", strconv.FormatInt(tok.Limit, 10))
		out.Set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(tokLeft, 10))
		out.Set("X-Ratelimit-Reset-Tokens", tok.RetryAfter(now).Round(time.Second).String())
	}
	if spend != nil {
		out.Set("X-Stipend-Budget-Remaining", money.Nanos(spendLeft).String())
		out.Set("X-Stipend-Budget-Limit", money.Nanos(spend.Limit).String())
	}
	return out
}

// settle ends the reservation with the event's actual usage, inside the
// invocation: the client's cancellation does not stop it, and it keeps
// trying for as long as the invocation may run (afterContext). An attempt
// that failed may have committed unseen; the next then finds the
// reservation gone (ErrSettled), which after a failed attempt means it
// committed: nobody else ends a reservation before its deadline, and the
// retries stop short of it.
func (h *Handler) settle(ctx context.Context, res *budget.Reservation, ev *ledger.Event) {
	ctx, cancel := h.afterContext(ctx, res)
	defer cancel()
	ev.ReservedCost = res.Cost
	if ev.Cost > res.Cost {
		// The provider billed more than the worst case: record the truth
		// and flag it so the gap is visible.
		ev.Overrun = true
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "cost above reservation", slog.String("event", ev.ID),
			slog.Int64("reservedNanos", int64(res.Cost)), slog.Int64("costNanos", int64(ev.Cost)))
	}
	retried, err := persist(ctx, func(ctx context.Context) error { return h.cfg.Limiter.Settle(ctx, res, ev) })
	switch {
	case err == nil:
	case retried && errors.Is(err, budget.ErrSettled):
		h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "reservation settled by an earlier attempt", slog.String("event", ev.ID))
	default:
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "reservation not settled",
			slog.String("event", ev.ID), slog.String("key", ev.KeyID), slog.String("model", ev.Model),
			slog.Int64("costNanos", int64(ev.Cost)), slog.String("cause", err.Error()))
	}
}

// release gives back a reservation for a request that was never forwarded,
// retrying as settle does.
func (h *Handler) release(ctx context.Context, res *budget.Reservation) {
	ctx, cancel := h.afterContext(ctx, res)
	defer cancel()
	retried, err := persist(ctx, func(ctx context.Context) error { return h.cfg.Limiter.Release(ctx, res) })
	if err != nil && !(retried && errors.Is(err, budget.ErrSettled)) {
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "reservation not released", slog.String("event", res.ID), slog.String("cause", err.Error()))
	}
}

// abandon ends the reservation of a request answered 503 because its
// reserve's outcome was unknown, after the client has that answer: whether
// the reserve landed, lands later or never, nothing of it is charged
// (Limiter.Abandon). It retries as settle does; only if the store stays
// unreachable for the whole invocation can a landed reserve be left to the
// stale sweep.
func (h *Handler) abandon(ctx context.Context, res *budget.Reservation) {
	ctx, cancel := h.afterContext(ctx, res)
	defer cancel()
	if _, err := persist(ctx, func(ctx context.Context) error { return h.cfg.Limiter.Abandon(ctx, res) }); err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "reservation not released", slog.String("event", res.ID), slog.String("cause", err.Error()))
	}
}

// remaining is what limit c still allows: the limit minus the committed
// counter — settled usage plus every reservation of a request still in
// flight, this one's included — never below zero. It is what the next
// request can use. The x-ratelimit-remaining-* and
// x-stipend-budget-remaining headers and GET /v1/key/info all use it.
func remaining(c budget.Charge, committed int64) int64 { return max(c.Limit-committed, 0) }

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
	res := h.plan(ctx, key, usr, org, &request{}, pricing.Price{}, worst{}, &ledger.Event{})
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
		for _, c := range h.plan(ctx, key, usr, org, &request{Model: m}, pricing.Price{Model: m}, worst{}, &ledger.Event{}).Charges {
			if id := (counterID{c.Owner, c.Counter}); !seen[id] {
				seen[id] = true
				charges = append(charges, c)
			}
		}
	}
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
