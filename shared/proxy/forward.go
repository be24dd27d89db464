package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/sse"
)

// Timeouts bound every phase of an upstream call except a response body,
// whose pace the model sets; Config.IdleTimeout bounds the gaps in it.
type Timeouts struct {
	Dial, TLSHandshake, ResponseHeader, IdleConn time.Duration
}

// DefaultTimeouts suit a Lambda with a 5-minute limit: a reasoning model may
// think for minutes before a non-streamed response's headers arrive.
var DefaultTimeouts = Timeouts{Dial: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 240 * time.Second, IdleConn: 90 * time.Second}

// NewUpstreamClient returns an HTTP client for providers with explicit
// timeouts and no transparent decompression (it would buffer streams).
func NewUpstreamClient(t Timeouts) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   t.TLSHandshake,
			ResponseHeaderTimeout: t.ResponseHeader,
			IdleConnTimeout:       t.IdleConn,
			MaxIdleConnsPerHost:   64,
			ForceAttemptHTTP2:     true,
			DisableCompression:    true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// request is what the proxy needs to know of a client's request body.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int64 `json:"max_tokens"`
	MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	MaxOutputTokens     *int64 `json:"max_output_tokens"`
	N                   *int64 `json:"n"`
	BestOf              *int64 `json:"best_of"`
}

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

const maxCustomID = 256

// defaultModerationModel is what OpenAI uses when a moderation request names none.
const defaultModerationModel = "omni-moderation-latest"

