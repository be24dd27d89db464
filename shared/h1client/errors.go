package h1client

// The errors a call returns: what failed and why, a context's end or a
// timeout told apart, nothing of a header's value.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
)

// fail is err, met at stage of the call of req, as Do returns it: a
// context's end or a timeout turned into a *stopped, all in a *callError.
// dl is nil before the call started.
func (c *Client) fail(req *http.Request, stage string, err error, dl *deadline) *callError {
	ctx := req.Context()
	var st *stopped
	switch {
	case ctx.Err() != nil:
		err = &stopped{reason: ctx.Err(), what: ctx.Err().Error(), err: err}
	case errors.As(err, &st):
		// It says what ended it already (dial's own timeout).
	case dl != nil && isTimeout(err):
		what := "call timeout (" + dl.timeout.String() + ") exceeded"
		if dl.fromCtx {
			what = context.DeadlineExceeded.Error()
		}
		err = &stopped{reason: context.DeadlineExceeded, what: what, err: err}
	}
	return &callError{method: req.Method, url: redact(req.URL), stage: stage, err: err}
}

// failUnsent is fail for a call that wrote no byte of its request
// (callError.Unsent).
func (c *Client) failUnsent(req *http.Request, stage string, err error, dl *deadline) error {
	e := c.fail(req, stage, err, dl)
	e.unsent = true
	return e
}

// redact is u without its userinfo, query and fragment.
func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// callError is a failed call: what was being done, and why.
type callError struct {
	method, url, stage string
	err                error
	unsent             bool // no byte of the request was written (failUnsent)
}

func (e *callError) Error() string {
	m := e.method
	switch {
	case m == "":
		m = http.MethodGet
	case !validToken(m):
		m = "(invalid method)" // refused by outgoingOf; never written raw into a log line
	}
	return "h1client: " + m + " " + e.url + ": " + e.stage + ": " + e.err.Error()
}

func (e *callError) Unwrap() error { return e.err }

// Unsent reports whether the call failed before any byte of its request
// was written: its context had ended, the request was refused, the proxy
// setting did not parse, or no connection could be made. A caller whose
// server bills what it reads (a model provider) knows then that nothing
// reached it.
func (e *callError) Unsent() bool { return e.unsent }

// Timeout reports whether the call ran out of time: a net.Error's.
func (e *callError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}

// Temporary is Timeout, as net/http's errors have it.
func (e *callError) Temporary() bool { return e.Timeout() }

// stopped is a call its context or a timeout ended.
type stopped struct {
	reason error  // context.Canceled or context.DeadlineExceeded
	what   string // what ended it
	err    error  // the I/O error that made it known
}

func (e *stopped) Error() string {
	if e.err == nil || e.err == e.reason {
		return e.what
	}
	return e.what + " (" + e.err.Error() + ")"
}

// Unwrap gives the reason alone: a cancelled call is context.Canceled, not
// the I/O timeout that interrupting it caused.
func (e *stopped) Unwrap() error { return e.reason }

func (e *stopped) Timeout() bool   { return errors.Is(e.reason, context.DeadlineExceeded) }
func (e *stopped) Temporary() bool { return e.Timeout() }

// isTimeout reports whether err is a net.Error timing out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// gone reports whether err says the connection was closed by its peer:
// EOF or a reset.
func gone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}
