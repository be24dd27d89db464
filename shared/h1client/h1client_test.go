package h1client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