func (h *Handler) forward(w http.ResponseWriter, r *http.Request, key *apikey.Key) error {
	start := h.cfg.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeRequestTooLarge,
				fmt.Sprintf("request body is larger than %d bytes", h.cfg.MaxBodyBytes))
		}
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest, "could not read the request body")
	}
	received := body // as the client sent it, for the body log
	req, err := parseRequest(r.URL.Path, body)
	if err != nil {
		return err
	}
	if req.Model == "" && r.URL.Path == "/v1/moderations" {
		req.Model = defaultModerationModel // OpenAI's own default when model is omitted
	}
	if req.Model == "" {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "you must provide a model").WithParam("model")
	}
	// The key's alias for the model, if any, serves the request (alias.go).
	requested, body, err := applyAlias(key, &req, body)
	if err != nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body is not a JSON object")
	}
	if !modelAllowed(key, requested, req.Model) {
		return apierror.New(http.StatusForbidden, apierror.CodeModelNotAllowed,
			fmt.Sprintf("this key may not use model %q", requested)).WithParam("model")
	}
	price, ok := h.cfg.Prices.Lookup(req.Model)
	if !ok {
		return apierror.New(http.StatusBadRequest, apierror.CodeModelNotPriced,
			fmt.Sprintf("model %q has no known price, so its spend cannot be limited", req.Model)).WithParam("model")
	}
	if err := checkValues(r.URL.Path, &req, body, price); err != nil {
		return err
	}
	customID := r.Header.Get("X-Custom-Id")
	if customID == "" {
		customID = r.Header.Get("X-Custom-Event-Id")
	}
	if len(customID) > maxCustomID {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest,
			fmt.Sprintf("X-Custom-Id is longer than %d bytes", maxCustomID))
	}

	prov, apiKey, err := h.pickProvider(r.Context(), key)
	if err != nil {
		return err
	}
	if r.URL.Path == "/v1/messages" && prov.Provider != provider.Anthropic {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest,
			"POST /v1/messages is Anthropic's API, and this key's provider setting is not Anthropic; use /v1/chat/completions")
	}
	endpoint, err := prov.Endpoint(r.URL.Path, r.URL.RawQuery)
	if err != nil {
		return apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError, "the provider setting has no usable base URL")
	}

	ev := &ledger.Event{
		ID: apikey.NewID(), KeyID: key.ID, UserID: key.UserID, ProviderID: prov.ID,
		Model: req.Model, Path: r.URL.Path, Method: r.Method, Stream: req.Stream,
		CustomID: customID, CreatedAt: start.UnixMilli(), RequestedModel: requestedIfAliased(requested, req.Model),
	}
	// Reserve the worst case on every limit before anything is forwarded.
	adm, err := h.admit(r, key, &req, body, price, ev)
	if err != nil {
		return err
	}
	body = adm.body
	// While upstream works, read the limited counters for the x-ratelimit
	// headers; a key without limits has none to read.
	var headers chan http.Header
	if limited(adm.res.Charges) {
		headers = make(chan http.Header, 1)
		go func() { headers <- h.limitHeaders(context.WithoutCancel(r.Context()), adm.res.Charges) }()
	}
	limitHdr := func() http.Header {
		if headers == nil {
			return nil
		}
		hd := <-headers
		headers = nil
		return hd
	}
	defer limitHdr() // the counters read never outlives the request

	// The client sees the usage chunk only if it asked for it; stipend
	// always asks, so streamed spend is measured, not guessed.
	clientWantsUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	upstreamBody := body
	if req.Stream && !clientWantsUsage && (r.URL.Path == "/v1/chat/completions" || r.URL.Path == "/v1/completions") {
		if upstreamBody, err = withIncludeUsage(body); err != nil {
			h.release(r.Context(), adm.res)
			return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body is not a JSON object")
		}
	}

	m := meter{h: h, price: price, prompt: adm.res.Usage.PromptTokens, ev: ev,
		bodies: newBodyLog(key, h.cfg.MaxLoggedBodyBytes, received)}
	defer func() {
		ev.LatencyMs = h.cfg.Now().Sub(start).Milliseconds()
		m.finish()
		h.settle(r.Context(), adm.res, ev)
	}()

	if key.Moderation && r.URL.Path != "/v1/moderations" {
		if err := h.moderate(r.Context(), prov, apiKey, body); err != nil {
			// Recorded (cost 0, nothing was forwarded) so abuse can be traced.
			e := apierror.From(err)
			ev.Status, ev.ErrorCode = e.Status, e.Code
			return err
		}
	}

	// The upstream call lives as long as the client's request, and no longer
	// than IdleTimeout without a byte from upstream.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	idle := time.AfterFunc(h.cfg.IdleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()

	up, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(upstreamBody))
	if err != nil {
		return apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError, "could not build the upstream request")
	}
	for _, name := range forwardedHeaders {
		if v := r.Header.Values(name); len(v) > 0 {
			up.Header[name] = v
		}
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Accept-Encoding", "identity")
	authorize(up.Header, prov.Provider, apiKey)

	resp, err := h.cfg.Client.Do(up)
	if err != nil {
		return m.upstreamFailed(ctx, err)
	}
	defer resp.Body.Close()
	idle.Reset(h.cfg.IdleTimeout)
	ev.Status = resp.StatusCode
	if rejectsKey(resp.StatusCode) {
		// The teacher's provider key, not the student's: never pass the
		// provider's "incorrect API key ...abcd" through.
		ev.Status, ev.ErrorCode = http.StatusBadGateway, apierror.CodeUpstreamAuthError
		w.Header().Set("X-Stipend-Request-Id", ev.ID)
		h.cfg.Log.LogAttrs(r.Context(), slog.LevelError, "the provider rejected its provider key",
			slog.String("provider", prov.ID), slog.Int("upstreamStatus", resp.StatusCode),
			slog.String("event", ev.ID), slog.String("key", key.ID))
		return errUpstreamAuth(prov, resp.StatusCode)
	}

	hdr := w.Header()
	for name, v := range resp.Header {
		if !droppedResponseHeaders[name] && !strings.HasPrefix(name, "X-Ratelimit-") {
			hdr[name] = v
		}
	}
	hdr.Set("X-Stipend-Request-Id", ev.ID)
	for name, v := range limitHdr() {
		hdr[name] = v
	}
	if adm.lowered > 0 {
		hdr.Set("X-Stipend-Max-Tokens-Lowered", fmt.Sprint(adm.lowered))
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Provider errors pass through with their own status and body; the
		// provider does not bill them.
		ev.ErrorCode = "upstream_" + fmt.Sprint(resp.StatusCode)
		w.WriteHeader(resp.StatusCode)
		_, err := io.Copy(io.MultiWriter(w, m.bodies), resp.Body)
		return started(err)
	}
	m.served = true
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Accel-Buffering", "no")
		w.WriteHeader(resp.StatusCode)
		return started(m.stream(ctx, w, resp.Body, idle, clientWantsUsage))
	}
	w.WriteHeader(resp.StatusCode)
	return started(m.copyJSON(w, resp.Body))
}

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

func started(err error) error {
	if err == nil {
		return nil
	}
	return &responseStarted{err: err}
}

// authorize is provider.Authorize; a variable seam keeps forward readable.
var authorize = providerAuthorize

