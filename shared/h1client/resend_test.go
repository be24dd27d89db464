package h1client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNeverResend checks that with Options.NeverResend a request reaches
// the server at most once, and that a pooled connection the server closed
// (or spoke on) while idle is found before the request is written, so
// that the request still goes out, once, on another connection.
func TestNeverResend(t *testing.T) {
	hangUp := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		nc, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		nc.Close()
	}
	tests := []struct {
		name        string
		tls         bool
		neverResend bool
		handler     http.HandlerFunc // answers the calls after the first (echo)
		closeIdle   bool             // the server closes its idle connections between the calls
		noGetBody   bool
		peekAfter   time.Duration // how long idle before a peek (0: always)
		wantErr     bool
		wantReqs    int32 // the server's, over both calls
		wantConns   int32
	}{
		{name: "closed while idle: found by the peek, sent once on a new connection", neverResend: true,
			handler: echo, closeIdle: true, wantReqs: 2, wantConns: 2},
		{name: "closed while idle, over TLS: found by the peek", tls: true, neverResend: true,
			handler: echo, closeIdle: true, wantReqs: 2, wantConns: 2},
		{name: "closed while idle, a body without GetBody: still sent, once", neverResend: true,
			handler: echo, closeIdle: true, noGetBody: true, wantReqs: 2, wantConns: 2},
		{name: "closed after less idle time than a peek waits for: not sent again", neverResend: true,
			handler: echo, closeIdle: true, peekAfter: time.Hour, wantErr: true, wantReqs: 1, wantConns: 1},
		{name: "read, then closed without an answer, on a reused connection: not sent again", neverResend: true,
			handler: hangUp, wantErr: true, wantReqs: 2, wantConns: 1},
		{name: "the same without NeverResend: sent again (and hung up on again)",
			handler: hangUp, wantErr: true, wantReqs: 3, wantConns: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := newTestServer(t, tt.tls, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					echo(w, r)
				} else {
					tt.handler(w, r)
				}
			})
			o := options(srv.Server)
			o.NeverResend = tt.neverResend
			c := New(o)
			c.peekAfter = tt.peekAfter
			defer c.CloseIdleConnections()
			if _, _, err := call(t, c, srv.URL, "{}"); err != nil {
				t.Fatal(err)
			}
			if tt.closeIdle {
				srv.CloseClientConnections()
				waitClosed(t, c)
			}
			req := post(context.Background(), srv.URL, `{"second":1}`)
			if tt.noGetBody {
				req.GetBody = nil
			}
			resp, err := c.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != `{"second":1}` {
					t.Errorf("second answer %q", b)
				}
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("error %v, want one: %v", err, tt.wantErr)
			}
			if err != nil && unsent(err) {
				t.Errorf("error %v says the request was never sent; it was", err)
			}
			if got := srv.requests.Load(); got != tt.wantReqs {
				t.Errorf("the server got %d requests, want %d", got, tt.wantReqs)
			}
			if got := srv.conns.Load(); got != tt.wantConns {
				t.Errorf("%d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// waitClosed waits until the server's close of c's idle connection has
// reached this side (a peek sees it), for at most a second.
func waitClosed(t *testing.T, c *Client) {
	t.Helper()
	for range 100 {
		c.mu.Lock()
		closed := true
		for _, h := range c.hosts {
			for _, pc := range h.idle {
				closed = closed && !pc.alive()
			}
		}
		c.mu.Unlock()
		if closed {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the server's close did not arrive")
}

// unsent reports whether err says its request was never written, as a
// caller asks it.
func unsent(err error) bool {
	var u interface{ Unsent() bool }
	return errors.As(err, &u) && u.Unsent()
}

// TestUnsent checks which failures say nothing was written.
func TestUnsent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close() // nothing listens there any more
	hangUp := newRawServer(t, func(nc net.Conn) {
		readRequest(bufio.NewReader(nc))
		nc.Close()
	})
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		url  string
		want bool
	}{
		{"connection refused", context.Background(), "http://" + refused + "/", true},
		{"context ended before the call", ended, "http://" + hangUp.addr + "/", true},
		{"read, then closed without an answer", context.Background(), "http://" + hangUp.addr + "/", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(options(nil)).Do(post(tt.ctx, tt.url, "{}"))
			if err == nil {
				t.Fatal("no error")
			}
			if got := unsent(err); got != tt.want {
				t.Errorf("Unsent of %v = %v, want %v", err, got, tt.want)
			}
		})
	}
}

// TestResponseHeaderTimeout checks the answer's header must arrive within
// Options.ResponseHeaderTimeout, that its body need not, and that the
// connection serves the next call with that call's own bounds.
func TestResponseHeaderTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	slowHeader := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(3 * timeout):
		}
	}
	slowBody := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		time.Sleep(3 * timeout)
		io.WriteString(w, "{}")
	}
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		callTimeout time.Duration
		wantErr     string // "": none
	}{
		{"a header later than the timeout", slowHeader, 5 * time.Second, "response header timeout (100ms) exceeded"},
		{"a call timeout sooner than it: the call's", slowHeader, timeout / 2, "call timeout (50ms) exceeded"},
		{"a body later than the timeout", slowBody, 5 * time.Second, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, false, tt.handler)
			o := options(srv.Server)
			o.ResponseHeaderTimeout, o.CallTimeout = timeout, tt.callTimeout
			c := New(o)
			defer c.CloseIdleConnections()
			for i := range 2 { // the second call on the connection the first left
				_, body, err := call(t, c, srv.URL, "{}")
				if tt.wantErr == "" {
					if err != nil || body != "{}" {
						t.Fatalf("call %d = %q, %v", i, body, err)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("call %d: error %v, want %q", i, err, tt.wantErr)
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v is not a timeout matching context.DeadlineExceeded", err)
				}
			}
			if tt.wantErr == "" && srv.conns.Load() != 1 {
				t.Errorf("%d connections, want 1", srv.conns.Load())
			}
		})
	}
}
