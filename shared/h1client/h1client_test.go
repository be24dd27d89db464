package h1client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/awsjson"
)

// The Client is what awsjson and the SDK call.
var (
	_ awsjson.HTTPClient = (*Client)(nil)
	_ aws.HTTPClient     = (*Client)(nil)
)

// secret stands for a signature or a session token: no error may show it.
const secret = "SECRET-SIGNATURE-0123456789"

// testServer is an httptest server that counts the connections it
// accepted and the requests it received.
type testServer struct {
	*httptest.Server
	conns, requests atomic.Int32
}

func newTestServer(t *testing.T, useTLS bool, h http.HandlerFunc) *testServer {
	t.Helper()
	s := &testServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	if useTLS {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// options are the tests' Client options, trusting s's certificate.
func options(s *httptest.Server) Options {
	o := Options{DialTimeout: time.Second, CallTimeout: 5 * time.Second, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}
	if s != nil && s.TLS != nil {
		roots := x509.NewCertPool()
		roots.AddCert(s.Certificate())
		o.TLSConfig = &tls.Config{RootCAs: roots}
	}
	return o
}

// post is a POST of body to u with an Authorization header holding secret.
func post(ctx context.Context, u, body string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Signature="+secret)
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	return req
}

// call posts body to u and reads the answer's body to its end.
func call(t *testing.T, c HTTPClient, u, body string) (*http.Response, string, error) {
	t.Helper()
	resp, err := c.Do(post(context.Background(), u, body))
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Write(b)
}

func noSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("error %q shows a header's value", err)
	}
}

// TestReuse checks which answers leave their connection for the next call:
// one read to its end, not one that says Connection: close, not one whose
// request did, not a body closed before its end.
func TestReuse(t *testing.T) {
	chunked := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for _, part := range []string{`{"a":`, `1`, `}`} {
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}
	tests := []struct {
		name      string
		tls       bool
		handler   http.HandlerFunc
		reqClose  bool
		reqHeader string // the request's Connection header
		read      int    // bytes of the body read before Close; -1: all
		wantBody  string
		wantConns int32
	}{
		{name: "keep-alive", handler: echo, read: -1, wantBody: `{"x":1}`, wantConns: 1},
		{name: "keep-alive over TLS", tls: true, handler: echo, read: -1, wantBody: `{"x":1}`, wantConns: 1},
		{name: "chunked answer", handler: chunked, read: -1, wantBody: `{"a":1}`, wantConns: 1},
		{name: "chunked answer over TLS", tls: true, handler: chunked, read: -1, wantBody: `{"a":1}`, wantConns: 1},
		{name: "empty answer closed unread", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}, read: 0, wantConns: 1},
		{name: "answer says Connection: close", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			echo(w, r)
		}, read: -1, wantBody: `{"x":1}`, wantConns: 3},
		{name: "request says Connection: close", handler: echo, reqClose: true, read: -1, wantBody: `{"x":1}`, wantConns: 3},
		{name: "request's header says Connection: close", handler: echo, reqHeader: "keep-alive, Close", read: -1, wantBody: `{"x":1}`, wantConns: 3},
		{name: "body closed unread", handler: echo, read: 0, wantConns: 3},
		{name: "body closed half read", handler: echo, read: 3, wantBody: `{"x`, wantConns: 3},
		{name: "chunked body closed half read", handler: chunked, read: 3, wantBody: `{"a`, wantConns: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, tt.tls, tt.handler)
			c := New(options(srv.Server))
			defer c.CloseIdleConnections()
			for i := range 3 {
				req := post(context.Background(), srv.URL, `{"x":1}`)
				req.Close = tt.reqClose
				if tt.reqHeader != "" {
					req.Header.Set("Connection", tt.reqHeader)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				var got []byte
				if tt.read < 0 {
					got, err = io.ReadAll(resp.Body)
				} else {
					got = make([]byte, tt.read)
					_, err = io.ReadFull(resp.Body, got)
				}
				resp.Body.Close()
				if err != nil || string(got) != tt.wantBody {
					t.Fatalf("call %d: body %q, %v; want %q", i, got, err, tt.wantBody)
				}
				if strings.Contains(tt.name, "chunked") && len(resp.TransferEncoding) == 0 {
					t.Errorf("TransferEncoding = %v, want chunked", resp.TransferEncoding)
				}
			}
			if got := srv.conns.Load(); got != tt.wantConns {
				t.Errorf("%d connections for 3 calls, want %d", got, tt.wantConns)
			}
		})
	}
}

