// Package awsconn is the HTTP client of the AWS calls (DynamoDB and
// Secrets Manager through shared/awsjson, and the SDK's service clients
// that tests and tools build on awsenv's configuration): HTTP/1.1 over
// keep-alive connections pooled per scheme, host and port, each call made
// synchronously on the caller's goroutine.
//
// It exists for CPU. The proxy makes four AWS calls per proxied request,
// and its CPU per request is the one target it still missed. With 32
// concurrent callers, GOMAXPROCS=1, 1 KB POST bodies and small answers over
// loopback, net/http's client cost 23.6 µs of CPU per call and this design
// 13.5 µs: net/http's transport hands every request to two goroutines of
// its connection (writeLoop and readLoop), with channels, selects and
// allocations between them and the caller. Here the caller writes the
// request into the connection's buffer, flushes it, and reads the answer
// with http.ReadResponse itself; the answer's body, read to its end, puts
// the connection back in the pool (BenchmarkDo compares the two).
//
// What it does not do: HTTP/2, redirects (a 3xx is returned as it came),
// compression (no Accept-Encoding is added, nothing is decompressed), a
// default User-Agent, Expect: 100-continue, request trailers, cookies,
// credentials from the URL's userinfo, or HTTP proxies: a request that
// http.ProxyFromEnvironment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) would send
// through a proxy goes to a net/http client instead (Options.Fallback);
// Lambda sets none of those.
// Idle connections are checked for age when the pool is used, not by
// timers, and no goroutine watches them: a connection the server closed
// while idle is found out by the next call that takes it, which then
// tries once more on a new connection (Client.Do says when and why that
// is safe).
package awsconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// HTTPClient sends a request: *http.Client, *Client, awsjson.HTTPClient
// and aws.HTTPClient are all this.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Options are a Client's settings. Each zero value means what its field's
// comment says; none means "a default".
type Options struct {
	// DialTimeout bounds establishing a connection, the TCP dial and the
	// TLS handshake together. 0: only the call's bounds apply.
	DialTimeout time.Duration
	// CallTimeout bounds a whole call, from Do until the answer's body is
	// read: dial, write, the answer's header and body. The request's
	// context bounds it too, when it ends sooner. 0: only the context.
	CallTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle connections to one scheme, host
	// and port are kept for reuse; past it the oldest is closed. 0 keeps
	// none: every call dials.
	MaxIdleConnsPerHost int
	// IdleConnTimeout is how long a connection may stay idle and still be
	// reused; an older one is closed when the pool is next used. 0: no
	// limit.
	IdleConnTimeout time.Duration
	// TLSConfig is the base of every https connection's TLS settings (its
	// RootCAs, say, for tests); nil means crypto/tls's defaults (the
	// system's roots). It is cloned, and the clone's ServerName is set to
	// each URL's host, its NextProtos to http/1.1 alone, and its
	// MinVersion raised to TLS 1.2 when lower.
	TLSConfig *tls.Config
	// Fallback sends the requests Proxy routes through a proxy. nil: an
	// *http.Client over an *http.Transport with these options and
	// http.ProxyFromEnvironment, following no redirect.
	Fallback HTTPClient
	// Proxy says which proxy, if any, would carry a request; nil means
	// http.ProxyFromEnvironment. Requests it gives a URL for go to
	// Fallback.
	Proxy func(*http.Request) (*url.URL, error)
}

// Client sends HTTP/1.1 requests over pooled keep-alive connections, on
// the calling goroutine. It is safe for concurrent use. Make one with New.
// It keeps a pool for every scheme, host and port it has called, for its
// whole life: it is meant for a few endpoints (AWS's), not for arbitrary
// URLs.
type Client struct {
	opts     Options // with Fallback and Proxy set
	dialer   net.Dialer
	tlsBase  *tls.Config      // nil: crypto/tls's defaults
	now      func() time.Time // the clock of idle connections' ages (tests set it)
	mu       sync.Mutex
	hosts    map[hostKey]*host // guarded by mu
	maxIdle  int
	idleTime time.Duration
}

