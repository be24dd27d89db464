package proxy

// The meter: what upstream answered, turned into the event's usage and cost.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/sse"
)

// meter follows one response and turns it into the event's usage and cost.
type meter struct {
	h      *Handler
	price  pricing.Price
	prompt int64 // the request's prompt tokens as reserved, for when usage is missing
	ev     *ledger.Event

	// dropped is what earlier attempts, which failed before their headers
	// after the request may have reached the provider, are charged: their
	// prompt, at their setting's price (dropAttempt).
	dropped     ledger.Usage
	droppedCost money.Nanos

	served bool          // upstream accepted the request (2xx)
	usage  *ledger.Usage // as reported by upstream
	text   strings.Builder
	bodies *bodyLog // nil unless the key logs bodies (bodylog.go)
}

// newMeter returns the meter of a reserved request: it reads what upstream
// answers and, at the end, prices it.
func (h *Handler) newMeter(x *exchange) *meter {
	return &meter{h: h, price: x.price, prompt: x.adm.res.Usage.PromptTokens, ev: x.ev,
		bodies: newBodyLog(x.key, h.cfg.MaxLoggedBodyBytes, x.received)}
}

// upstreamFailed turns a failed upstream call into the client's error and
// records what the provider may have billed.
func (m *meter) upstreamFailed(ctx context.Context, err error) error {
	m.ev.Incomplete = true
	var ne net.Error
	// A refused or failed dial never reached the provider: nothing to bill.
	m.served = !unsent(err)
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
	// flushes is false once the writer said it cannot flush (lambdaurl's
	// writes go straight to the Runtime API): asking again at every event
	// would make a new error each time.
	flushes := true
	rd := sse.NewReader(body, 0)
	for {
		ev, rerr := rd.Next()
		if len(ev) > 0 {
			idle.Reset(m.h.cfg.IdleTimeout)
			data := sse.Data(ev)
			usageOnly := !clientWantsUsage && provider.IsUsageOnlyChunk(data)
			if !usageOnly {
				if _, err := w.Write(ev); err != nil {
					m.ev.Incomplete, m.ev.ErrorCode = true, "client_closed"
					return fmt.Errorf("write to client: %w", err)
				}
				if flushes {
					err := rc.Flush()
					if errors.Is(err, http.ErrNotSupported) {
						flushes = false
					} else if err != nil {
						m.ev.Incomplete, m.ev.ErrorCode = true, "client_closed"
						return fmt.Errorf("flush to client: %w", err)
					}
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

// copyChunk is the room copyJSON reads into at a time when it does not
// know the body's length: a whole answer of a few kilobytes in one read,
// and no 32 KB buffer per request as io.Copy's.
const copyChunk = 4 << 10

// maxPresize bounds the room copyJSON makes at once for a body whose
// length it is told; a longer one grows as it comes.
const maxPresize = 1 << 20

// copyJSON passes a non-streamed body of length bytes (-1: unknown)
// through as it arrives and keeps a copy to read usage. It reads straight
// into the copy's spare room and writes what it read from there. A length
// it knows is made room for once (one byte more, for the read that meets
// the end), instead of chunk after chunk.
func (m *meter) copyJSON(w http.ResponseWriter, body io.Reader, length int64) error {
	var buf bytes.Buffer
	out := io.MultiWriter(w, m.bodies)
	known := length >= 0 && length < maxPresize
	if known {
		buf.Grow(int(length) + 1)
	}
	for {
		// The room the next read needs: the rest of a known length and
		// one byte, or some hundreds of bytes.
		need := 512
		if known {
			need = max(int(length)-buf.Len(), 0) + 1
		}
		if buf.Available() < need {
			buf.Grow(max(need, copyChunk))
		}
		room := buf.AvailableBuffer()
		n, rerr := body.Read(room[:cap(room)])
		if n > 0 {
			buf.Write(room[:n]) // in place: room is buf's own spare capacity
			if _, err := out.Write(room[:n]); err != nil {
				rerr = err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			m.ev.Incomplete, m.ev.ErrorCode = true, "stream_interrupted"
			return fmt.Errorf("copy upstream body: %w", rerr)
		}
	}
	m.inspect(buf.Bytes())
	return nil
}

// inspect reads usage and generated text from one event or body, in the
// provider's wire format (provider.ReadPayload).
func (m *meter) inspect(data []byte) {
	if u := provider.ReadPayload(data, &m.text); u != nil {
		m.usage = provider.MergeUsage(m.usage, *u)
	}
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
	if m.dropped != (ledger.Usage{}) {
		m.ev.Estimated = true
		m.ev.Usage.PromptTokens += m.dropped.PromptTokens
		m.ev.Cost += m.droppedCost
	}
	m.bodies.record(m.ev)
}

// dropAttempt notes an attempt that failed before its response's headers
// and is tried again on another setting (forwardUpstream). Unless it never
// reached the provider (its connection was refused or failed to dial), the
// provider may have processed, and billed, its prompt, and kept generating
// until it noticed the request gone: the prompt is charged at the dropped
// setting's price, the event marked estimated. What it generated is not
// known and not charged.
func (m *meter) dropAttempt(err error) {
	if unsent(err) {
		return
	}
	m.dropped.PromptTokens += m.prompt
	m.droppedCost += m.price.Cost(ledger.Usage{PromptTokens: m.prompt})
}

// unsent reports whether err, from HTTPClient.Do, says the request never
// left (see HTTPClient): a provider cannot bill it.
func unsent(err error) bool {
	var u interface{ Unsent() bool }
	if errors.As(err, &u) {
		return u.Unsent()
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
