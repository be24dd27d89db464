package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
)

// forward serves one request to a provider. It reads as the request's
// story; Handler.handle has already authenticated the key and checked that
// it may call the path. Each step is a method below or in the file named
// beside it:
//
//  1. read the request: its body, model and alias (request.go, alias.go);
//  2. route it: the key's provider settings that serve its model and price
//     it, in the order they are tried (route.go);
//  3. check it against its price, read the custom id;
//  4. reserve the worst case on every limit (admission.go) while the first
//     setting is read fresh with its provider key and upstream URL;
//  5. forward it upstream, screened first when the key moderates; a
//     setting that fails before any byte reached the client is replaced
//     by the next route, once;
//  6. stream the answer back, event by event (meter.go reads it on the way);
//  7. meter: turn the answer into usage and cost (meter.go);
//  8. settle the reservation to that cost (settle.go).
//
// Steps 7 and 8 are the request's one ending once it holds a reservation:
// a single deferred call, registered right after the reservation, so they
// run however steps 5 and 6 end.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, key *apikey.Key) error {
	x := &exchange{r: r, key: key, start: h.cfg.Now(), route: make([]*candidate, 0, maxAttempts)}
	if err := h.readRequest(w, x); err != nil {
		return err
	}
	// A key whose request window this process saw full is refused before
	// any read; the others of a burst on one key wait at its gate, not on
	// its ledger item (refusals.go).
	release, refused, full, err := h.fullWindows.enter(r.Context(), key, h.cfg.Now)
	switch {
	case err != nil:
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable, "the request was cancelled")
	case full:
		return limitError(refused, h.cfg.Now())
	}
	entered := true
	leave := func() {
		if entered {
			entered = false
			release()
		}
	}
	defer leave()
	// The store's work before forwarding (the key's settings, the
	// provider setting read fresh, the user, the organisation and the
	// reservation) has Config.ReserveTimeout in all: one deadline for
	// every step, not one each (each a timer and a context).
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReserveTimeout)
	defer cancel()
	if err := h.route(ctx, x); err != nil {
		return err
	}
	if err := h.price(x); err != nil {
		return err
	}
	if err := h.reserveWhileLoading(ctx, x); err != nil {
		return err
	}
	cancel()
	leave()
	m := h.newMeter(x)
	defer h.end(x, m) // meter and settle: the one ending of a reserved request
	return h.forwardUpstream(w, x, m)
}

// exchange is one forwarded request on its way through forward's steps:
// what each step learned, for the next.
type exchange struct {
	r     *http.Request
	key   *apikey.Key
	start time.Time

	// read
	req       request
	received  []byte // the body as the client sent it, for the body log
	body      []byte // the body as served: alias applied, output cap lowered
	requested string // the model as the client named it
	customID  string
	// routed: the settings tried, in order, and the price reserved at (the
	// dearest of theirs)
	route []*candidate
	price pricing.Price
	// the setting being tried
	prov     *provider.Setting
	apiKey   string // the provider's API key
	endpoint string
	// reserved
	ev               *ledger.Event
	adm              *admission
	upstreamBody     []byte       // body with include_usage added when stipend asks for it
	clientWantsUsage bool         // the client asked for the usage chunk itself
	headers          *limitHeader // the x-ratelimit-* headers, read while upstream works
}

// readRequest reads the body within MaxBodyBytes, parses and checks it
// (request.go), names the model (the moderation default when none), applies
// the key's alias (alias.go) and checks that the key may use the model.
func (h *Handler) readRequest(w http.ResponseWriter, x *exchange) error {
	r := x.r
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeRequestTooLarge,
				fmt.Sprintf("request body is larger than %d bytes", h.cfg.MaxBodyBytes))
		}
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest, "could not read the request body")
	}
	x.received = body
	if x.req, err = parseRequest(r.URL.Path, body); err != nil {
		return err
	}
	if x.req.Model == "" && r.URL.Path == "/v1/moderations" {
		x.req.Model = defaultModerationModel // OpenAI's own default when model is omitted
	}
	if x.req.Model == "" {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "you must provide a model").WithParam("model")
	}
	// The key's alias for the model, if any, serves the request (alias.go).
	if x.requested, x.body, err = applyAlias(x.key, &x.req, body); err != nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body is not a JSON object")
	}
	if !modelAllowed(x.key, x.requested, x.req.Model) {
		return apierror.New(http.StatusForbidden, apierror.CodeModelNotAllowed,
			fmt.Sprintf("this key may not use model %q", x.requested)).WithParam("model")
	}
	return nil
}

