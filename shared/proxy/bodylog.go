package proxy

import (
	"unicode/utf8"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
)

// bodyLog keeps, for a key whose shouldLogRequest / shouldLogResponse is on,
// the request body as the client sent it and the response body as the
// client received it (a stream as the SSE events written to it), each up to
// a bounded prefix, and puts them in the request's event.
//
// Only bodies are kept, never headers: the client's Authorization (its
// stipend key) and the provider's API key travel in headers, so neither can
// appear in a logged body. Capturing a stream costs one bounded append per
// event, after the event has been flushed to the client; nothing is buffered
// in front of the client.
//
// A nil *bodyLog logs nothing, so its methods are safe to call either way.
type bodyLog struct {
	limit     int
	req, resp *capture // nil when that body is not logged
}

// newBodyLog returns the body log of a request made with key, keeping at
// most limit bytes of each body (<= 0: ledger.DefaultBodyBytes; at most
// ledger.MaxBodyBytes). It returns nil when key logs neither body. received
// is the request body as the client sent it; only its prefix is copied.
func newBodyLog(key *apikey.Key, limit int, received []byte) *bodyLog {
	if !key.ShouldLogRequest && !key.ShouldLogResponse {
		return nil
	}
	if limit <= 0 {
		limit = ledger.DefaultBodyBytes
	}
	limit = min(limit, ledger.MaxBodyBytes)
	l := &bodyLog{limit: limit}
	if key.ShouldLogRequest {
		l.req = newCapture(limit)
		l.req.write(received)
	}
	if key.ShouldLogResponse {
		l.resp = newCapture(limit)
	}
	return l
}

// sent records response bytes as they were written to the client.
func (l *bodyLog) sent(p []byte) {
	if l != nil && l.resp != nil {
		l.resp.write(p)
	}
}

// Write is sent as an io.Writer, for io.Copy and io.MultiWriter; it never
// fails, so it never disturbs the copy to the client.
func (l *bodyLog) Write(p []byte) (int, error) {
	l.sent(p)
	return len(p), nil
}

// record puts the kept bodies, their sizes and whether they were cut into ev.
func (l *bodyLog) record(ev *ledger.Event) {
	if l == nil {
		return
	}
	if c := l.req; c != nil {
		ev.RequestBody, ev.RequestBodyTruncated, ev.RequestBodyBytes = c.result(l.limit)
	}
	if c := l.resp; c != nil {
		ev.ResponseBody, ev.ResponseBodyTruncated, ev.ResponseBodyBytes = c.result(l.limit)
	}
}

// capture keeps the first bytes written to it and counts them all.
type capture struct {
	keep int // how many bytes to keep
	buf  []byte
	size int64 // bytes written
}

// newCapture keeps limit bytes plus the rest of a character that straddles
// the limit, so that ledger.ClipBody cuts at a character boundary rather
// than find a broken character at the end. The buffer grows with the body,
// so small bodies cost little.
func newCapture(limit int) *capture {
	return &capture{keep: limit + utf8.UTFMax - 1}
}

func (c *capture) write(p []byte) {
	c.size += int64(len(p))
	if room := c.keep - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
}

// result is the kept text (at most limit bytes), whether it is less than
// the whole body, and the whole body's size.
func (c *capture) result(limit int) (string, bool, int64) {
	s, cut := ledger.ClipBody(c.buf, limit)
	return s, cut || int64(len(c.buf)) < c.size, c.size
}
