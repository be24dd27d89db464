package proxy

// The HTTP client that calls providers.

import (
	"net"
	"net/http"
	"time"
)

// Timeouts bound every phase of an upstream call except a response body,
// whose pace the model sets; Config.IdleTimeout bounds the gaps in it.
type Timeouts struct {
	Dial, TLSHandshake, ResponseHeader, IdleConn time.Duration
}

// DefaultTimeouts suit a Lambda with a 5-minute limit: a reasoning model may
// think for minutes before a non-streamed response's headers arrive.
var DefaultTimeouts = Timeouts{Dial: 5 * time.Second, TLSHandshake: 5 * time.Second, ResponseHeader: 240 * time.Second, IdleConn: 90 * time.Second}

// NewUpstreamClient returns an HTTP client for providers with explicit
// timeouts and no transparent decompression (it would buffer streams).
func NewUpstreamClient(t Timeouts) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   t.TLSHandshake,
			ResponseHeaderTimeout: t.ResponseHeader,
			IdleConnTimeout:       t.IdleConn,
			MaxIdleConnsPerHost:   64,
			ForceAttemptHTTP2:     true,
			DisableCompression:    true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