// New returns a Client with opts. It dials nothing until a call needs a
// connection.
func New(opts Options) *Client {
	c := &Client{
		opts:     opts,
		dialer:   net.Dialer{KeepAlive: 30 * time.Second},
		now:      wallClock,
		hosts:    map[hostKey]*host{},
		maxIdle:  max(opts.MaxIdleConnsPerHost, 0),
		idleTime: opts.IdleConnTimeout,
	}
	if opts.TLSConfig != nil {
		c.tlsBase = opts.TLSConfig.Clone()
	}
	if c.opts.Proxy == nil {
		c.opts.Proxy = http.ProxyFromEnvironment
	}
	if c.opts.Fallback == nil {
		c.opts.Fallback = c.defaultFallback()
	}
	return c
}

// wallClock is the time without its monotonic reading: an idle
// connection's age is measured in wall time, which goes on while a Lambda
// environment is frozen between invocations (the monotonic clock may not).
func wallClock() time.Time { return time.Now().Round(0) }

// defaultFallback is the net/http client of proxied requests when Options
// names none.
func (c *Client) defaultFallback() *http.Client {
	dialer := &net.Dialer{Timeout: c.opts.DialTimeout, KeepAlive: 30 * time.Second}
	tlsConfig := c.tlsConfig("")
	tlsConfig.NextProtos = nil // the transport's own choice
	return &http.Client{
		Timeout: c.opts.CallTimeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         dialer.DialContext,
			TLSHandshakeTimeout: c.opts.DialTimeout,
			MaxIdleConnsPerHost: c.maxIdle,
			IdleConnTimeout:     c.idleTime,
			TLSClientConfig:     tlsConfig,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// tlsConfig is the TLS configuration of connections to serverName.
func (c *Client) tlsConfig(serverName string) *tls.Config {
	var cfg *tls.Config
	if c.tlsBase != nil {
		cfg = c.tlsBase.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.ServerName = serverName
	cfg.NextProtos = []string{"http/1.1"}
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	return cfg
}

// Do sends req and returns its answer, as http.Client.Do does, with these
// differences and guarantees:
//
//   - req.URL's scheme is http or https; the request line carries
//     req.URL.RequestURI(), the Host header req.Host (else req.URL.Host),
//     then every header of req.Header (but Host, Content-Length,
//     Transfer-Encoding and Trailer, which Do writes itself) and
//     Content-Length from req.ContentLength. A body of unknown length (a
//     ContentLength of -1, or 0 with a body that is not empty) is sent
//     chunked. A method, header name or header value (or Host) that is not
//     valid HTTP, such as a value with CR or LF, is refused before
//     anything is sent; so are request trailers.
//   - Requests that Options.Proxy routes through a proxy are sent by
//     Options.Fallback, and what it returns is returned.
//   - The answer's Body must be closed. Read to its end (io.EOF), it puts
//     the connection back in the pool, unless the answer or the request
//     said Connection: close or the answer is HTTP/1.0 without keep-alive;
//     closed before its end, it closes the connection.
//   - The call (dial, write, the answer's header and body) ends at the
//     sooner of the context's deadline and Options.CallTimeout from now;
//     a context that ends during the call interrupts it at once. Its error
//     then matches ctx.Err() with errors.Is (context.Canceled or
//     context.DeadlineExceeded); a call that ran out of time matches
//     context.DeadlineExceeded and is a net.Error whose Timeout is true,
//     as net/http's are. A context already ended fails before dialling.
//   - req.Body is closed, whatever happens (http.RoundTripper's contract).
//   - Errors name the method and the URL (without its query) and say what
//     failed; they never hold a header's value, which for AWS calls holds
//     a signature or a session token.
//
// When a connection taken from the pool turns out closed by the server
// (nothing of an answer arrives: the read meets EOF or a reset, whether
// the write failed or not), the request is sent once more, at once, on a
// new connection, provided its body can be sent again (no body, or
// req.GetBody). That happens in that case only: never after any byte of an
// answer arrived (counted on the TCP connection, under TLS, so part of a
// TLS record counts), never on a connection dialled for this call, never
// twice. (One answer counts as none: a 408 Request Timeout read from a
// pooled connection, which some servers send as they close an idle
// connection, before any request; net/http discards it likewise. A 408
// says the server did not process the request.) It assumes that a server
// that closes an idle connection has not taken a request from it, so the
// request was never processed. A server that read the request and then
// dropped the connection without a byte of answer breaks that assumption.
// net/http does not make that assumption for a POST (it sends one again
// only with an Idempotency-Key header); this client does because its
// callers keep their writes idempotent across attempts (conditions and
// client request tokens, as awsjson documents), which they must anyway
// for awsjson's own retries.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("awsconn: a request without a URL")
	}
	if proxy, err := c.opts.Proxy(req); err != nil {
		closeBody(req)
		// Not err itself: it quotes the proxy setting, which may hold
		// the proxy's credentials (http://user:password@host).
		return nil, c.fail(req, "find the proxy", errProxySetting, nil)
	} else if proxy != nil {
		return c.opts.Fallback.Do(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, c.fail(req, "start", err, nil)
	}
	o, err := outgoingOf(req)
	if err != nil {
		closeBody(req)
		return nil, c.fail(req, "check the request", err, nil)
	}
	dl := deadline{timeout: c.opts.CallTimeout}
	if c.opts.CallTimeout > 0 {
		dl.at = time.Now().Add(c.opts.CallTimeout)
	}
	if d, ok := ctx.Deadline(); ok && (dl.at.IsZero() || d.Before(dl.at)) {
		dl.at, dl.fromCtx = d, true
	}
	h, pc := c.take(req.URL)
	body := o.body
	for attempt := 1; ; attempt++ {
		if pc == nil {
			if pc, err = c.dial(ctx, h, &dl); err != nil {
				closeReader(body)
				return nil, c.fail(req, "connect", err, &dl)
			}
		}
		resp, retry, err := pc.roundTrip(ctx, req, &o, body, &dl)
		if err == nil {
			return resp, nil
		}
		if !retry || attempt > 1 || ctx.Err() != nil {
			return nil, err
		}
		if body != nil {
			if req.GetBody == nil {
				return nil, err
			}
			rc, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			body = rc
		}
		c.closeIdleSince(h, pc.idleSince) // idle as long or longer: likely closed as well
		pc = nil
	}
}

// CloseIdleConnections closes the connections now idle in the pool, and
// the fallback's (when it has such a method). Connections in use are
// left alone, and go back to the pool when their calls end.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	var idle []*conn
	for _, h := range c.hosts {
		idle = append(idle, h.idle...)
		clear(h.idle)
		h.idle = h.idle[:0]
	}
	c.mu.Unlock()
	for _, pc := range idle {
		pc.nc.Close()
	}
	if f, ok := c.opts.Fallback.(interface{ CloseIdleConnections() }); ok {
		f.CloseIdleConnections()
	}
}

// outgoing is what a request sends besides its headers.
type outgoing struct {
	method, uri, host string
	body              io.ReadCloser // nil: none
	length            int64         // -1: unknown (sent chunked)
	close             bool          // the request asks the connection to close after it
	connection        bool          // req.Header has a Connection header
}

// outgoingOf checks req and says what it sends: its request line, Host and
// body.
func outgoingOf(req *http.Request) (outgoing, error) {
	o := outgoing{method: req.Method, host: req.Host, close: req.Close}
	if o.method == "" {
		o.method = http.MethodGet
	}
	if !validToken(o.method) {
		return o, errors.New("invalid method")
	}
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return o, fmt.Errorf("unsupported scheme %q (http or https)", u.Scheme)
	}
	if u.Host == "" {
		return o, errors.New("no host in the URL")
	}
	if o.host == "" {
		o.host = u.Host
	}
	if !validHost(o.host) {
		return o, errors.New("invalid Host")
	}
	if u.Opaque == "" && u.RawQuery == "" && u.RawPath == "" && (u.Path == "" || u.Path == "/") {
		o.uri = "/" // the endpoint's root, as every AWS JSON call: no allocation
	} else {
		o.uri = u.RequestURI()
	}
	if !validURI(o.uri) {
		return o, errors.New("invalid request URI")
	}
	for k, vs := range req.Header {
		if !validToken(k) {
			return o, errors.New("a header's name is not a valid token") // not shown: it may hold a value
		}
		for _, v := range vs {
			if !validValue(v) {
				return o, fmt.Errorf("header %s has an invalid value (a control character such as CR or LF)", k)
			}
		}
		if strings.EqualFold(k, "Connection") {
			o.connection = true
			for _, v := range vs {
				o.close = o.close || hasToken(v, "close")
			}
		}
	}
	if len(req.Trailer) > 0 {
		return o, errors.New("request trailers are not supported")
	}
	o.length = req.ContentLength
	switch {
	case len(req.TransferEncoding) == 1 && req.TransferEncoding[0] == "chunked":
		o.length = -1
	case len(req.TransferEncoding) > 0:
		return o, fmt.Errorf("unsupported transfer encoding %q", req.TransferEncoding)
	}
	if req.Body != nil && req.Body != http.NoBody {
		o.body = req.Body
	} else if o.length > 0 {
		return o, fmt.Errorf("ContentLength %d with no body", o.length)
	} else {
		o.length = 0
	}
	return o, nil
}

