package awsjson

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/h1client"
	"github.com/stipend/stipend/shared/testclock"
)

// answer is one canned answer of a test server.
type answer struct {
	status int
	header map[string]string
	body   string
}

// server answers requests in turn with answers (the last one repeated)
// and keeps what it received.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	bodies   []string
}

func newServer(t *testing.T, answers ...answer) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.requests)
		s.requests = append(s.requests, r)
		s.bodies = append(s.bodies, string(b))
		s.mu.Unlock()
		a := answers[min(n, len(answers)-1)]
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

var testService = Service{SigningName: "secretsmanager", TargetPrefix: "secretsmanager.", ContentType: "application/x-amz-json-1.1"}

// httpClients are the HTTP clients the tests call with: h1client's, which
// the functions use (awsenv.NewClient), and net/http's.
var httpClients = []struct {
	name string
	new  func() HTTPClient
}{
	{"h1client", func() HTTPClient {
		return h1client.New(h1client.Options{DialTimeout: time.Second, CallTimeout: 5 * time.Second, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute})
	}},
	{"net/http", func() HTTPClient { return &http.Client{Timeout: 5 * time.Second} }},
}

// testClient is a Client of url on h1client's HTTP client.
func testClient(url string) *Client { return testClientWith(url, httpClients[0].new()) }

func testClientWith(url string, hc HTTPClient) *Client {
	return New(Config{
		Service: testService, Endpoint: url, Region: "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDJSON", "json-secret", "session-tok"),
		HTTPClient:  hc,
	})
}

// TestCall checks answers, error answers and retries: 2xx bodies are
// returned, error codes and messages read from the header or the body,
// throttling, 5xx and failed connections retried up to three attempts,
// other errors not retried; on each of httpClients.
func TestCall(t *testing.T) {
	for _, hc := range httpClients {
		t.Run(hc.name, func(t *testing.T) { testCall(t, hc.new) })
	}
}

func testCall(t *testing.T, newHTTPClient func() HTTPClient) {
	const ns = "com.amazonaws.secretsmanager#"
	tests := []struct {
		name         string
		answers      []answer
		closed       bool // nobody listens
		wantBody     string
		wantStatus   int
		wantCode     string
		wantMessage  string
		wantAttempts int // requests made
	}{
		{name: "ok", answers: []answer{{200, nil, `{"ARN":"a"}`}}, wantBody: `{"ARN":"a"}`, wantAttempts: 1},
		{name: "client error, code from the body's __type, not retried",
			answers:    []answer{{400, nil, `{"__type":"` + ns + `ResourceNotFoundException","Message":"no such secret"}`}},
			wantStatus: 400, wantCode: "ResourceNotFoundException", wantMessage: "no such secret", wantAttempts: 1},
		{name: "the header's code wins, lower-case message",
			answers:    []answer{{400, map[string]string{"X-Amzn-ErrorType": "ResourceExistsException:http://internal.amazon.com/"}, `{"__type":"Other","message":"exists"}`}},
			wantStatus: 400, wantCode: "ResourceExistsException", wantMessage: "exists", wantAttempts: 1},
		{name: "throttled, then ok",
			answers:  []answer{{400, nil, `{"__type":"ThrottlingException","message":"slow down"}`}, {200, nil, `{}`}},
			wantBody: `{}`, wantAttempts: 2},
		{name: "server errors: three attempts",
			answers:    []answer{{500, nil, `{"__type":"InternalServiceError","message":"oops"}`}},
			wantStatus: 500, wantCode: "InternalServiceError", wantMessage: "oops", wantAttempts: 3},
		{name: "undecodable error body: the status speaks",
			answers:    []answer{{403, nil, `<html>`}},
			wantStatus: 403, wantAttempts: 1},
		{name: "no answer: three attempts", closed: true, wantAttempts: 3},
		{name: "the body's checksum matches",
			answers:  []answer{{200, map[string]string{"X-Amz-Crc32": "2745614147"}, `{}`}},
			wantBody: `{}`, wantAttempts: 1},
		{name: "a damaged body is no answer: three attempts",
			answers:      []answer{{200, map[string]string{"X-Amz-Crc32": "1"}, `{}`}},
			wantAttempts: 3},
		{name: "a checksum that is no number matches nothing",
			answers:      []answer{{200, map[string]string{"X-Amz-Crc32": "2745614147x"}, `{}`}},
			wantAttempts: 3},
		{name: "a checksum past 32 bits (the sum plus 2^32) matches nothing",
			answers:      []answer{{200, map[string]string{"X-Amz-Crc32": "7040581443"}, `{}`}},
			wantAttempts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "http://127.0.0.1:1"
			var srv *server
			if !tt.closed {
				srv = newServer(t, tt.answers...)
				url = srv.URL
			}
			body, err := testClientWith(url, newHTTPClient()).Call(context.Background(), "GetSecretValue", []byte(`{"SecretId":"s"}`))
			if tt.wantBody != "" {
				if err != nil || string(body) != tt.wantBody {
					t.Fatalf("Call = %q, %v; want %q", body, err, tt.wantBody)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Call = %q, %v; want an *Error", body, err)
				}
				if e.Status != tt.wantStatus || e.Code != tt.wantCode || e.Message != tt.wantMessage ||
					e.Attempts != tt.wantAttempts || e.Operation != "GetSecretValue" {
					t.Errorf("error %+v; want status %d, code %q, message %q, %d attempts",
						e, tt.wantStatus, tt.wantCode, tt.wantMessage, tt.wantAttempts)
				}
				if e.Status == 0 && e.Err == nil {
					t.Errorf("no answer, but no transport error in %+v", e)
				}
			}
			if srv != nil && srv.count() != tt.wantAttempts {
				t.Errorf("%d requests, want %d", srv.count(), tt.wantAttempts)
			}
		})
	}
}

