// Package awsjson calls AWS services that speak the JSON protocol
// (awsJson1_0 and awsJson1_1: DynamoDB, Secrets Manager): a JSON body
// POSTed with an X-Amz-Target header naming the operation, signed with
// SigV4 (sign.go), on the caller's HTTP client (with its
// timeouts). It carries bytes: callers encode their inputs and decode the
// answers, and get an answer that is not 2xx as an *Error with the
// service's error code, message and body.
//
// It retries what the SDK's standard retryer retries: no answer (a failed
// or timed-out connection, or a body that fails the X-Amz-Crc32 checksum
// DynamoDB sends), 5xx answers and throttling codes, three
// attempts in all with jittered exponential backoff, while the context
// lasts. Callers keep their writes idempotent across attempts (conditions,
// client request tokens), as they had to with the SDK.
//
// The SDK's service clients spend most of a call's CPU in their middleware
// stacks, and their packages' schema and endpoint tables cost every cold
// start milliseconds of initialisation; this package links neither.
package awsjson

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Service names a JSON-protocol service as its requests need it.
type Service struct {
	SigningName  string // SigV4 service name: "dynamodb", "secretsmanager"
	TargetPrefix string // prefixed to the operation in X-Amz-Target: "DynamoDB_20120810."
	ContentType  string // "application/x-amz-json-1.0" or "application/x-amz-json-1.1"
}

// HTTPClient sends a request; *http.Client and the SDK's clients are ones.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Config is what a Client calls with.
type Config struct {
	Service     Service
	Endpoint    string // the URL requests are POSTed to
	Region      string // the signing region
	Credentials aws.CredentialsProvider
	HTTPClient  HTTPClient
}

// Client calls one service at one endpoint. It is safe for concurrent use.
type Client struct {
	cfg      Config
	url      *url.URL // the endpoint, parsed; nil when it does not parse
	fast     *signer  // nil for an endpoint with a path or query (then sdk signs)
	sdk      *v4.Signer
	urlError error
}

// DefaultTimeout bounds a call's attempt when Config has no HTTP client.
const DefaultTimeout = 10 * time.Second

// New returns a Client for cfg. Without an HTTP client it uses one whose
// attempts time out after DefaultTimeout; without credentials its calls
// fail.
func New(cfg Config) *Client {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.Credentials == nil {
		cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no AWS credentials configured")
		})
	}
	c := &Client{cfg: cfg, sdk: v4.NewSigner()}
	c.url, c.urlError = url.Parse(cfg.Endpoint)
	if c.urlError == nil {
		c.fast = newSigner(c.url, cfg.Service.SigningName, cfg.Region)
	}
	return c
}

// Attempts and backoff of a call: the pause before attempt n+1 is random
// up to min(backoff << n, maxBackoff).
const (
	attempts   = 3
	backoff    = 50 * time.Millisecond
	maxBackoff = time.Second
)

// Error is a call that got no 2xx answer.
type Error struct {
	Operation string
	Status    int    // the answer's status; 0 when none arrived (Err says why)
	Code      string // the error's name alone ("ThrottlingException"); "" when the answer named none
	Message   string
	Body      []byte // the answer's body, for callers that decode more of it
	Attempts  int
	Err       error // why no answer arrived, when Status is 0
}

func (e *Error) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("%s (%d attempts): %v", e.Operation, e.Attempts, e.Err)
	case e.Code == "":
		return fmt.Sprintf("%s: status %d", e.Operation, e.Status)
	default:
		return fmt.Sprintf("%s: status %d: %s: %s", e.Operation, e.Status, e.Code, e.Message)
	}
}

// Unwrap gives the transport's error when no answer arrived.
func (e *Error) Unwrap() error { return e.Err }

// Call POSTs body as operation op and returns the body of a 2xx answer;
// anything else is an *Error.
func (c *Client) Call(ctx context.Context, op string, body []byte) ([]byte, error) {
	sum := sha256.Sum256(body)
	for attempt := 1; ; attempt++ {
		res, err := c.attempt(ctx, op, body, &sum)
		if err == nil {
			return res, nil
		}
		err.Operation, err.Attempts = op, attempt
		if attempt >= attempts || ctx.Err() != nil || !err.retryable() {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(mrand.N(min(backoff<<attempt, maxBackoff))):
		}
	}
}