// deadline is a call's end.
type deadline struct {
	at      time.Time     // zero: none
	fromCtx bool          // at is the context's deadline
	timeout time.Duration // Options.CallTimeout
}

// aLongTimeAgo is a deadline that has passed: setting it interrupts a
// connection's reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

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
	raw := &countingConn{Conn: tcp}
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

// conn is one connection.
type conn struct {
	c    *Client
	host *host
	nc   net.Conn
	// raw is the TCP connection under nc (nc itself without TLS): what it
	// read tells "no byte of an answer arrived" even when TLS only holds
	// part of a record.
	raw *countingConn
	// sending is the request body being written, closed by interrupt so
	// that a body whose Read blocks does not outlast the context (nil
	// between calls). Guarded by mu: interrupt runs on the context's
	// AfterFunc goroutine.
	mu        sync.Mutex
	sending   io.Closer
	r         limitReader
	w         errWriter
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time // when it last went idle (guarded by Client.mu while idle)
	// interruptFunc is interrupt, made once: a method value made per call
	// would be an allocation per call.
	interruptFunc func()
	reused        bool // it served a call before
}

// countingConn counts the bytes read from its connection. Only the calling
// goroutine reads a conn, so the count needs no lock.
type countingConn struct {
	net.Conn
	read int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}

