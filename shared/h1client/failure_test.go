package h1client

// Calls that fail: interrupted, retried or not, request bodies that fail,
// and the regressions a review found.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInterrupted checks calls that time out or whose context ends: they
// end at once, their errors match the context's error (or
// context.DeadlineExceeded for the call timeout), and timeouts are
// net.Errors that say so.
func TestInterrupted(t *testing.T) {
	// The handlers read the request's body: then the server watches the
	// connection, and their context ends when the client closes it.
	blockHeader := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}
	blockBody := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "{")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	tests := []struct {
		name        string
		tls         bool
		handler     http.HandlerFunc
		callTimeout time.Duration
		ctx         func() (context.Context, context.CancelFunc)
		want        error // context.Canceled or context.DeadlineExceeded
	}{
		{name: "call timeout, waiting for the header", handler: blockHeader, callTimeout: 100 * time.Millisecond, want: context.DeadlineExceeded},
		{name: "call timeout, reading the body", handler: blockBody, callTimeout: 100 * time.Millisecond, want: context.DeadlineExceeded},
		{name: "call timeout over TLS", tls: true, handler: blockHeader, callTimeout: 100 * time.Millisecond, want: context.DeadlineExceeded},
		{name: "context deadline, waiting for the header", handler: blockHeader, callTimeout: time.Minute, want: context.DeadlineExceeded,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			}},
		{name: "context cancelled, waiting for the header", handler: blockHeader, callTimeout: time.Minute, want: context.Canceled,
			ctx: cancelSoon},
		{name: "context cancelled, reading the body", handler: blockBody, callTimeout: time.Minute, want: context.Canceled,
			ctx: cancelSoon},
		{name: "context cancelled over TLS", tls: true, handler: blockBody, callTimeout: time.Minute, want: context.Canceled,
			ctx: cancelSoon},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, tt.tls, tt.handler)
			o := options(srv.Server)
			o.CallTimeout = tt.callTimeout
			c := New(o)
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			start := time.Now()
			resp, err := c.Do(post(ctx, srv.URL, "{}"))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v", took)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want one that is %v", err, tt.want)
			}
			var ne net.Error
			if !errors.As(err, &ne) || ne.Timeout() != (tt.want == context.DeadlineExceeded) {
				t.Errorf("error %v: a net.Error %v with Timeout %v, want Timeout %v", err, ne != nil, ne != nil && ne.Timeout(), tt.want == context.DeadlineExceeded)
			}
			if tt.want == context.Canceled && errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a cancelled call's error %v is context.DeadlineExceeded", err)
			}
			noSecret(t, err)
		})
	}

	t.Run("context ended before the call", func(t *testing.T) {
		srv := newTestServer(t, false, echo)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := New(options(srv.Server)).Do(post(ctx, srv.URL, "{}"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if n := srv.conns.Load(); n != 0 {
			t.Errorf("%d connections, want none", n)
		}
	})
}

// cancelSoon is a context cancelled 100 ms from now.
func cancelSoon() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(100*time.Millisecond, cancel)
	return ctx, func() { timer.Stop(); cancel() }
}

