package awsjson

// SigV4 for the requests Call makes: always a POST to the endpoint's root,
// with no query and the same few headers, so the canonical request is
// written straight from them instead of from a generic header map (the
// SDK's signer sorts, lowercases and copies every header of every request).
// The derived signing key changes once a day: it is kept and reused. What
// this computes is what the SDK's signer computes for the same request
// (TestSignerMatchesSDK); an endpoint with a path or a query, or whose
// host is an IPv6 literal or has an empty port, none of which Call needs,
// is signed by the SDK's signer.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// signer signs one Client's requests.
type signer struct {
	service, region string
	host            string // the canonical host header: the endpoint's, without a default port
	keys            atomic.Pointer[signingKey]
}

// signingKey is the key derived from one secret for one day, the
// credential scope of that day, and HMACs keyed with it. A request's HMAC
// is taken from macs and put back: hmac.New's half-dozen allocations are
// made once per key, not once per request.
type signingKey struct {
	secret, day string
	key         []byte
	scope       string // day/region/service/aws4_request
	macs        sync.Pool
}

// mac returns an HMAC-SHA256 keyed with k, reset; give it back with
// k.macs.Put.
func (k *signingKey) mac() hash.Hash {
	if m, ok := k.macs.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, k.key)
}

// newSigner returns the signer of requests to u, or nil when u has a path
// or a query (then the SDK's signer signs).
func newSigner(u *url.URL, service, region string) *signer {
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Opaque != "" || u.Host == "" ||
		strings.ContainsAny(u.Host, "[]") || strings.HasSuffix(u.Host, ":") {
		return nil // IPv6 literals and empty ports: the SDK's rules for the host
	}
	host := u.Host
	if h, port, ok := strings.Cut(host, ":"); ok && !strings.Contains(port, ":") &&
		(u.Scheme == "https" && port == "443" || u.Scheme == "http" && port == "80") {
		host = h
	}
	return &signer{service: service, region: region, host: host}
}

// signedHeaders are the values of the headers a request carries and signs
// (besides Host and Accept-Encoding: identity); token is "" without a
// session token.
type signedHeaders struct {
	contentLength int
	contentType   string
	amzDate       string
	token         string
	target        string
}

// authorization is the Authorization header of a request with h, whose
// body's SHA-256 is sum, signed with creds at h.amzDate.
func (s *signer) authorization(creds aws.Credentials, h signedHeaders, sum *[sha256.Size]byte) string {
	day := h.amzDate[:8]
	names := "accept-encoding;content-length;content-type;host;x-amz-date;x-amz-target"
	if h.token != "" {
		names = "accept-encoding;content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
	}
	// The canonical request: method, path, query, headers, their names,
	// the payload's hash.
	// Room for the canonical request, or for the string to sign, the
	// signature and the header after it, whichever is longer.
	buf := make([]byte, 0, 512+len(h.contentType)+len(s.host)+len(h.token)+len(h.target)+2*sha256.Size)
	buf = append(buf, "POST\n/\n\naccept-encoding:identity\ncontent-length:"...)
	buf = strconv.AppendInt(buf, int64(h.contentLength), 10)
	buf = append(buf, "\ncontent-type:"...)
	buf = append(buf, h.contentType...)
	buf = append(buf, "\nhost:"...)
	buf = append(buf, s.host...)
	buf = append(buf, "\nx-amz-date:"...)
	buf = append(buf, h.amzDate...)
	if h.token != "" {
		buf = append(buf, "\nx-amz-security-token:"...)
		buf = append(buf, h.token...)
	}
	buf = append(buf, "\nx-amz-target:"...)
	buf = append(buf, h.target...)
	buf = append(buf, "\n\n"...)
	buf = append(buf, names...)
	buf = append(buf, '\n')
	buf = hex.AppendEncode(buf, sum[:])
	canonical := sha256.Sum256(buf)

	// The string to sign, in the same buffer.
	k := s.key(creds.SecretAccessKey, day)
	buf = append(buf[:0], "AWS4-HMAC-SHA256\n"...)
	buf = append(buf, h.amzDate...)
	buf = append(buf, '\n')
	buf = append(buf, k.scope...)
	buf = append(buf, '\n')
	buf = hex.AppendEncode(buf, canonical[:])
	mac := k.mac()
	mac.Write(buf)
	// The signature goes after the string to sign, and the header after
	// the signature, all in buf.
	at := len(buf)
	buf = mac.Sum(buf)
	k.macs.Put(mac)
	signature := buf[at:]
	header := len(buf)
	buf = append(buf, "AWS4-HMAC-SHA256 Credential="...)
	buf = append(buf, creds.AccessKeyID...)
	buf = append(buf, '/')
	buf = append(buf, k.scope...)
	buf = append(buf, ", SignedHeaders="...)
	buf = append(buf, names...)
	buf = append(buf, ", Signature="...)
	buf = hex.AppendEncode(buf, signature)
	return string(buf[header:])
}

// amzDate is t in UTC as X-Amz-Date writes it, "20060102T150405Z": the
// same as t.UTC().Format of that layout, in a tenth of the time (every
// call signs one).
func amzDate(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	if year < 0 || year > 9999 {
		return t.Format("20060102T150405Z")
	}
	var b [16]byte
	put := func(i, v, width int) {
		for j := i + width - 1; j >= i; j-- {
			b[j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	put(4, int(month), 2)
	put(6, day, 2)
	b[8] = 'T'
	put(9, hour, 2)
	put(11, minute, 2)
	put(13, second, 2)
	b[15] = 'Z'
	return string(b[:])
}

// key is the signing key of secret on day (yyyymmdd), derived once a day
// (or when the secret changes) and kept.
func (s *signer) key(secret, day string) *signingKey {
	if k := s.keys.Load(); k != nil && k.day == day && k.secret == secret {
		return k
	}
	key := hmacSHA256([]byte("AWS4"+secret), day)
	key = hmacSHA256(key, s.region)
	key = hmacSHA256(key, s.service)
	key = hmacSHA256(key, "aws4_request")
	k := &signingKey{secret: secret, day: day, key: key, scope: day + "/" + s.region + "/" + s.service + "/aws4_request"}
	s.keys.Store(k)
	return k
}

func hmacSHA256(key []byte, data string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(data))
	return mac.Sum(nil)
}