// maxHeaderBytes bounds an answer's header, as net/http's
// Transport.MaxResponseHeaderBytes does (whose default is 10 MB; AWS's
// answers' headers are well under a kilobyte).
const maxHeaderBytes = 1 << 20

var errClosedIdle = errors.New("the server closed the idle connection (408 Request Timeout)")

var errProxySetting = errors.New("the proxy setting (HTTP_PROXY, HTTPS_PROXY) does not parse")

var errHeaderTooLong = errors.New("the answer's header is longer than 1 MB")

// limitReader reads nc, at most limit bytes.
type limitReader struct {
	nc    net.Conn
	limit int64
}

func (r *limitReader) Read(p []byte) (int, error) {
	if r.limit <= 0 {
		return 0, errHeaderTooLong
	}
	if int64(len(p)) > r.limit {
		p = p[:r.limit]
	}
	n, err := r.nc.Read(p)
	r.limit -= int64(n)
	return n, err
}

// errWriter writes nc and keeps its first error, which tells a failed
// connection from a failed request body.
type errWriter struct {
	nc  net.Conn
	err error
}

func (w *errWriter) Write(p []byte) (int, error) {
	n, err := w.nc.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// interrupt makes pc's reads and writes fail at once (a context's end),
// and closes the request body being sent, if any.
func (pc *conn) interrupt() {
	pc.nc.SetDeadline(aLongTimeAgo)
	pc.mu.Lock()
	body := pc.sending
	pc.mu.Unlock()
	if body != nil {
		body.Close()
	}
}

// send records body (nil: none) as the request body being sent.
func (pc *conn) send(body io.Closer) {
	pc.mu.Lock()
	pc.sending = body
	pc.mu.Unlock()
}

// roundTrip sends req with body on pc and reads the answer's header. On
// error, pc is closed and retry says whether the request may be sent again
// on a new connection: pc was reused and no byte of an answer arrived.
// body is closed whatever happens.
func (pc *conn) roundTrip(ctx context.Context, req *http.Request, o *outgoing, body io.ReadCloser, dl *deadline) (*http.Response, bool, error) {
	c := pc.c
	pc.nc.SetDeadline(dl.at)
	read := pc.raw.read // what arrived before this request: none of its answer
	if body != nil {
		pc.send(body)
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, pc.interruptFunc)
	}
	fail := func(stage string, err error) error {
		if stop != nil {
			stop()
		}
		pc.nc.Close()
		return c.fail(req, stage, err, dl)
	}
	werr, bodyErr := pc.write(req, o, body)
	if body != nil {
		pc.send(nil)
	}
	closeReader(body)
	if bodyErr != nil {
		return nil, false, fail("read the request's body", bodyErr)
	}
	if werr != nil && (ctx.Err() != nil || isTimeout(werr)) {
		return nil, false, fail("write the request", werr)
	}
	// Even when the write failed, the server may have answered (an error
	// before reading the whole body) or closed: read what it said.
	pc.r.limit = maxHeaderBytes
	if _, err := pc.br.Peek(1); err != nil {
		// Not a byte of an answer. EOF says so (TLS says it only at a
		// record's boundary: a close_notify, or the end of the connection
		// between records). TLS may have read part of a record before the
		// connection dropped (io.ErrUnexpectedEOF, or a reset), which says
		// the server answered: the bytes read under TLS tell.
		retry := pc.reused && ctx.Err() == nil && (errors.Is(err, io.EOF) || gone(err) && pc.raw.read == read)
		if werr != nil {
			return nil, retry, fail("write the request", werr)
		}
		return nil, retry, fail("read the answer", err)
	}
	resp, err := http.ReadResponse(pc.br, req)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(pc.br, req) // 1xx: informational, the answer follows
	}
	if err != nil {
		return nil, false, fail("read the answer", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, false, fail("read the answer", errors.New("unexpected 101 Switching Protocols"))
	}
	if resp.StatusCode == http.StatusRequestTimeout && pc.reused {
		// Some servers say 408 as they close an idle connection: sent
		// before the request arrived, it answers none (net/http ignores
		// it likewise).
		return nil, ctx.Err() == nil, fail("read the answer", errClosedIdle)
	}
	pc.r.limit = 1<<63 - 1
	keep := werr == nil && !resp.Close && !o.close
	if resp.Body == http.NoBody {
		pc.release(stop, keep)
		return resp, false, nil
	}
	resp.Body = &answerBody{pc: pc, rc: resp.Body, stop: stop, keep: keep, req: req, dl: *dl}
	return resp, false, nil
}

