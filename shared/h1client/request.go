package h1client

// What a call sends: the request checked (a token, a value, a host, a URI)
// and what its head leaves for the body.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
)

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