// rawServer serves each connection it accepts with serve, and counts them.
type rawServer struct {
	addr  string
	conns atomic.Int32
}

func newRawServer(t testing.TB, serve func(net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{addr: ln.Addr().String()}
	var mu sync.Mutex
	var open []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			mu.Lock()
			open = append(open, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				serve(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range open {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// readRequest reads a request's head and body from br; false at the end of
// the connection.
func readRequest(br *bufio.Reader) bool {
	length := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	_, err := br.Discard(length)
	return err == nil
}

// TestHTTP10 checks an HTTP/1.0 answer (without keep-alive) is not reused,
// though its server would go on reading.
func TestHTTP10(t *testing.T) {
	srv := newRawServer(t, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		for readRequest(br) {
			io.WriteString(nc, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")
		}
	})
	c := New(options(nil))
	for range 3 {
		if _, body, err := call(t, c, "http://"+srv.addr+"/", "{}"); err != nil || body != "{}" {
			t.Fatalf("call = %q, %v", body, err)
		}
	}
	if got := srv.conns.Load(); got != 3 {
		t.Errorf("%d connections for 3 calls, want 3", got)
	}
}

// TestRequestWire checks what the server receives: the request line, Host,
// the headers, Content-Length or a chunked body.
func TestRequestWire(t *testing.T) {
	type got struct {
		method, uri, host, body, auth string
		length                        int64
		chunked                       bool
	}
	seen := make(chan got, 1)
	srv := newTestServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- got{r.Method, r.RequestURI, r.Host, string(b), r.Header.Get("Authorization"), r.ContentLength,
			len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"}
	})
	body := strings.Repeat("x", 10000)
	tests := []struct {
		name string
		req  func() *http.Request
		want got
	}{
		{"known length", func() *http.Request { return post(context.Background(), srv.URL, body) },
			got{method: "POST", uri: "/", body: body, length: 10000}},
		{"headers Do writes itself are not copied", func() *http.Request {
			r := post(context.Background(), srv.URL, "{}")
			r.Header["Content-Length"] = []string{"999"}
			r.Header["host"] = []string{"evil.example"}
			r.Header["Transfer-Encoding"] = []string{"chunked"}
			r.Header["Trailer"] = []string{"X-Y"}
			return r
		}, got{method: "POST", uri: "/", body: "{}", length: 2}},
		{"path, query and Host", func() *http.Request {
			r := post(context.Background(), srv.URL+"/a%20b/c?x=1&y=2", "{}")
			r.Host = "dynamodb.eu-west-1.amazonaws.com"
			return r
		}, got{method: "POST", uri: "/a%20b/c?x=1&y=2", host: "dynamodb.eu-west-1.amazonaws.com", body: "{}", length: 2}},
		{"unknown length: chunked", func() *http.Request {
			r := post(context.Background(), srv.URL, "")
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), -1
			return r
		}, got{method: "POST", uri: "/", body: body, length: -1, chunked: true}},
		{"length 0 with a body: chunked", func() *http.Request {
			r := post(context.Background(), srv.URL, "")
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("{}")), 0
			return r
		}, got{method: "POST", uri: "/", body: "{}", length: -1, chunked: true}},
		{"length 0 with an empty body", func() *http.Request {
			r := post(context.Background(), srv.URL, "")
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("")), 0
			return r
		}, got{method: "POST", uri: "/", length: 0}},
		{"GET", func() *http.Request {
			r, _ := http.NewRequest("", srv.URL+"/x", nil)
			r.Header.Set("Authorization", secret)
			return r
		}, got{method: "GET", uri: "/x"}},
	}
	c := New(options(srv.Server))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			g := <-seen
			want := tt.want
			if want.host == "" {
				want.host = strings.TrimPrefix(srv.URL, "http://")
			}
			if want.auth = secret; want.method == "POST" {
				want.auth = "AWS4-HMAC-SHA256 Signature=" + secret
			}
			if g != want {
				t.Errorf("server got %+v\nwant %+v", g, want)
			}
		})
	}
}