// write writes req's head and body to pc. werr is the connection's error,
// bodyErr the body's.
func (pc *conn) write(req *http.Request, o *outgoing, body io.ReadCloser) (werr, bodyErr error) {
	bw := pc.bw
	bw.WriteString(o.method)
	bw.WriteByte(' ')
	bw.WriteString(o.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(o.host)
	bw.WriteString("\r\n")
	for k, vs := range req.Header {
		if skipHeader(k) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	if o.close && !o.connection {
		bw.WriteString("Connection: close\r\n")
	}
	length := o.length
	var rd io.Reader = body
	if body != nil && length == 0 {
		// A body of length 0 is a body of unknown length, as with
		// net/http: it is empty or sent chunked.
		probe := make([]byte, 1)
		switch n, err := io.ReadFull(body, probe); {
		case err == io.EOF:
			rd = nil
		case err != nil:
			return nil, err
		default:
			rd, length = io.MultiReader(bytes.NewReader(probe[:n]), body), -1
		}
	}
	switch {
	case length > 0 || length == 0 && (o.method == http.MethodPost || o.method == http.MethodPut || o.method == http.MethodPatch):
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), length, 10))
		bw.WriteString("\r\n\r\n")
	case length < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	default:
		bw.WriteString("\r\n")
	}
	switch {
	case rd == nil || length == 0:
	case length > 0:
		// All but the last byte, then the last one only if the body ends
		// right after it: a body longer than announced never puts a whole
		// request (and the start of another) on the connection.
		n, err := io.Copy(bw, io.LimitReader(rd, length-1))
		if pc.w.err != nil {
			return pc.w.err, nil
		}
		if err != nil {
			return nil, err
		}
		var tail [2]byte
		m, err := io.ReadFull(rd, tail[:])
		switch {
		case m == 2:
			return nil, fmt.Errorf("the body is longer than its ContentLength (%d)", length)
		case m == 1 && err == io.ErrUnexpectedEOF:
			bw.WriteByte(tail[0])
		case m == 0 && err == io.EOF:
			return nil, fmt.Errorf("the body has %d bytes, ContentLength says %d", n, length)
		default:
			return nil, err
		}
	default:
		if err := writeChunked(bw, rd); pc.w.err != nil {
			return pc.w.err, nil
		} else if err != nil {
			return nil, err
		}
	}
	bw.Flush()
	return pc.w.err, nil
}

