package proxy

// Rate-limit headers: what the response tells the client of its limits.

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/money"
)

// limitHeader is the x-ratelimit-* headers of a request, read from the
// counters while upstream works; nil when the key has no limits to show.
type limitHeader struct{ ch chan http.Header }

// startLimitHeaders starts reading the limited counters among res's
// charges for the response's headers; the read outlives the client's
// cancellation, not the request (limitHeader.wait). When the reserve
// returned every limited counter (res.Counted), nothing is read.
func (h *Handler) startLimitHeaders(ctx context.Context, res *budget.Reservation) *limitHeader {
	if !limited(res.Charges) {
		return nil
	}
	l := &limitHeader{ch: make(chan http.Header, 1)}
	if counted, ok := countedLimits(res); ok {
		l.ch <- h.describeLimits(limitedOnly(res.Charges), counted)
		return l
	}
	go func() { l.ch <- h.limitHeaders(context.WithoutCancel(ctx), res.Charges) }()
	return l
}

// countedLimits returns the values res's reserve returned for its limited
// charges, in their order, when it returned all of them.
func countedLimits(res *budget.Reservation) ([]int64, bool) {
	if len(res.Counted) != len(res.Charges) {
		return nil, false
	}
	var out []int64
	for i, c := range res.Charges {
		if c.Limit <= 0 {
			continue
		}
		if res.Counted[i] < 0 {
			return nil, false
		}
		out = append(out, res.Counted[i])
	}
	return out, true
}

// limitedOnly is the charges with a limit (only they have a header to show).
func limitedOnly(all []budget.Charge) []budget.Charge {
	var charges []budget.Charge
	for _, c := range all {
		if c.Limit > 0 {
			charges = append(charges, c)
		}
	}
	return charges
}

// wait returns the headers once read: nil when there are none, or on a
// call after the first.
func (l *limitHeader) wait() http.Header {
	if l == nil || l.ch == nil {
		return nil
	}
	hd := <-l.ch
	l.ch = nil
	return hd
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
	charges := limitedOnly(all)
	vals, err := h.cfg.Limiter.Counters(ctx, charges)
	if err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "could not read counters for headers", slog.String("cause", err.Error()))
		return http.Header{}
	}
	return h.describeLimits(charges, vals)
}

// describeLimits is the headers of charges (all limited) whose counters
// hold vals.
func (h *Handler) describeLimits(charges []budget.Charge, vals []int64) http.Header {
	out := http.Header{}
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

// remaining is what limit c still allows: the limit minus the committed
// counter — settled usage plus every reservation of a request still in
// flight, this one's included — never below zero. It is what the next
// request can use. The x-ratelimit-remaining-* and
// x-stipend-budget-remaining headers and GET /v1/key/info all use it.
func remaining(c budget.Charge, committed int64) int64 { return max(c.Limit-committed, 0) }