// withIncludeUsage returns body with stream_options.include_usage set.
func withIncludeUsage(body []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	opts := map[string]json.RawMessage{}
	if raw, ok := obj["stream_options"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &opts); err != nil {
			return nil, errors.New("stream_options is not an object")
		}
	}
	opts["include_usage"] = json.RawMessage("true")
	b, _ := json.Marshal(opts)
	obj["stream_options"] = b
	return json.Marshal(obj)
}

// meter follows one response and turns it into the event's usage and cost.
type meter struct {
	h      *Handler
	price  pricing.Price
	prompt int64 // the request's prompt tokens as reserved, for when usage is missing
	ev     *ledger.Event

	served bool          // upstream accepted the request (2xx)
	usage  *ledger.Usage // as reported by upstream
	text   strings.Builder
	bodies *bodyLog // nil unless the key logs bodies (bodylog.go)
}

// upstreamFailed turns a failed upstream call into the client's error and
// records what the provider may have billed.
func (m *meter) upstreamFailed(ctx context.Context, err error) error {
	m.ev.Incomplete = true
	var ne net.Error
	var oe *net.OpError
	// A refused or failed dial never reached the provider: nothing to bill.
	m.served = !(errors.As(err, &oe) && oe.Op == "dial")
	switch {
	case context.Cause(ctx) == errIdle || errors.As(err, &ne) && ne.Timeout():
		m.ev.Status, m.ev.ErrorCode = http.StatusGatewayTimeout, apierror.CodeUpstreamTimeout
		return apierror.Wrap(err, http.StatusGatewayTimeout, apierror.CodeUpstreamTimeout, "the provider did not answer in time")
	case ctx.Err() != nil:
		m.ev.Status, m.ev.ErrorCode = 499, "client_closed"
		return started(err) // nobody is listening any more
	default:
		m.ev.Status, m.ev.ErrorCode = http.StatusBadGateway, apierror.CodeUpstreamError
		return apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError, "the provider could not be reached")
	}
}

// stream forwards every event the moment it is complete, then inspects it.
func (m *meter) stream(ctx context.Context, w http.ResponseWriter, body io.Reader, idle *time.Timer, clientWantsUsage bool) error {
	rc := http.NewResponseController(w)
	rd := sse.NewReader(body, 0)
	for {
		ev, rerr := rd.Next()
		if len(ev) > 0 {
			idle.Reset(m.h.cfg.IdleTimeout)
			data := sse.Data(ev)
			usageOnly := !clientWantsUsage && isUsageOnlyChunk(data)
			if !usageOnly {
				if _, err := w.Write(ev); err != nil {
					m.ev.Incomplete, m.ev.ErrorCode = true, "client_closed"
					return fmt.Errorf("write to client: %w", err)
				}
				if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
					m.ev.Incomplete, m.ev.ErrorCode = true, "client_closed"
					return fmt.Errorf("flush to client: %w", err)
				}
				m.bodies.sent(ev) // after the flush: the client never waits for it
			}
			m.inspect(data)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			m.ev.Incomplete = true
			switch {
			case context.Cause(ctx) == errIdle:
				m.ev.ErrorCode = apierror.CodeUpstreamTimeout
			case ctx.Err() != nil:
				m.ev.ErrorCode = "client_closed"
			default:
				m.ev.ErrorCode = "stream_interrupted"
			}
			return fmt.Errorf("read upstream stream: %w", rerr)
		}
	}
}

// copyJSON passes a non-streamed body through and keeps a copy to read usage.
func (m *meter) copyJSON(w http.ResponseWriter, body io.Reader) error {
	var buf bytes.Buffer
	_, err := io.Copy(io.MultiWriter(w, &buf, m.bodies), body)
	if err != nil {
		m.ev.Incomplete, m.ev.ErrorCode = true, "stream_interrupted"
		return fmt.Errorf("copy upstream body: %w", err)
	}
	m.inspect(buf.Bytes())
	return nil
}

// finish settles the event's usage and cost: upstream's usage when it gave
// one, otherwise the tokenizer's count of what was asked and what was sent.
func (m *meter) finish() {
	if m.usage != nil {
		m.ev.Usage = *m.usage
	} else if m.served {
		m.ev.Estimated = true
		m.ev.Usage.PromptTokens = m.prompt // counted once, for the reservation
		if m.text.Len() > 0 {
			if n, err := m.h.cfg.Tokenizer.Completion(m.price.Encoding, m.text.String()); err == nil {
				m.ev.Usage.CompletionTokens = m.price.BoundTokens(n)
			}
		}
	}
	m.ev.Cost = m.price.Cost(m.ev.Usage)
	m.bodies.record(m.ev)
}