// price refuses values the provider would refuse at the request's price
// (request.go) and reads the client's custom event id.
func (h *Handler) price(x *exchange) error {
	if err := checkValues(x.r.URL.Path, &x.req, x.body, x.price); err != nil {
		return err
	}
	x.customID = x.r.Header.Get("X-Custom-Id")
	if x.customID == "" {
		x.customID = x.r.Header.Get("X-Custom-Event-Id")
	}
	if len(x.customID) > maxCustomID {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest,
			fmt.Sprintf("X-Custom-Id is longer than %d bytes", maxCustomID))
	}
	return nil
}

// reserveWhileLoading reserves (reserve) on the first route's setting as
// the configuration cache has it, while that setting is read fresh (fetch)
// at the same time: one round trip to the store before forwarding instead
// of two in turn. The fresh setting is what the request is sent with (its
// provider key applies to the very next request). When the fresh read
// fails, the reservation is released and the read's error answered; when
// it shows other ceilings than the cached one (the setting changed within
// the cache's life), the reservation is released and made again on the
// fresh ceilings, so a provider's ceiling is never judged on a stale copy
// (that request then counts twice in its request windows, since a release
// keeps the request counted: the price of a race with an admin's change).
// The price reserved at was always the cached route's (route).
//
// ctx bounds the store's work (forward).
func (h *Handler) reserveWhileLoading(ctx context.Context, x *exchange) error {
	c := x.route[0]
	cached := c.prov
	fresh := make(chan fetched, 1)
	id, path, query, model := cached.ID, x.r.URL.Path, x.r.URL.RawQuery, x.req.Model
	go func() { fresh <- h.fetch(ctx, id, path, query, model) }()
	x.prov = cached
	err := h.reserve(ctx, x)
	f := <-fresh
	if err != nil {
		return err
	}
	if f.err != nil {
		h.unreserve(x)
		return f.err
	}
	c.prov, c.apiKey, c.endpoint = f.prov, f.apiKey, f.endpoint
	x.prov, x.apiKey, x.endpoint = c.prov, c.apiKey, c.endpoint
	if sameCeiling(ceilingOf(cached), ceilingOf(f.prov)) {
		return nil
	}
	h.unreserve(x)
	return h.reserve(ctx, x)
}

// unreserve releases x's reservation (a request never forwarded) and waits
// for the limit headers' read it started.
func (h *Handler) unreserve(x *exchange) {
	h.release(x.r.Context(), x.adm.res)
	x.headers.wait()
	x.adm, x.ev, x.headers = nil, nil, nil
}

// sameCeiling reports whether a and b (nil: none) are the same ceilings.
func sameCeiling(a, b *budget.ProviderCeiling) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// reserve opens the request's event and reserves its worst case on every
// limit before anything is forwarded (admission.go). It then prepares the
// body sent upstream: stipend always asks for a stream's usage, so streamed
// spend is measured, not guessed; the client sees the usage chunk only if
// it asked for it. A request that cannot be sent is released, never
// settled. Once it holds the reservation, the limited counters are read
// for the x-ratelimit-* headers while upstream works (ratelimit_headers.go).
// ctx bounds the store's work (forward).
func (h *Handler) reserve(ctx context.Context, x *exchange) error {
	r := x.r
	x.ev = &ledger.Event{
		ID: apikey.NewID(), KeyID: x.key.ID, UserID: x.key.UserID, ProviderID: x.prov.ID,
		Model: x.req.Model, Path: r.URL.Path, Method: r.Method, Stream: x.req.Stream,
		CustomID: x.customID, CreatedAt: x.start.UnixMilli(), RequestedModel: requestedIfAliased(x.requested, x.req.Model),
	}
	adm, err := h.admit(ctx, r, x.key, &x.req, x.body, x.price, ceilingOf(x.prov), x.ev)
	if err != nil {
		return err
	}
	x.adm, x.body, x.key = adm, adm.body, adm.key
	x.clientWantsUsage = x.req.StreamOptions != nil && x.req.StreamOptions.IncludeUsage
	x.upstreamBody = x.body
	if x.req.Stream && !x.clientWantsUsage && provider.StreamUsageOnRequest(r.URL.Path) {
		if x.upstreamBody, err = provider.WithIncludeUsage(x.body); err != nil {
			h.release(r.Context(), adm.res)
			return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body is not a JSON object")
		}
	}
	x.headers = h.startLimitHeaders(r.Context(), adm.res)
	return nil
}

