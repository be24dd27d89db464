package h1client

// TLS, many goroutines at once, proxies, answers besides the plain ones,
// and BenchmarkDo.

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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