// TestCallStopsWithContext checks a cancelled context ends the retries.
func TestCallStopsWithContext(t *testing.T) {
	srv := newServer(t, answer{500, nil, `{}`})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := testClient(srv.URL).Call(ctx, "GetSecretValue", []byte(`{}`))
	var e *Error
	if !errors.As(err, &e) || e.Attempts != 1 {
		t.Fatalf("Call = %v, want an *Error after one attempt", err)
	}
}

// TestCallSigns checks the request's headers and that its SigV4 signature
// is the one the SDK's signer computes for the request as received (as
// h1client sent it).
func TestCallSigns(t *testing.T) {
	srv := newServer(t, answer{200, nil, `{}`})
	if _, err := testClient(srv.URL).Call(context.Background(), "GetSecretValue", []byte(`{"SecretId":"s"}`)); err != nil {
		t.Fatal(err)
	}
	got, body := srv.requests[0], srv.bodies[0]
	for h, want := range map[string]string{
		"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager.GetSecretValue",
		"X-Amz-Security-Token": "session-tok", "Accept-Encoding": "identity",
	} {
		if got.Header.Get(h) != want {
			t.Errorf("%s = %q, want %q", h, got.Header.Get(h), want)
		}
	}
	auth, date := got.Header.Get("Authorization"), got.Header.Get("X-Amz-Date")
	if len(date) < 8 || !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDJSON/"+date[:8]+"/eu-west-1/secretsmanager/aws4_request, ") {
		t.Fatalf("Authorization = %q", auth)
	}
	at, err := time.Parse("20060102T150405Z", date)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	for _, h := range []string{"Content-Type", "X-Amz-Target", "Accept-Encoding"} {
		req.Header.Set(h, got.Header.Get(h))
	}
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: "AKIDJSON", SecretAccessKey: "json-secret", SessionToken: "session-tok"}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "secretsmanager", "eu-west-1", at); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != auth {
		t.Errorf("signature does not verify:\n got %s\nwant %s", auth, req.Header.Get("Authorization"))
	}
}

// TestEndpoint checks Endpoint against the SDK's endpoint rules for both
// services stipend calls, in every partition's kind of region.
func TestEndpoint(t *testing.T) {
	ctx := context.Background()
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "cn-northwest-1",
		"us-gov-west-1", "us-iso-east-1", "us-isob-east-1"}
	for _, region := range regions {
		ddb, err := dynamodb.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, dynamodb.EndpointParameters{Region: aws.String(region)})
		if err != nil {
			t.Fatal(err)
		}
		if got := Endpoint("dynamodb", region); got != ddb.URI.String() {
			t.Errorf("Endpoint(dynamodb, %s) = %s, the SDK says %s", region, got, ddb.URI.String())
		}
		sm, err := secretsmanager.NewDefaultEndpointResolverV2().ResolveEndpoint(ctx, secretsmanager.EndpointParameters{Region: aws.String(region)})
		if err != nil {
			t.Fatal(err)
		}
		if got := Endpoint("secretsmanager", region); got != sm.URI.String() {
			t.Errorf("Endpoint(secretsmanager, %s) = %s, the SDK says %s", region, got, sm.URI.String())
		}
	}
}