// writeChunked writes r to bw in the chunked transfer coding; its error
// is r's (bw's, if any, is the connection's, kept by errWriter).
func writeChunked(bw *bufio.Writer, r io.Reader) error {
	buf := make([]byte, 8<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			bw.WriteString("\r\n")
		}
		if err == io.EOF {
			bw.WriteString("0\r\n\r\n")
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// release ends pc's call: back to the pool when keep (and the context did
// not end meanwhile: its AfterFunc may be setting a past deadline), else
// closed.
func (pc *conn) release(stop func() bool, keep bool) {
	if stop != nil && !stop() {
		keep = false
	}
	if keep && pc.br.Buffered() == 0 { // bytes past the answer: the connection is out of step
		pc.c.put(pc)
	} else {
		pc.nc.Close()
	}
}

// answerBody is an answer's body: read to its end, it puts its connection back;
// closed before, it closes it.
type answerBody struct {
	pc   *conn
	rc   io.ReadCloser // http.ReadResponse's body
	stop func() bool   // the context's AfterFunc's; nil without one
	keep bool          // the connection may be reused once the body is read
	req  *http.Request
	dl   deadline

	mu       sync.Mutex
	released bool  // the connection went back to the pool or was closed
	closed   bool  // Close was called
	err      error // the error that ended the body early
}

var errBodyClosed = errors.New("awsconn: read on a closed answer body")

func (b *answerBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return 0, errBodyClosed
	case b.err != nil:
		b.mu.Unlock()
		return 0, b.err
	case b.released:
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p) // Close may run meanwhile: it closes the connection
	if err == nil {
		return n, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return n, errBodyClosed
	}
	if err == io.EOF {
		if !b.released {
			b.released = true
			b.pc.release(b.stop, b.keep)
		}
		return n, io.EOF
	}
	if !b.released {
		b.released = true
		b.pc.release(b.stop, false)
	}
	b.err = b.pc.c.fail(b.req, "read the answer's body", err, &b.dl)
	return n, b.err
}

// Close closes the body; before its end, it closes the connection too.
func (b *answerBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if !b.released {
		b.released = true
		b.pc.release(b.stop, false)
	}
	return nil
}

// fail is err, met at stage of the call of req, as Do returns it: a
// context's end or a timeout turned into a *stopped, all in a *callError.
// dl is nil before the call started.
func (c *Client) fail(req *http.Request, stage string, err error, dl *deadline) error {
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
}

func (e *callError) Error() string {
	m := e.method
	switch {
	case m == "":
		m = http.MethodGet
	case !validToken(m):
		m = "(invalid method)" // refused by outgoingOf; never written raw into a log line
	}
	return "awsconn: " + m + " " + e.url + ": " + e.stage + ": " + e.err.Error()
}

func (e *callError) Unwrap() error { return e.err }

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

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func closeReader(rc io.ReadCloser) {
	if rc != nil {
		rc.Close()
	}
}

// skipHeader reports whether the header named k is one write sends itself
// (or, for Trailer, not at all).
func skipHeader(k string) bool {
	switch len(k) {
	case 4:
		return strings.EqualFold(k, "Host")
	case 7:
		return strings.EqualFold(k, "Trailer")
	case 14:
		return strings.EqualFold(k, "Content-Length")
	case 17:
		return strings.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

// validToken reports whether s is an RFC 9110 token (a method or a
// header's name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0) {
			return false
		}
	}
	return true
}

// validValue reports whether v may be a header's value: no control
// character but tab (so no CR or LF: no header injection).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// validHost reports whether h may be a Host header: not empty, ASCII
// (punycode, not Unicode), no control character, space or character that
// would end the header or the URL's authority.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		if b := h[i]; b <= ' ' || b >= 0x7f || strings.IndexByte("/?#@\\", b) >= 0 {
			return false
		}
	}
	return true
}

// validURI reports whether u may stand in a request line: no space or
// control character.
func validURI(u string) bool {
	for i := 0; i < len(u); i++ {
		if b := u[i]; b <= ' ' || b == 0x7f {
			return false
		}
	}
	return u != ""
}

// hasToken reports whether the comma-separated list v has token t (any
// case).
func hasToken(v, t string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(textproto.TrimString(part), t) {
			return true
		}
	}
	return false
}