// TestRefused checks requests that are not valid HTTP fail before any
// connection, and the error names the request but no header's value.
func TestRefused(t *testing.T) {
	srv := newTestServer(t, false, echo)
	tests := []struct {
		name   string
		modify func(*http.Request)
	}{
		{"CR LF in a value", func(r *http.Request) { r.Header.Set("X-Amz-Target", secret+"\r\nX-Evil: 1") }},
		{"LF in a value", func(r *http.Request) { r.Header["X-Amz-Date"] = []string{"1\n" + secret} }},
		{"NUL in a value", func(r *http.Request) { r.Header["X-Amz-Date"] = []string{secret + "\x00"} }},
		{"space in a name", func(r *http.Request) { r.Header["X Evil"] = []string{"1"} }},
		{"value in a name", func(r *http.Request) { r.Header["X-Evil: "+secret+"\r\nA"] = []string{"1"} }},
		{"CR LF in Host", func(r *http.Request) { r.Host = "h\r\nX-Evil: " + secret }},
		{"bad method", func(r *http.Request) { r.Method = "PO ST" }},
		{"trailer", func(r *http.Request) { r.Trailer = http.Header{"X": nil} }},
		{"other transfer encoding", func(r *http.Request) { r.TransferEncoding = []string{"gzip"} }},
		{"other scheme", func(r *http.Request) { r.URL.Scheme = "ftp" }},
		{"ContentLength without a body", func(r *http.Request) { r.Body, r.GetBody = nil, nil }},
	}
	c := New(options(srv.Server))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := post(context.Background(), srv.URL+"/path?X-Amz-Signature="+secret, "{}")
			tt.modify(req)
			_, err := c.Do(req)
			if err == nil {
				t.Fatal("sent")
			}
			noSecret(t, err)
			if !strings.Contains(err.Error(), srv.URL[len("http://"):]+"/path") {
				t.Errorf("error %q does not name the URL", err)
			}
		})
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections, want none", n)
	}
}

// TestIdle checks idle connections older than IdleConnTimeout are closed,
// not reused, and that at most MaxIdleConnsPerHost are kept.
func TestIdle(t *testing.T) {
	srv := newTestServer(t, false, echo)
	o := options(srv.Server)
	o.MaxIdleConnsPerHost, o.IdleConnTimeout = 2, time.Minute
	c := New(o)
	var mu sync.Mutex
	// The idle ages are read from this clock alone (c.now), so its start
	// is any instant; the calls' own deadlines run on the real one.
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	idle := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := 0
		for _, h := range c.hosts {
			n += len(h.idle)
		}
		return n
	}
	step := func(what string, wantConns int32, wantIdle int) {
		t.Helper()
		if _, _, err := call(t, c, srv.URL, "{}"); err != nil {
			t.Fatal(err)
		}
		if n := srv.conns.Load(); n != wantConns {
			t.Errorf("%s: %d connections, want %d", what, n, wantConns)
		}
		if n := idle(); n != wantIdle {
			t.Errorf("%s: %d idle, want %d", what, n, wantIdle)
		}
	}
	step("first call", 1, 1)
	advance(59 * time.Second)
	step("59 s later", 1, 1)
	advance(61 * time.Second)
	step("61 s later", 2, 1)

	// Four calls at once hold four connections; two stay idle after.
	var bodies []io.ReadCloser
	for range 4 {
		resp, err := c.Do(post(context.Background(), srv.URL, "{}"))
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		io.Copy(io.Discard, b)
		b.Close()
	}
	if n := idle(); n != 2 {
		t.Errorf("%d idle after four calls at once, want MaxIdleConnsPerHost (2)", n)
	}
	c.CloseIdleConnections()
	if n := idle(); n != 0 {
		t.Errorf("%d idle after CloseIdleConnections", n)
	}

	// None kept: every call dials.
	o.MaxIdleConnsPerHost = 0
	c = New(o)
	before := srv.conns.Load()
	for range 3 {
		if _, _, err := call(t, c, srv.URL, "{}"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.conns.Load() - before; n != 3 {
		t.Errorf("MaxIdleConnsPerHost 0: %d connections for 3 calls, want 3", n)
	}
}

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
	// send the request elsewhere.)
	t.Run("408 on an idle connection", func(t *testing.T) {
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
		c := New(options(nil))
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

// TestTLS checks TLS connections offer http/1.1 alone, refuse TLS
// versions before 1.2 and verify the server's certificate.
func TestTLS(t *testing.T) {
	t.Run("http/1.1 against a server that prefers h2", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", r.Proto, r.TLS.NegotiatedProtocol)
		}))
		srv.EnableHTTP2 = true
		srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
		srv.StartTLS()
		defer srv.Close()
		_, body, err := call(t, New(options(srv)), srv.URL, "{}")
		if err != nil || body != "HTTP/1.1 http/1.1" {
			t.Errorf("call = %q, %v; want HTTP/1.1 negotiated", body, err)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(echo))
		srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		srv.StartTLS()
		defer srv.Close()
		o := options(srv)
		o.TLSConfig.MinVersion = tls.VersionTLS10 // raised to 1.2 all the same
		if _, _, err := call(t, New(o), srv.URL, "{}"); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
			t.Errorf("a TLS 1.1 server: %v, want a failed handshake", err)
		}
		// The server itself works: net/http's client allowed TLS 1.0 gets an answer.
		old := &http.Client{Transport: &http.Transport{TLSClientConfig: o.TLSConfig}}
		if _, _, err := call(t, old, srv.URL, "{}"); err != nil {
			t.Errorf("the TLS 1.1 server failed a client that allows TLS 1.1: %v", err)
		}
	})
	t.Run("unknown certificate refused", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(echo))
		defer srv.Close()
		_, _, err := call(t, New(options(nil)), srv.URL, "{}")
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("error %v, want x509.UnknownAuthorityError", err)
		}
	})
}