// TestRetry checks a pooled connection the server closed while it was idle
// is replaced by a new one for the same request, once, and that nothing
// else is sent twice.
func TestRetry(t *testing.T) {
	hijack := func(partial string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			nc, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			io.WriteString(nc, partial)
			nc.Close()
		}
	}
	tests := []struct {
		name string
		tls  bool
		// first answers the first call, then handler the others.
		first, handler http.HandlerFunc
		closeIdle      bool // the server closes its idle connections between the calls
		noGetBody      bool
		body           string // the second call's; `{"second":1}` when ""
		wantErr        bool
		wantRequests   int32 // the server's, over both calls
		wantConns      int32
	}{
		{name: "closed while idle: sent again on a new connection", first: echo, handler: echo, closeIdle: true,
			wantRequests: 2, wantConns: 2},
		{name: "closed while idle, over TLS", tls: true, first: echo, handler: echo, closeIdle: true,
			wantRequests: 2, wantConns: 2},
		{name: "closed while idle, a body larger than the socket's buffers: the write fails too", first: echo,
			handler: echo, closeIdle: true, body: strings.Repeat("x", 8<<20), wantRequests: 2, wantConns: 2},
		{name: "closed while idle, and the new connection fails too: not sent a third time", first: echo,
			handler: hijack(""), closeIdle: true, wantErr: true, wantRequests: 2, wantConns: 2},
		{name: "closed while idle, body without GetBody: not sent again", first: echo, handler: echo,
			closeIdle: true, noGetBody: true, wantErr: true, wantRequests: 1, wantConns: 1},
		{name: "half a status line on a reused connection: not sent again", first: echo,
			handler: hijack("HTTP/1.1 20"), wantErr: true, wantRequests: 2, wantConns: 1},
		{name: "a header cut short on a reused connection: not sent again", first: echo,
			handler: hijack("HTTP/1.1 200 OK\r\nContent-Len"), wantErr: true, wantRequests: 2, wantConns: 1},
		{name: "closed without an answer on a new connection: not sent again", first: hijack(""),
			handler: echo, wantErr: true, wantRequests: 1, wantConns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newTestServer(t, tt.tls, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					tt.first(w, r)
				} else {
					tt.handler(w, r)
				}
			})
			c := New(options(srv.Server))
			defer c.CloseIdleConnections()
			_, _, err := call(t, c, srv.URL, "{}")
			if tt.first != nil && err != nil && !tt.wantErr {
				t.Fatal(err)
			}
			if err == nil {
				if tt.closeIdle {
					srv.CloseClientConnections()
				}
				body := tt.body
				if body == "" {
					body = `{"second":1}`
				}
				req := post(context.Background(), srv.URL, body)
				if tt.noGetBody {
					req.GetBody = nil
				}
				resp, err2 := c.Do(req)
				if err2 == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(b) != body {
						t.Errorf("second answer of %d bytes, want the %d sent", len(b), len(body))
					}
				}
				err = err2
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("error %v, want one: %v", err, tt.wantErr)
			}
			noSecret(t, err)
			if got := srv.requests.Load(); got != tt.wantRequests {
				t.Errorf("the server got %d requests, want %d", got, tt.wantRequests)
			}
			if got := srv.conns.Load(); got != tt.wantConns {
				t.Errorf("%d connections, want %d", got, tt.wantConns)
			}
		})
	}

	// A server that says 408 as it gives up an idle connection: the 408 is
	// no answer to the next request, which goes on a new connection. (This
	// server then reads on, answering nothing, so that only the 408 can
	// send the request elsewhere.) With NeverResend, the peek at the idle
	// connection sees the 408's bytes, and the request is never written on
	// it.
	for _, neverResend := range []bool{false, true} {
		t.Run(fmt.Sprintf("408 on an idle connection, NeverResend %v", neverResend), func(t *testing.T) {
			var requests atomic.Int32
			srv := newRawServer(t, func(nc net.Conn) {
				br := bufio.NewReader(nc)
				if !readRequest(br) {
					return
				}
				requests.Add(1)
				io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
				time.Sleep(50 * time.Millisecond)
				io.WriteString(nc, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
				for readRequest(br) {
				}
			})
			o := options(nil)
			o.NeverResend = neverResend
			c := New(o)
			c.peekAfter = 0
			for i := range 2 {
				if _, body, err := call(t, c, "http://"+srv.addr+"/", "{}"); err != nil || body != "{}" {
					t.Fatalf("call %d = %q, %v", i, body, err)
				}
				time.Sleep(150 * time.Millisecond)
			}
			if n := requests.Load(); n != 2 {
				t.Errorf("the server got %d requests, want 2", n)
			}
			if n := srv.conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2", n)
			}
		})
	}
}

// TestRequestBody checks a request body that fails or does not match its
// ContentLength fails the call, which is not sent again, and that the body
// is closed whatever happens.
func TestRequestBody(t *testing.T) {
	srv := newTestServer(t, false, echo)
	tests := []struct {
		name    string
		body    io.Reader
		length  int64
		wantErr string
	}{
		{"body fails", &failingReader{}, 10, "disk is on fire"},
		{"chunked body fails", &failingReader{}, -1, "disk is on fire"},
		{"shorter than ContentLength", strings.NewReader("{}"), 10, "ContentLength"},
		{"longer than ContentLength", strings.NewReader("{}{}{}"), 2, "ContentLength"},
	}
	c := New(options(srv.Server))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.requests.Load()
			req := post(context.Background(), srv.URL, "")
			closed := &closeRecorder{Reader: tt.body}
			req.Body, req.ContentLength = closed, tt.length
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(tt.body), nil }
			_, err := c.Do(req)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one saying %q", err, tt.wantErr)
			}
			if !closed.closed {
				t.Error("the request's body was not closed")
			}
			if n := srv.requests.Load() - before; n > 1 {
				t.Errorf("sent %d times", n)
			}
		})
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// TestOverlongBodyNotSent: a body longer than its ContentLength is an
// error before the last announced byte is written, so the server never
// has a whole request (nor the start of another smuggled after it).
func TestOverlongBodyNotSent(t *testing.T) {
	var mu sync.Mutex
	var handled []string
	srv := newTestServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		handled = append(handled, r.Method+" "+r.URL.Path)
		mu.Unlock()
	})
	c := New(options(srv.Server))
	defer c.CloseIdleConnections()
	smuggled := "DELETE /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
	for _, size := range []int{0, 8 << 10} { // within the write buffer, and past it
		req := post(context.Background(), srv.URL+"/", "{}"+smuggled+strings.Repeat(" ", size))
		req.ContentLength = 2
		if _, err := c.Do(req); err == nil || !strings.Contains(err.Error(), "longer than its ContentLength") {
			t.Fatalf("a body longer than its ContentLength: %v", err)
		}
	}
	time.Sleep(200 * time.Millisecond) // what the server got, it has handled by now
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 0 {
		t.Errorf("Do failed, yet the server handled %q", handled)
	}
}

