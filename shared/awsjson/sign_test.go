package awsjson

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/stipend/stipend/shared/testclock"
)

// TestSignerMatchesSDK: the request Client builds and signs carries the
// headers, the host and the signature the SDK's signer gives the same
// request, for each kind of endpoint, with and without a session token,
// as the day and the secret change (the derived key is kept between them).
func TestSignerMatchesSDK(t *testing.T) {
	// A second before midnight (of a day from the tests' clock): the
	// requests below cross into the next day.
	day := testclock.Now(t).Truncate(24 * time.Hour).Add(24*time.Hour - time.Second)
	creds := []aws.Credentials{
		{AccessKeyID: "AKIDONE", SecretAccessKey: "secret-one"},
		{AccessKeyID: "ASIATWO", SecretAccessKey: "secret/two+", SessionToken: "IQoJb3JpZ2luX2VjEJr//////////session=="},
		{AccessKeyID: "AKIDONE", SecretAccessKey: "secret-rotated"},
	}
	services := []Service{
		{SigningName: "dynamodb", TargetPrefix: "DynamoDB_20120810.", ContentType: "application/x-amz-json-1.0"},
		{SigningName: "secretsmanager", TargetPrefix: "secretsmanager.", ContentType: "application/x-amz-json-1.1"},
	}
	endpoints := []string{
		"https://dynamodb.us-east-1.amazonaws.com",
		"https://dynamodb.eu-west-1.amazonaws.com:443",
		"https://secretsmanager.cn-north-1.amazonaws.com.cn/",
		"http://127.0.0.1:8000",
		"http://localhost:80",
		"https://vpce-1a2b.dynamodb.us-east-1.vpce.amazonaws.com:8443",
	}
	bodies := []string{`{"TableName":"t","Key":{"pk":{"S":"KEY#a"}}}`, `{"SecretId":"stipend/provider/é"}`}
	n := 0
	for _, endpoint := range endpoints {
		for _, svc := range services {
			c := New(Config{Service: svc, Endpoint: endpoint, Region: "us-east-1"})
			if c.fast == nil {
				t.Fatalf("%s: no fast signer", endpoint)
			}
			for i, cr := range creds {
				for j, body := range bodies {
					at := day.Add(time.Duration(i+j) * time.Second) // crosses midnight
					sum := sha256.Sum256([]byte(body))
					hash := hex.EncodeToString(sum[:])
					got, err := c.request(context.Background(), "GetItem", []byte(body), &sum, cr, at)
					if err != nil {
						t.Fatal(err)
					}
					want, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					want.Header.Set("Content-Type", svc.ContentType)
					want.Header.Set("X-Amz-Target", svc.TargetPrefix+"GetItem")
					want.Header.Set("Accept-Encoding", "identity")
					if err := v4.NewSigner().SignHTTP(context.Background(), cr, want, hash, svc.SigningName, "us-east-1", at); err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("%s %s creds %d body %d", endpoint, svc.SigningName, i, j)
					if !maps.EqualFunc(got.Header, want.Header, slices.Equal) {
						t.Errorf("%s: headers\n got %v\nwant %v", name, got.Header, want.Header)
					}
					if got.Host != want.Host && !(want.Host == want.URL.Host && got.Host == got.URL.Host) {
						t.Errorf("%s: host %q, want %q", name, got.Host, want.Host)
					}
					if got.URL.String() != want.URL.String() || got.ContentLength != want.ContentLength || got.Method != want.Method {
						t.Errorf("%s: %s %s (%d bytes), want %s %s (%d)", name, got.Method, got.URL, got.ContentLength, want.Method, want.URL, want.ContentLength)
					}
					n++
				}
			}
		}
	}
	if n != len(endpoints)*len(services)*len(creds)*len(bodies) {
		t.Fatalf("compared %d requests", n)
	}
}

// TestSignerFallsBack: an endpoint with a path or a query, an IPv6 host or
// an empty port is signed by the SDK's signer, which escapes and sorts the
// path and query and strips the host's default or empty port.
func TestSignerFallsBack(t *testing.T) {
	for _, endpoint := range []string{"https://proxy.example.com/dynamodb", "https://example.com/?a=b", "https://[::1]:443", "http://host:"} {
		if c := New(Config{Endpoint: endpoint, Region: "us-east-1"}); c.fast != nil {
			t.Errorf("%s: signed without the SDK", endpoint)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	c := New(Config{Service: Service{SigningName: "dynamodb", TargetPrefix: "DynamoDB_20120810.", ContentType: "application/x-amz-json-1.0"},
		Endpoint: "https://dynamodb.us-east-1.amazonaws.com", Region: "us-east-1"})
	creds := aws.Credentials{AccessKeyID: "ASIATWO", SecretAccessKey: "secret", SessionToken: strings.Repeat("t", 900)}
	body := []byte(strings.Repeat("x", 700))
	sum := sha256.Sum256(body)
	at := time.Now().UTC()
	b.Run("stipend", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.request(context.Background(), "UpdateItem", body, &sum, creds, at); err != nil {
				b.Fatal(err)
			}
		}
	})
	c.fast = nil
	b.Run("sdk", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.request(context.Background(), "UpdateItem", body, &sum, creds, at); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAmzDate checks amzDate against time.Format on edges and on random
// instants of the years it writes itself and beyond.
func TestAmzDate(t *testing.T) {
	const layout = "20060102T150405Z"
	times := []time.Time{
		time.Date(2026, 12, 6, 23, 59, 59, 999999999, time.UTC),
		time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2028, 2, 29, 12, 0, 0, 0, time.FixedZone("UTC+14", 14*3600)), // another day in UTC
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // past four digits: Format's own way
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		times = append(times, time.Unix(r.Int64N(1<<38)-1<<37, 0).In(time.FixedZone("", int(r.Int64N(28*3600))-14*3600)))
	}
	for _, at := range times {
		if got, want := amzDate(at), at.UTC().Format(layout); got != want {
			t.Fatalf("amzDate(%v) = %q, want %q", at, got, want)
		}
	}
}

// TestSignerConcurrent: goroutines signing at once with two secrets that
// take turns (each turn derives a new key, with HMACs of its own) get the
// signatures a fresh signer gives, one request at a time.
func TestSignerConcurrent(t *testing.T) {
	at := testclock.Now(t)
	h := signedHeaders{contentLength: 2, contentType: "application/x-amz-json-1.0", amzDate: amzDate(at), target: "DynamoDB_20120810.GetItem"}
	payload := sha256.Sum256([]byte("{}")) // 44136fa3…
	creds := []aws.Credentials{
		{AccessKeyID: "AKIDONE", SecretAccessKey: "secret-one"},
		{AccessKeyID: "AKIDTWO", SecretAccessKey: "secret-two"},
	}
	var want [2]string
	for i, cr := range creds {
		want[i] = (&signer{service: "dynamodb", region: "us-east-1", host: "127.0.0.1:8000"}).authorization(cr, h, &payload)
	}
	s := &signer{service: "dynamodb", region: "us-east-1", host: "127.0.0.1:8000"}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				which := (g + i/10) % 2
				if got := s.authorization(creds[which], h, &payload); got != want[which] {
					t.Errorf("goroutine %d, request %d: %s, want %s", g, i, got, want[which])
					return
				}
			}
		}()
	}
	wg.Wait()
}