// TestConcurrent makes calls from many goroutines at once (run with -race).
func TestConcurrent(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("TLS %v", useTLS), func(t *testing.T) {
			srv := newTestServer(t, useTLS, echo)
			o := options(srv.Server)
			o.MaxIdleConnsPerHost = 32
			c := New(o)
			defer c.CloseIdleConnections()
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for i := range 20 {
						want := fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)
						if _, body, err := call(t, c, srv.URL, want); err != nil || body != want {
							t.Errorf("call = %q, %v; want %q", body, err, want)
							return
						}
					}
				})
			}
			wg.Wait()
			if n := srv.conns.Load(); n > 32 {
				t.Errorf("%d connections for 32 callers", n)
			}
		})
	}
}

// TestProxy checks requests a proxy would carry go to the fallback client.
func TestProxy(t *testing.T) {
	srv := newTestServer(t, false, echo)
	proxyURL, _ := url.Parse("http://proxy.invalid:3128")
	var fallback recorder
	o := options(srv.Server)
	o.Fallback = &fallback
	o.Proxy = func(*http.Request) (*url.URL, error) { return proxyURL, nil }
	resp, err := New(o).Do(post(context.Background(), srv.URL, "{}"))
	if err != nil || resp.StatusCode != http.StatusTeapot || fallback.n != 1 {
		t.Errorf("proxied call = %v, %v after %d fallback calls; want the fallback's answer", resp, err, fallback.n)
	}
	// The lookup's error quotes the setting, credentials and all: it is
	// not passed on.
	o.Proxy = func(*http.Request) (*url.URL, error) {
		return nil, errors.New(`invalid proxy address "http://user:s3cret@proxy:3128%"`)
	}
	if _, err := New(o).Do(post(context.Background(), srv.URL, "{}")); err == nil || fallback.n != 1 || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("proxy lookup failing: error %v after %d fallback calls; want an error without the setting, and no call", err, fallback.n)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections to the server, want none", n)
	}
}

type recorder struct{ n int }

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	r.n++
	return &http.Response{StatusCode: http.StatusTeapot, Body: http.NoBody, Request: req}, nil
}

// TestProxyFromEnvironment checks the default: HTTP_PROXY sends a request
// through the proxy (with the default fallback), NO_PROXY exempts its
// host. net/http reads those variables once per process, so each case runs
// in a child process of this test binary.
func TestProxyFromEnvironment(t *testing.T) {
	const target = "http://aws.example.invalid/"
	if mode := os.Getenv("AWSCONN_PROXY_CHILD"); mode != "" {
		_, body, err := call(t, New(options(nil)), target, "{}")
		switch mode {
		case "proxied":
			if err != nil || body != "via proxy" {
				t.Fatalf("call = %q, %v; want the proxy's answer", body, err)
			}
		case "direct":
			if err == nil || !strings.Contains(err.Error(), "connect") {
				t.Fatalf("call = %q, %v; want a failed dial of aws.example.invalid", body, err)
			}
		}
		return
	}
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.String() == target { // a proxy gets the absolute URL
			proxied.Add(1)
			io.WriteString(w, "via proxy")
		}
	}))
	defer proxy.Close()
	for _, tt := range []struct {
		mode, noProxy string
		want          int32
	}{
		{"proxied", "", 1},
		{"direct", "aws.example.invalid", 0},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			proxied.Store(0)
			cmd := exec.Command(os.Args[0], "-test.run=^TestProxyFromEnvironment$", "-test.count=1")
			cmd.Env = append(os.Environ(), "AWSCONN_PROXY_CHILD="+tt.mode, "HTTP_PROXY="+proxy.URL, "NO_PROXY="+tt.noProxy,
				"http_proxy=", "no_proxy=", "REQUEST_METHOD=")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if n := proxied.Load(); n != tt.want {
				t.Errorf("the proxy carried %d requests, want %d", n, tt.want)
			}
		})
	}
}

