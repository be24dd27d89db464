package proxy

// The HTTP client that calls providers.

import (
	"net/http"
	"time"

	"github.com/stipend/stipend/shared/h1client"
)

// HTTPClient sends a request upstream: *h1client.Client (NewUpstreamClient)
// and *http.Client are both this. An error that has an Unsent method
// saying true (h1client's), or a *net.OpError of a dial (net/http's), says
// the request never left, so the provider cannot bill it.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Timeouts bound every phase of an upstream call except a response body,
// whose pace the model sets; Config.IdleTimeout bounds the gaps in it.
type Timeouts struct {
	Dial, TLSHandshake, ResponseHeader, IdleConn time.Duration
}

// DefaultTimeouts suit a Lambda with a 5-minute limit: a reasoning model may
// think for minutes before a non-streamed response's headers arrive.
var DefaultTimeouts = Timeouts{Dial: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 240 * time.Second, IdleConn: 90 * time.Second}

// NewUpstreamClient returns the HTTP client for providers: h1client's,
// which makes each call on the caller's goroutine over pooled HTTP/1.1
// connections (net/http's transport hands each call to two goroutines of
// its connection, which cost the proxy about 0.05 ms of CPU per request),
// with explicit timeouts (the dial and TLS handshake together within
// t.Dial+t.TLSHandshake), no transparent decompression (it would buffer
// streams), no redirects, and never a request sent twice: a provider bills
// what it read (h1client.Options.NeverResend). Requests HTTP_PROXY or
// HTTPS_PROXY route go through net/http's client with the same settings.
func NewUpstreamClient(t Timeouts) *h1client.Client {
	return h1client.New(h1client.Options{
		DialTimeout:           t.Dial + t.TLSHandshake,
		ResponseHeaderTimeout: t.ResponseHeader,
		IdleConnTimeout:       t.IdleConn,
		MaxIdleConnsPerHost:   64,
		NeverResend:           true,
	})
}