// end is the ending of a request that holds a reservation, however it went:
// the meter turns what upstream answered into usage and cost (meter.go),
// the settle moves the reservation to that cost and stores the event
// (settle.go), and the counters read for the headers is waited for, so it
// never outlives the request.
func (h *Handler) end(x *exchange, m *meter) {
	x.ev.LatencyMs = h.cfg.Now().Sub(x.start).Milliseconds()
	m.finish()
	h.settle(x.r.Context(), x.adm.res, x.ev)
	x.headers.wait()
}

// forwardUpstream screens the input when the key moderates, then sends
// the request to the route's first setting and streams the answer back.
// When that setting fails before any byte reached the client (it could not
// be reached, timed out before its headers, or answered 429 or 5xx), the
// request goes once to the route's other setting, under the same
// reservation; the event names the setting that answered and counts the
// attempts, and is charged the prompt of an attempt that may have reached
// its provider before it failed (meter.dropAttempt: a timeout, not a
// refused connection, 429 or 5xx, which providers do not bill). Once a byte
// reached the client, nothing is retried.
func (h *Handler) forwardUpstream(w http.ResponseWriter, x *exchange, m *meter) error {
	r := x.r
	if x.key.Moderation && r.URL.Path != "/v1/moderations" {
		prov, apiKey, err := h.screener(r.Context(), x) // route.go
		if err == nil {
			err = h.moderate(r.Context(), prov, apiKey, x.body)
		}
		if err != nil {
			// Recorded (cost 0, nothing was forwarded) so abuse can be traced.
			e := apierror.From(err)
			x.ev.Status, x.ev.ErrorCode = e.Status, e.Code
			if e.Code == apierror.CodeContentFlagged {
				return h.strike(r.Context(), x.key, x.ev.ID, e)
			}
			return err
		}
	}
	for i := 0; ; i++ {
		c := x.route[i]
		if i > 0 {
			if err := h.load(r.Context(), x, c); err != nil { // with its own ReserveTimeout
				x.ev.Status, x.ev.ErrorCode = apierror.From(err).Status, apierror.From(err).Code
				return err
			}
			x.prov, x.apiKey, x.endpoint = c.prov, c.apiKey, c.endpoint
		}
		x.ev.ProviderID, x.ev.Attempts = x.prov.ID, i+1
		m.price = c.price
		failed, err := h.attempt(w, x, m, i+1 < len(x.route))
		if failed == "" {
			return err
		}
		h.cfg.Log.LogAttrs(r.Context(), slog.LevelWarn, "provider failed before the first byte; trying another",
			slog.String("provider", x.prov.ID), slog.String("failure", failed),
			slog.String("next", x.route[i+1].prov.ID), slog.String("event", x.ev.ID))
	}
}

// attempt sends the request to x.prov and answers the client. When retry
// is allowed and the setting fails before anything was written to the
// client, it writes nothing and returns what failed instead.
func (h *Handler) attempt(w http.ResponseWriter, x *exchange, m *meter, retry bool) (failed string, err error) {
	r := x.r
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	idle := time.AfterFunc(h.cfg.IdleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()

	up, err := http.NewRequestWithContext(ctx, http.MethodPost, x.endpoint, bytes.NewReader(x.upstreamBody))
	if err != nil {
		return "", apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError, "could not build the upstream request")
	}
	for _, name := range forwardedHeaders {
		if v := r.Header.Values(name); len(v) > 0 {
			up.Header[name] = v
		}
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Accept-Encoding", "identity")
	up.Header.Set("User-Agent", userAgent)
	provider.Authorize(up.Header, x.prov.Provider, x.apiKey)

	resp, err := h.cfg.Client.Do(up)
	if err != nil {
		// Do fails before the response's headers: nothing reached the
		// client yet. A client that left is not a provider's failure.
		if retry && r.Context().Err() == nil {
			m.dropAttempt(err)
			return "no response: " + err.Error(), nil
		}
		return "", m.upstreamFailed(ctx, err)
	}
	defer resp.Body.Close()
	if retry && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500) {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return fmt.Sprintf("status %d", resp.StatusCode), nil
	}
	idle.Reset(h.cfg.IdleTimeout)
	x.ev.Status = resp.StatusCode
	if rejectsKey(resp.StatusCode) {
		// The teacher's provider key, not the student's: never pass the
		// provider's "incorrect API key ...abcd" through.
		x.ev.Status, x.ev.ErrorCode = http.StatusBadGateway, apierror.CodeUpstreamAuthError
		w.Header().Set("X-Stipend-Request-Id", x.ev.ID)
		h.cfg.Log.LogAttrs(r.Context(), slog.LevelError, "the provider rejected its provider key",
			slog.String("provider", x.prov.ID), slog.Int("upstreamStatus", resp.StatusCode),
			slog.String("event", x.ev.ID), slog.String("key", x.key.ID))
		return "", errUpstreamAuth(x.prov, resp.StatusCode)
	}
	return "", h.stream(ctx, w, x, m, resp, idle)
}