// attempt makes one request.
// sum is body's SHA-256.
func (c *Client) attempt(ctx context.Context, op string, body []byte, sum *[sha256.Size]byte) ([]byte, *Error) {
	creds, err := c.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("credentials: %w", err)}
	}
	req, err := c.request(ctx, op, body, sum, creds, time.Now().UTC())
	if err != nil {
		return nil, &Error{Err: err}
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, &Error{Err: err}
	}
	defer resp.Body.Close()
	res, err := readBody(resp)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("read the answer (status %d): %w", resp.StatusCode, err)}
	}
	if want := resp.Header.Get("X-Amz-Crc32"); want != "" && !crcMatches(want, res) {
		// DynamoDB's checksum of the body, which the SDK checks too: a
		// damaged answer is no answer.
		return nil, &Error{Err: fmt.Errorf("the answer (status %d) does not match its X-Amz-Crc32 checksum", resp.StatusCode)}
	}
	if resp.StatusCode/100 == 2 {
		return res, nil
	}
	return nil, answerError(resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), res)
}

// maxPresized bounds the room readBody makes from an answer's
// Content-Length before any of it arrived.
const maxPresized = 1 << 20

// readBody reads resp's body whole: into one buffer of its Content-Length
// when it has one (every DynamoDB answer), else as io.ReadAll does.
func readBody(resp *http.Response) ([]byte, error) {
	n := resp.ContentLength
	if n < 0 || n > maxPresized {
		return io.ReadAll(resp.Body)
	}
	// One byte more than announced, so that the read that meets EOF (and
	// returns a pooled connection) needs no other buffer; a body longer
	// than announced still grows it.
	buf := make([]byte, 0, n+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// request is the signed POST of body, whose SHA-256 is sum, as operation op
// at t.
func (c *Client) request(ctx context.Context, op string, body []byte, sum *[sha256.Size]byte, creds aws.Credentials, t time.Time) (*http.Request, error) {
	if c.urlError != nil {
		return nil, c.urlError
	}
	if c.fast == nil || len(body) == 0 { // Call's bodies are JSON: never empty
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.Endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", c.cfg.Service.ContentType)
		req.Header.Set("X-Amz-Target", c.cfg.Service.TargetPrefix+op)
		req.Header.Set("Accept-Encoding", "identity")
		if err := c.sdk.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), c.cfg.Service.SigningName, c.cfg.Region, t); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		return req, nil
	}
	h := signedHeaders{
		contentLength: len(body), contentType: c.cfg.Service.ContentType,
		amzDate: amzDate(t), token: creds.SessionToken, target: c.cfg.Service.TargetPrefix + op,
	}
	// One array holds the header's values; each name's slice is a piece
	// of it (a slice per name would be an allocation per name).
	v := new([6]string)
	v[0], v[1], v[2], v[3] = h.contentType, h.target, "identity", h.amzDate
	v[4] = c.fast.authorization(creds, h, sum)
	header := make(http.Header, 6)
	header["Content-Type"] = v[0:1:1]
	header["X-Amz-Target"] = v[1:2:2]
	header["Accept-Encoding"] = v[2:3:3]
	header["X-Amz-Date"] = v[3:4:4]
	header["Authorization"] = v[4:5:5]
	if h.token != "" {
		v[5] = h.token
		header["X-Amz-Security-Token"] = v[5:6:6]
	}
	u := *c.url
	req := http.Request{ // WithContext copies it: it stays on the stack
		Method: http.MethodPost, URL: &u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, Host: c.fast.host, ContentLength: int64(len(body)),
		// io.NopCloser of a bytes.Reader, which net/http's client (the
		// fallback for proxied requests) knows for a body in memory: it
		// writes the header and body in one write.
		Body: io.NopCloser(bytes.NewReader(body)),
		GetBody: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(body)), nil
		},
	}
	return req.WithContext(ctx), nil
}

// answerError reads an error answer: its code from the X-Amzn-ErrorType
// header or the body's __type, its message from message or Message.
func answerError(status int, headerType string, body []byte) *Error {
	var b struct {
		Type         string `json:"__type"`
		Message      string `json:"message"`
		MessageUpper string `json:"Message"`
	}
	_ = json.Unmarshal(body, &b) // an undecodable body leaves the status to speak
	code := ErrorCode(headerType)
	if code == "" {
		code = ErrorCode(b.Type)
	}
	msg := b.Message
	if msg == "" {
		msg = b.MessageUpper
	}
	return &Error{Status: status, Code: code, Message: msg, Body: body}
}