// truncConn writes the first 7 bytes of one write (a TLS record's header
// and 2 bytes of it) once trunc is set, then drops the connection.
type truncConn struct {
	net.Conn
	trunc atomic.Bool
}

func (c *truncConn) Write(p []byte) (int, error) {
	if c.trunc.Load() && len(p) > 7 {
		c.Conn.Write(p[:7])
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// TestNoRetryAfterPartialTLSRecord: on a pooled TLS connection, an answer
// whose first record arrived in part before the connection dropped is an
// answer begun: the request, which the server processed, is not sent
// again.
func TestNoRetryAfterPartialTLSRecord(t *testing.T) {
	certSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	certSrv.StartTLS()
	defer certSrv.Close()
	cfg := certSrv.TLS.Clone()
	var requests atomic.Int32
	srv := newRawServer(t, func(nc net.Conn) {
		tc := &truncConn{Conn: nc}
		sc := tls.Server(tc, cfg)
		br := bufio.NewReader(sc)
		for readRequest(br) {
			if requests.Add(1) == 2 {
				tc.trunc.Store(true) // processed; the answer's first bytes go out, then the connection drops
			}
			io.WriteString(sc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
		}
	})
	c := New(options(certSrv))
	defer c.CloseIdleConnections()
	u := "https://" + srv.addr + "/"
	if _, _, err := call(t, c, u, "{}"); err != nil {
		t.Fatal(err)
	}
	// A request sent again would be counted before its answer, which
	// call waits for.
	_, _, err := call(t, c, u, `{"second":1}`)
	if n := requests.Load(); n != 2 || err == nil {
		t.Errorf("the server processed %d requests for 2 calls (second call's error: %v); want 2 and an error", n, err)
	}
}

// TestCancelWhileBodyBlocks: a context that ends while the request body's
// Read blocks ends the call at once (the body is closed), with the
// context's error.
func TestCancelWhileBodyBlocks(t *testing.T) {
	srv := newTestServer(t, false, echo)
	c := New(options(srv.Server))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 10
	done := make(chan error, 1)
	go func() { _, err := c.Do(req); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Do = %v, want the context's deadline", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("Do still blocked 2 s after its context ended (the request body's Read is never interrupted)")
		pw.CloseWithError(io.ErrUnexpectedEOF) // let the goroutine end
		<-done
	}
}

// TestDialTimeoutNotBlamedOnContext: a dial (here a TLS handshake the
// server never answers) that its own timeout ends says so, not that the
// context's deadline passed, while the context is alive.
func TestDialTimeoutNotBlamedOnContext(t *testing.T) {
	srv := newRawServer(t, func(nc net.Conn) { io.Copy(io.Discard, nc) })
	o := options(nil)
	o.DialTimeout = 100 * time.Millisecond
	c := New(o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Do(post(ctx, "https://"+srv.addr+"/", "{}"))
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Do = %v with the context %v; want an error with the context alive", err, ctx.Err())
	}
	var ne net.Error
	if !strings.Contains(err.Error(), "dial timeout (100ms) exceeded") || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %q: want it to name the dial timeout (100ms), as a timeout", err)
	}
}

// TestInvalidMethodNotEchoed: a method that is not a token is refused, and
// the error does not carry it (a CR or LF in it would forge log lines).
func TestInvalidMethodNotEchoed(t *testing.T) {
	c := New(options(nil))
	req := post(context.Background(), "http://127.0.0.1:1/", "{}")
	req.Method = "POST\r\nforged: line"
	_, err := c.Do(req)
	if err == nil || strings.ContainsAny(err.Error(), "\r\n") || strings.Contains(err.Error(), "forged") {
		t.Errorf("Do = %v; want an error without the method", err)
	}
}