// stream answers the client with upstream's response: its headers (less
// the provider account's own), stipend's request id and limit headers, and
// its body, an event stream event by event or a JSON body as it comes, the
// meter reading along (meter.go).
func (h *Handler) stream(ctx context.Context, w http.ResponseWriter, x *exchange, m *meter, resp *http.Response, idle *time.Timer) error {
	hdr := w.Header()
	for name, v := range resp.Header {
		if !droppedResponseHeaders[name] && !strings.HasPrefix(name, "X-Ratelimit-") {
			hdr[name] = v
		}
	}
	hdr.Set("X-Stipend-Request-Id", x.ev.ID)
	for name, v := range x.headers.wait() {
		hdr[name] = v
	}
	if x.adm.lowered > 0 {
		hdr.Set("X-Stipend-Max-Tokens-Lowered", fmt.Sprint(x.adm.lowered))
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Provider errors pass through with their own status and body; the
		// provider does not bill them.
		x.ev.ErrorCode = "upstream_" + fmt.Sprint(resp.StatusCode)
		w.WriteHeader(resp.StatusCode)
		_, err := io.Copy(io.MultiWriter(w, m.bodies), resp.Body)
		return started(err)
	}
	m.served = true
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Accel-Buffering", "no")
		w.WriteHeader(resp.StatusCode)
		return started(m.stream(ctx, w, resp.Body, idle, x.clientWantsUsage))
	}
	w.WriteHeader(resp.StatusCode)
	return started(m.copyJSON(w, resp.Body, resp.ContentLength))
}

// userAgent names stipend to providers (the client's own is not passed on).
const userAgent = "stipend"

// forwardedHeaders are the client headers passed upstream; everything else
// (cookies, organisation or project selectors, identity headers) stays behind.
var forwardedHeaders = []string{"Accept", "Content-Type", "OpenAI-Beta", "Anthropic-Version", "Anthropic-Beta", "Idempotency-Key"}

// droppedResponseHeaders never reach the client: hop-by-hop headers, lengths
// that change when events are dropped, and the provider account's own
// identity and rate limits.
var droppedResponseHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Content-Length": true,
	"Set-Cookie": true, "Openai-Organization": true, "Openai-Project": true, "Alt-Svc": true,
	"Strict-Transport-Security": true, "Proxy-Authenticate": true, "Trailer": true, "Upgrade": true,
}

// maxCustomID bounds the client's X-Custom-Id.
const maxCustomID = 256

// defaultModerationModel is what OpenAI uses when a moderation request names none.
const defaultModerationModel = "omni-moderation-latest"

// errIdle cancels an upstream call that went silent for IdleTimeout.
var errIdle = errors.New("upstream sent nothing for too long")

// rejectsKey reports an upstream status that means the provider refused
// stipend's provider key (wrong, revoked, or without access).
func rejectsKey(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

// errUpstreamAuth is the client's answer when the provider refused the
// provider key: the instructor must act, not the student.
func errUpstreamAuth(prov *provider.Setting, status int) error {
	return apierror.Wrap(fmt.Errorf("provider %s answered %d", prov.ID, status), http.StatusBadGateway,
		apierror.CodeUpstreamAuthError, "the provider rejected the proxy's credentials; tell your instructor")
}

// started marks err as happening after the status line was sent.
func started(err error) error {
	if err == nil {
		return nil
	}
	return &responseStarted{err: err}
}