// ErrorCode is an error type's name alone: the
// "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException" and
// "Name:http://internal.amazon.com/..." forms shortened as the SDK does.
func ErrorCode(s string) string {
	s, _, _ = strings.Cut(s, ":")
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// retryable reports whether another attempt may succeed: no answer, a
// server error, or one of the codes the SDK's standard retryer retries
// (throttling and transient timeouts).
func (e *Error) retryable() bool {
	if e.Status == 0 || e.Status >= 500 {
		return true
	}
	switch e.Code {
	case "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
		"TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
		"RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
		"SlowDown", "PriorRequestNotComplete", "RequestTimeout", "RequestTimeoutException":
		return true
	}
	return false
}

// Endpoint is the URL of service endpointPrefix in region (e.g.
// "secretsmanager", "us-east-1" gives https://secretsmanager.us-east-1.amazonaws.com),
// by the partitions' DNS suffixes: amazonaws.com.cn in China, the ISO
// partitions' own, amazonaws.com elsewhere (commercial and GovCloud).
func Endpoint(endpointPrefix, region string) string {
	suffix := "amazonaws.com"
	switch {
	case strings.HasPrefix(region, "cn-"):
		suffix = "amazonaws.com.cn"
	case strings.HasPrefix(region, "us-isob-"):
		suffix = "sc2s.sgov.gov"
	case strings.HasPrefix(region, "us-isof-"):
		suffix = "csp.hci.ic.gov"
	case strings.HasPrefix(region, "us-iso-"):
		suffix = "c2s.ic.gov"
	case strings.HasPrefix(region, "eu-isoe-"):
		suffix = "cloud.adc-e.uk"
	}
	return "https://" + endpointPrefix + "." + region + "." + suffix
}

// ConfiguredEndpoint is the endpoint cfg sets for the service whose SDK id
// is sdkID ("DynamoDB", "Secrets Manager"), as the SDK's clients read it: a
// service-specific one from cfg.ConfigSources (AWS_ENDPOINT_URL_<SERVICE>,
// see awsenv), else cfg.BaseEndpoint (AWS_ENDPOINT_URL); "" when neither.
func ConfiguredEndpoint(ctx context.Context, cfg aws.Config, sdkID string) (string, error) {
	type serviceEndpoints interface {
		GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
	}
	for _, src := range cfg.ConfigSources {
		if s, ok := src.(serviceEndpoints); ok {
			v, found, err := s.GetServiceBaseEndpoint(ctx, sdkID)
			if err != nil {
				return "", fmt.Errorf("the endpoint of %s: %w", sdkID, err)
			}
			if found && v != "" {
				return v, nil
			}
		}
	}
	return aws.ToString(cfg.BaseEndpoint), nil
}

// ServiceEndpoint is the URL a client of the service whose SDK id is sdkID
// calls: the one cfg configures for it (ConfiguredEndpoint), else the
// region's (Endpoint with endpointPrefix); an error when cfg has neither
// that nor a region.
func ServiceEndpoint(ctx context.Context, cfg aws.Config, sdkID, endpointPrefix string) (string, error) {
	url, err := ConfiguredEndpoint(ctx, cfg, sdkID)
	if err != nil || url != "" {
		return url, err
	}
	if cfg.Region == "" {
		return "", fmt.Errorf("no endpoint for %s: no region configured (AWS_REGION)", sdkID)
	}
	return Endpoint(endpointPrefix, cfg.Region), nil
}

// RequestToken is a new client request token for an idempotent write
// (DynamoDB's TransactWriteItems, Secrets Manager's CreateSecret and
// PutSecretValue): a random UUID, version 4, as the SDK makes them. Send
// the same token on every attempt of one write.
func RequestToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("request token: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// crcMatches reports whether want, an X-Amz-Crc32 header (decimal), is
// body's CRC-32 (IEEE), compared as numbers: formatting the sum would be
// a string per call.
func crcMatches(want string, body []byte) bool {
	v, err := strconv.ParseUint(want, 10, 32)
	return err == nil && uint32(v) == crc32.ChecksumIEEE(body)
}
