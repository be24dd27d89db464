// Package nbconn makes a TCP connection's reads and writes cheaper for a
// process that is often idle between them, as the proxy is: it waits on
// DynamoDB and the provider far longer than it computes.
//
// Go makes a socket's read and write system calls through the runtime's
// entersyscall, in case they block. The socket is non-blocking, so they
// never do; but entersyscall also wakes the runtime's monitor thread
// (sysmon) whenever that thread sleeps because the process was idle. Once
// woken it polls every 20 µs for a while. In a process that goes idle and
// busy again at each of a request's six exchanges, those wake-ups cost a
// quarter of its CPU (measured in the bench: the monitor thread's share of
// /proc's CPU time).
//
// A Conn from Wrap reads and writes with raw system calls instead, which
// leave the runtime's bookkeeping alone. The socket stays non-blocking and
// in the runtime's poller: a read that finds nothing, or a write that finds
// the send buffer full, waits there as net.Conn's do, deadlines and Close
// included. On platforms other than Linux, Wrap returns the connection as
// it is.
package nbconn

import (
	"context"
	"net"
	"net/http"
)

// Listener wraps a listener so that every connection it accepts is
// wrapped by Wrap.
type Listener struct {
	net.Listener
}

// Accept waits for the next connection and returns it wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// WrapTransport makes t dial through Wrap: the connections it makes (plain
// TCP, and TLS over the wrapped connection when t makes it) read and write
// with raw system calls. It wraps t's DialContext, else its deprecated
// Dial, else a net.Dialer's; a DialTLS or DialTLSContext of t's own is
// left as it is. Call it before t is used; it changes t.
//
// A main gives it http.DefaultTransport in Lambda, because aws-lambda-go's
// Runtime API client clones that transport when Start runs: its long poll
// for the next invocation and the writes of a streamed response then leave
// the monitor thread asleep too.
func WrapTransport(t *http.Transport) {
	dial := t.DialContext
	switch old := t.Dial; { //nolint:staticcheck // a transport set up with Dial keeps it
	case dial == nil && old != nil:
		dial = func(_ context.Context, network, addr string) (net.Conn, error) { return old(network, addr) }
	case dial == nil:
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c), nil
	}
}