// TestConfiguredEndpoint checks the service's own variable wins over
// AWS_ENDPOINT_URL, as with the SDK's clients.
func TestConfiguredEndpoint(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"none", nil, ""},
		{"global", map[string]string{"AWS_ENDPOINT_URL": "http://global:1"}, "http://global:1"},
		{"the service's own", map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://sm:2"}, "http://sm:2"},
		{"both", map[string]string{"AWS_ENDPOINT_URL": "http://global:1", "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://sm:2"}, "http://sm:2"},
		{"another service's", map[string]string{"AWS_ENDPOINT_URL_DYNAMODB": "http://ddb:3"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := awsenv.FromEnv(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			got, err := ConfiguredEndpoint(context.Background(), cfg, "Secrets Manager")
			if err != nil || got != tt.want {
				t.Errorf("ConfiguredEndpoint = %q, %v; want %q", got, err, tt.want)
			}
			// The SDK's client agrees.
			sdk := secretsmanager.NewFromConfig(cfg)
			if want := aws.ToString(sdk.Options().BaseEndpoint); want != got {
				t.Errorf("the SDK's client has %q", want)
			}
		})
	}
}

// TestReadBody: an answer's body is read whole whether its Content-Length
// is right, absent, or smaller than the body (a body reader that does not
// enforce it), and a failing read is an error.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("0123456789", 300)
	tests := []struct {
		name   string
		length int64
		r      io.Reader
		err    bool
	}{
		{"announced", int64(len(body)), strings.NewReader(body), false},
		{"unknown", -1, strings.NewReader(body), false},
		{"announced short", 10, strings.NewReader(body), false},
		{"empty", 0, strings.NewReader(""), false},
		{"past the presized bound", maxPresized + 1, strings.NewReader(body), false},
		{"failing", int64(len(body)), io.MultiReader(strings.NewReader(body[:100]), iotest.ErrReader(errors.New("reset"))), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readBody(&http.Response{ContentLength: tt.length, Body: io.NopCloser(iotest.OneByteReader(tt.r))})
			if tt.err {
				if err == nil {
					t.Fatal("no error from a failing body")
				}
				return
			}
			want := body
			if tt.name == "empty" {
				want = ""
			}
			if err != nil || string(got) != want {
				t.Fatalf("readBody = %d bytes, %v; want %d bytes", len(got), err, len(want))
			}
		})
	}
}

// TestRequestBodyInMemory: net/http's client (the fallback for proxied
// requests) knows the body of a signed request for one in memory, and
// writes the header and body in one write, not two (a review found a body
// type of our own that it did not know).
func TestRequestBodyInMemory(t *testing.T) {
	c := New(Config{Service: testService, Endpoint: "http://127.0.0.1:8000", Region: "us-east-1"})
	body := []byte(`{"TableName":"t"}`)
	sum := sha256.Sum256(body)
	req, err := c.request(context.Background(), "GetItem", body, &sum, aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}, testclock.Now(t))
	if err != nil {
		t.Fatal(err)
	}
	var w writeCounter
	if err := req.Write(&w); err != nil {
		t.Fatal(err)
	}
	if w.writes != 1 {
		t.Fatalf("net/http wrote the request in %d writes, want 1", w.writes)
	}
}

type writeCounter struct{ writes int }

func (w *writeCounter) Write(p []byte) (int, error) { w.writes++; return len(p), nil }

// TestCrcMatches: crcMatches reads X-Amz-Crc32 as the SDK's DynamoDB
// checksum check does (strconv.ParseUint(v, 10, 32)): leading zeros
// match, anything else that is not the sum in decimal does not (cases
// from a review).
func TestCrcMatches(t *testing.T) {
	body := []byte(`{}`)
	sum := strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10) // 2745614147
	for _, tt := range []struct {
		want string
		ok   bool
	}{
		{sum, true},
		{"000" + sum, true},
		{"+" + sum, false},
		{" " + sum, false},
		{sum + " ", false},
		{"", false},
		{"-" + sum, false},
		{"0x" + strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 16), false},
		{"2_745_614_147", false},
		{strconv.FormatUint(uint64(crc32.ChecksumIEEE(body))+1<<32, 10), false}, // the sum plus 2^32
		{"99999999999999999999999", false},
	} {
		if got := crcMatches(tt.want, body); got != tt.ok {
			t.Errorf("crcMatches(%q) = %v, want %v", tt.want, got, tt.ok)
		}
	}
	if !crcMatches("0", nil) {
		t.Error("the empty body's sum is 0")
	}
}
