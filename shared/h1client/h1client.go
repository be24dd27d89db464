// Package h1client is an HTTP/1.1 client whose calls run on the caller's
// goroutine, over keep-alive connections pooled per scheme, host and port.
// It carries the AWS calls (DynamoDB and Secrets Manager through
// shared/awsjson, and the SDK's service clients that tests and tools build
// on awsenv's configuration) and the proxy's calls to model providers
// (proxy.NewUpstreamClient, with Options.NeverResend and
// Options.ResponseHeaderTimeout).
//
// It exists for CPU. The proxy makes four AWS calls and one provider call
// per proxied request, and its CPU per request is the one target it still
// missed. With 32 concurrent callers, GOMAXPROCS=1, 1 KB POST bodies and
// small answers over loopback, net/http's client cost 23.6 µs of CPU per call and this design
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
// is safe), or, with Options.NeverResend, by a non-blocking peek at the
// socket before the request is written.
package h1client

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
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
	// ResponseHeaderTimeout bounds the wait for an answer's header once
	// the request is written, as net/http's Transport field of that name
	// does; the body is not bounded by it. 0: only the call's bounds.
	ResponseHeaderTimeout time.Duration
	// NeverResend sends every request at most once, for servers that act
	// on (and bill) each request they read, as a model provider does. A
	// pooled connection idle for a second or more is then checked before
	// it is used (one non-blocking peek at its socket, on Linux and
	// macOS): one the server closed, or sent anything on, while idle is
	// closed and another taken or dialled. A call that fails after its
	// request was written fails, whatever happened (see Do): so does one
	// on a connection the server closed less than a second after its last
	// answer, or while the request was being written, as net/http's
	// client fails a POST then. (Servers close idle connections after
	// seconds or minutes; the peek costs a system call, which a busy
	// client, reusing connections at once, does not pay.) false: AWS's
	// case, where the callers keep their writes idempotent.
	NeverResend bool
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
	opts    Options // with Fallback and Proxy set
	dialer  net.Dialer
	tlsBase *tls.Config      // nil: crypto/tls's defaults
	now     func() time.Time // the clock of idle connections' ages (tests set it)
	// peekAfter is how long a connection must have been idle for
	// NeverResend to peek at it before use (peekIdle; tests set 0).
	peekAfter time.Duration
	mu        sync.Mutex
	hosts     map[hostKey]*host // guarded by mu
	maxIdle   int
	idleTime  time.Duration
}

// New returns a Client with opts. It dials nothing until a call needs a
// connection.
func New(opts Options) *Client {
	c := &Client{
		opts:      opts,
		dialer:    net.Dialer{KeepAlive: 30 * time.Second},
		now:       wallClock,
		peekAfter: peekIdle,
		hosts:     map[hostKey]*host{},
		maxIdle:   max(opts.MaxIdleConnsPerHost, 0),
		idleTime:  opts.IdleConnTimeout,
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

// peekIdle is Client.peekAfter: see Options.NeverResend.
const peekIdle = time.Second

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
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   c.opts.DialTimeout,
			MaxIdleConnsPerHost:   c.maxIdle,
			IdleConnTimeout:       c.idleTime,
			ResponseHeaderTimeout: c.opts.ResponseHeaderTimeout,
			DisableCompression:    true, // as this client: no Accept-Encoding added
			TLSClientConfig:       tlsConfig,
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
//     the answer's header must also arrive within
//     Options.ResponseHeaderTimeout of the request's write. A context
//     that ends during the call interrupts it at once. Its error
//     then matches ctx.Err() with errors.Is (context.Canceled or
//     context.DeadlineExceeded); a call that ran out of time matches
//     context.DeadlineExceeded and is a net.Error whose Timeout is true,
//     as net/http's are. A context already ended fails before dialling.
//   - req.Body is closed, whatever happens (http.RoundTripper's contract).
//   - Errors name the method and the URL (without its query) and say what
//     failed; they never hold a header's value, which for AWS calls holds
//     a signature or a session token.
//
// With Options.NeverResend, a request is written once at most: a call
// that fails after writing it returns its error. Without it, when a
// connection taken from the pool turns out closed by the server
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
		return nil, errors.New("h1client: a request without a URL")
	}
	if proxy, err := c.opts.Proxy(req); err != nil {
		closeBody(req)
		// Not err itself: it quotes the proxy setting, which may hold
		// the proxy's credentials (http://user:password@host).
		return nil, c.failUnsent(req, "find the proxy", errProxySetting, nil)
	} else if proxy != nil {
		return c.opts.Fallback.Do(req)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, c.failUnsent(req, "start", err, nil)
	}
	o, err := outgoingOf(req)
	if err != nil {
		closeBody(req)
		return nil, c.failUnsent(req, "check the request", err, nil)
	}
	dl := deadline{timeout: c.opts.CallTimeout}
	if c.opts.CallTimeout > 0 {
		dl.at = time.Now().Add(c.opts.CallTimeout)
	}
	if d, ok := ctx.Deadline(); ok && (dl.at.IsZero() || d.Before(dl.at)) {
		dl.at, dl.fromCtx = d, true
	}
	h, pc := c.take(req.URL)
	for pc != nil && c.opts.NeverResend && c.now().Sub(pc.idleSince) >= c.peekAfter && !pc.alive() {
		pc.nc.Close()
		h, pc = c.take(req.URL)
	}
	body := o.body
	for attempt := 1; ; attempt++ {
		if pc == nil {
			if pc, err = c.dial(ctx, h, &dl); err != nil {
				closeReader(body)
				if attempt > 1 { // it was written once: not unsent
					return nil, c.fail(req, "connect to send it again", err, &dl)
				}
				return nil, c.failUnsent(req, "connect", err, &dl)
			}
		}
		resp, retry, err := pc.roundTrip(ctx, req, &o, body, &dl)
		if err == nil {
			return resp, nil
		}
		if !retry || attempt > 1 || ctx.Err() != nil || c.opts.NeverResend {
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
