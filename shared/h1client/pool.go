package h1client

// The pools: idle connections per scheme and host, their ages, and dialling
// a new one.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/stipend/stipend/shared/nbconn"
)

// hostKey names a pool: a URL's scheme and host (with its port, if any).
type hostKey struct{ scheme, host string }

// host is one pool of connections.
type host struct {
	addr string      // host:port to dial
	tls  *tls.Config // nil for http
	idle []*conn     // oldest first; guarded by Client.mu
}

// take returns u's pool and, when it has one young enough, an idle
// connection from it (the most recently used); older ones are closed.
func (c *Client) take(u *url.URL) (*host, *conn) {
	key := hostKey{u.Scheme, u.Host}
	c.mu.Lock()
	h := c.hosts[key]
	if h == nil {
		h = c.newHost(u)
		c.hosts[key] = h
	}
	n := len(h.idle)
	if n == 0 {
		c.mu.Unlock()
		return h, nil
	}
	pc := h.idle[n-1]
	h.idle[n-1] = nil
	h.idle = h.idle[:n-1]
	if !c.expired(pc, c.now()) {
		c.mu.Unlock()
		return h, pc
	}
	// The most recently used is too old: all the others are older.
	stale := append(h.idle, pc)
	h.idle = nil
	c.mu.Unlock()
	for _, pc := range stale {
		pc.nc.Close()
	}
	return h, nil
}

// newHost returns the pool of u's scheme and host.
func (c *Client) newHost(u *url.URL) *host {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	h := &host{addr: net.JoinHostPort(u.Hostname(), port)}
	if u.Scheme == "https" {
		h.tls = c.tlsConfig(u.Hostname())
	}
	return h
}

// expired reports whether pc, idle, is too old to be reused at now.
func (c *Client) expired(pc *conn, now time.Time) bool {
	return c.idleTime > 0 && now.Sub(pc.idleSince) > c.idleTime
}

// put returns pc, idle, to its pool, closing the pool's connections too
// old to be reused and, past MaxIdleConnsPerHost, its oldest.
func (c *Client) put(pc *conn) {
	if c.maxIdle == 0 {
		pc.nc.Close()
		return
	}
	var drop [4]*conn
	stale := drop[:0]
	c.mu.Lock()
	now := c.now()
	pc.idleSince, pc.reused = now, true
	h := pc.host
	k := 0
	for k < len(h.idle) && c.expired(h.idle[k], now) {
		k++
	}
	if len(h.idle)-k >= c.maxIdle {
		k = len(h.idle) - c.maxIdle + 1
	}
	if k > 0 {
		stale = append(stale, h.idle[:k]...)
		n := copy(h.idle, h.idle[k:])
		clear(h.idle[n:])
		h.idle = h.idle[:n]
	}
	h.idle = append(h.idle, pc)
	c.mu.Unlock()
	for _, pc := range stale {
		pc.nc.Close()
	}
}

// closeIdleSince closes h's idle connections idle since t or earlier.
func (c *Client) closeIdleSince(h *host, t time.Time) {
	c.mu.Lock()
	k := 0
	for k < len(h.idle) && !h.idle[k].idleSince.After(t) {
		k++
	}
	stale := append([]*conn(nil), h.idle[:k]...)
	n := copy(h.idle, h.idle[k:])
	clear(h.idle[n:])
	h.idle = h.idle[:n]
	c.mu.Unlock()
	for _, pc := range stale {
		pc.nc.Close()
	}
}

// dial connects to h, within DialTimeout and the call's deadline.
func (c *Client) dial(ctx context.Context, h *host, dl *deadline) (*conn, error) {
	d := c.dialer
	d.Deadline = dl.at
	dialEnds := false // the dial timeout, not the call's deadline, bounds the dial
	if t := c.opts.DialTimeout; t > 0 {
		if end := time.Now().Add(t); d.Deadline.IsZero() || end.Before(d.Deadline) {
			d.Deadline, dialEnds = end, true
		}
	}
	// dialError is err, said to be the dial timeout's doing when that
	// timeout (not the call's deadline or the context) ended the dial.
	dialError := func(err error) error {
		if dialEnds && ctx.Err() == nil && isTimeout(err) {
			return &stopped{reason: context.DeadlineExceeded, what: "dial timeout (" + c.opts.DialTimeout.String() + ") exceeded", err: err}
		}
		return err
	}
	tcp, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, dialError(err)
	}
	raw := &countingConn{Conn: nbconn.Wrap(tcp)}
	if sc, ok := tcp.(syscall.Conn); ok {
		raw.sys, _ = sc.SyscallConn()
	}
	var nc net.Conn = raw
	if h.tls != nil {
		tc := tls.Client(raw, h.tls)
		raw.SetDeadline(d.Deadline)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, dialError(fmt.Errorf("TLS handshake with %s: %w", h.addr, err))
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			tc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: the server chose protocol %q, not http/1.1", h.addr, p)
		}
		nc = tc
	}
	pc := &conn{host: h, nc: nc, raw: raw, c: c}
	pc.interruptFunc = pc.interrupt
	pc.r.nc, pc.w.nc = nc, nc
	pc.br = bufio.NewReaderSize(&pc.r, 4096)
	pc.bw = bufio.NewWriterSize(&pc.w, 4096)
	return pc, nil
}