// BenchmarkDo compares this client with net/http's, configured as
// awsenv.NewHTTPClient configures it, on the same minimal local server
// (which counts in both figures): 32 callers at once (run it with -cpu 1
// for GOMAXPROCS=1), each posting 1 KB with AWS-like headers and reading a
// small answer.
func BenchmarkDo(b *testing.B) {
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Crc32: 2745614147\r\n" +
		"X-Amzn-Requestid: 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\r\nContent-Length: 64\r\n\r\n" +
		`{"Item":{"pk":{"S":"key#0123456789"},"n":{"N":"12345678"}},"x":1}`[:64])
	srv := newRawServer(b, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		for readRequest(br) {
			if _, err := nc.Write(answer); err != nil {
				return
			}
		}
	})
	u := "http://" + srv.addr + "/"
	payload := bytes.Repeat([]byte("x"), 1024)
	header := http.Header{
		"Content-Type":         {"application/x-amz-json-1.0"},
		"X-Amz-Target":         {"DynamoDB_20120810.GetItem"},
		"Accept-Encoding":      {"identity"},
		"X-Amz-Date":           {"20250101T000000Z"},
		"Authorization":        {"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/eu-west-1/dynamodb/aws4_request, SignedHeaders=accept-encoding;content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=" + strings.Repeat("0", 64)},
		"X-Amz-Security-Token": {strings.Repeat("T", 800)},
	}
	netHTTP := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConnsPerHost:   128,
			MaxConnsPerHost:       2048,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	lean := New(Options{DialTimeout: 3 * time.Second, CallTimeout: 10 * time.Second, MaxIdleConnsPerHost: 128, IdleConnTimeout: 90 * time.Second})
	for _, bc := range []struct {
		name   string
		client HTTPClient
	}{{"h1client", lean}, {"net-http", netHTTP}} {
		b.Run(bc.name, func(b *testing.B) {
			parsed, _ := url.Parse(u)
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				ctx, cancel := context.WithCancel(context.Background()) // as a Lambda request's
				defer cancel()
				for pb.Next() {
					pu := *parsed
					req := (&http.Request{
						Method: http.MethodPost, URL: &pu, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
						Header: header, Host: parsed.Host, ContentLength: int64(len(payload)),
						Body: io.NopCloser(bytes.NewReader(payload)),
						GetBody: func() (io.ReadCloser, error) {
							return io.NopCloser(bytes.NewReader(payload)), nil
						},
					}).WithContext(ctx)
					resp, err := bc.client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestAnswers checks answers besides the plain ones: informational answers
// skipped, a header too long refused, a body read after Close.
func TestAnswers(t *testing.T) {
	tests := []struct {
		name     string
		answer   string
		wantBody string
		wantErr  string
	}{
		{name: "103 Early Hints, then the answer",
			answer:   "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
			wantBody: "{}"},
		{name: "a header over 1 MB",
			answer:  "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 2<<20) + "\r\nContent-Length: 2\r\n\r\n{}",
			wantErr: "longer than 1 MB"},
		{name: "101 unasked",
			answer:  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
			wantErr: "101"},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH\r\n", wantErr: "malformed HTTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, func(nc net.Conn) {
				br := bufio.NewReader(nc)
				for readRequest(br) {
					if _, err := io.WriteString(nc, tt.answer); err != nil {
						return
					}
				}
			})
			_, body, err := call(t, New(options(nil)), "http://"+srv.addr+"/", "{}")
			if tt.wantErr == "" {
				if err != nil || body != tt.wantBody {
					t.Errorf("call = %q, %v; want %q", body, err, tt.wantBody)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("call = %q, %v; want an error saying %q", body, err, tt.wantErr)
			}
		})
	}

	t.Run("read after Close", func(t *testing.T) {
		srv := newTestServer(t, false, echo)
		resp, err := New(options(srv.Server)).Do(post(context.Background(), srv.URL, "{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err == nil {
			t.Errorf("Read after Close = %d, %v; want an error", n, err)
		}
	})
}

// failingReader fails after its first bytes.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		return 0, errors.New("the disk is on fire")
	}
	r.n = copy(p, "{")
	return r.n, nil
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
