// Package awsenv builds the AWS SDK configuration every function shares from
// the process environment alone, with the HTTP client of every AWS call
// (shared/h1client's, with explicit timeouts). Local stacks point the SDK at
// DynamoDB Local and a Secrets Manager stand-in with the SDK's own
// variables AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_SECRETS_MANAGER.
//
// It reads what Lambda sets (AWS_REGION and the execution role's
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN) and the
// endpoint overrides, and nothing else: no shared config or credentials
// files, no profiles, no instance metadata. The SDK's loader that reads
// those (package config) links STS, SSO and IMDS clients whose package
// initialisation alone cost each function's cold start several
// milliseconds (make bench, Cold start); outside Lambda, export
// credentials into the environment (e.g. `aws configure export-credentials
// --format env`).
package awsenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/stipend/stipend/shared/h1client"
)

// Timeouts of every AWS call: each gets at most CallTimeout, a dial at most
// DialTimeout; a connection idle longer than IdleConnTimeout is not reused
// (the SDK's default).
const (
	CallTimeout     = 10 * time.Second
	DialTimeout     = 3 * time.Second
	IdleConnTimeout = 90 * time.Second
)

// MaxIdleConnsPerHost is how many idle connections to one AWS endpoint are
// kept for reuse: a local server under load (make bench: 32 clients, several
// DynamoDB calls per request) would otherwise close and redial most of
// them (the SDK's default keeps 10). A Lambda instance serves one request
// at a time and never reaches it.
const MaxIdleConnsPerHost = 128

// Getenv looks a variable up: os.Getenv in Load, a map in tests.
type Getenv func(name string) string

// Load returns the SDK configuration from the process environment.
func Load(context.Context) (aws.Config, error) { return FromEnv(os.Getenv) }

// FromEnv returns the SDK configuration from getenv: the region
// (AWS_REGION, else AWS_DEFAULT_REGION) and static credentials
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN)
// are required; AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> (the
// service's SDK id in capitals, spaces as underscores: DYNAMODB,
// SECRETS_MANAGER) override endpoints as the SDK documents. Its
// HTTPClient is NewClient's.
func FromEnv(getenv Getenv) (aws.Config, error) {
	region := getenv("AWS_REGION")
	if region == "" {
		region = getenv("AWS_DEFAULT_REGION")
	}
	id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	var missing []string
	if region == "" {
		missing = append(missing, "AWS_REGION")
	}
	if id == "" {
		missing = append(missing, "AWS_ACCESS_KEY_ID")
	}
	if secret == "" {
		missing = append(missing, "AWS_SECRET_ACCESS_KEY")
	}
	if len(missing) > 0 {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w: %s (profiles and config files are not read)",
			errors.New("set in the environment"), strings.Join(missing, ", "))
	}
	cfg := aws.Config{
		Region:        region,
		Credentials:   aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))),
		HTTPClient:    NewClient(),
		ConfigSources: []any{endpoints(getenv)},
	}
	if u := getenv("AWS_ENDPOINT_URL"); u != "" {
		cfg.BaseEndpoint = aws.String(u)
	}
	return cfg, nil
}

// NewClient returns the HTTP client of every AWS call: h1client's HTTP/1.1
// client, which makes each call on the caller's goroutine (net/http's
// spends about 10 µs more CPU a call on its connections' goroutines; see
// package h1client), with CallTimeout, DialTimeout, MaxIdleConnsPerHost and
// IdleConnTimeout, TLS 1.2 at least, no redirect followed. Requests that
// HTTP_PROXY or HTTPS_PROXY (and NO_PROXY) send through a proxy, which
// Lambda never sets, go to NewHTTPClient's client instead.
func NewClient() *h1client.Client {
	return h1client.New(h1client.Options{
		DialTimeout:         DialTimeout,
		CallTimeout:         CallTimeout,
		MaxIdleConnsPerHost: MaxIdleConnsPerHost,
		IdleConnTimeout:     IdleConnTimeout,
		Fallback:            NewHTTPClient(),
	})
}

// NewHTTPClient returns net/http's client configured for AWS calls, which
// NewClient falls back on for requests through a proxy: the SDK's defaults
// (its transport's timeouts and TLS 1.2 at least, no redirect followed)
// with CallTimeout, DialTimeout, MaxIdleConnsPerHost and IdleConnTimeout.
// It is a plain *http.Client over an *http.Transport, so net/http applies
// the call timeout as a context deadline, and not at all when the
// caller's context ends sooner. (The SDK's buildable client wraps its
// transport, which net/http does not recognise: every call then paid for a
// timer, a channel and a goroutine that watched them.)
func NewHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: CallTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConnsPerHost:   MaxIdleConnsPerHost,
			MaxConnsPerHost:       2048,
			IdleConnTimeout:       IdleConnTimeout,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		},
		// AWS's JSON services answer where they are asked; a signed
		// request is never sent on to another address.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// endpoints answers the SDK's service clients' question for a configured
// endpoint (they look for a GetServiceBaseEndpoint method among
// aws.Config.ConfigSources) from AWS_ENDPOINT_URL_<SERVICE>.
type endpoints Getenv

func (e endpoints) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	name := "AWS_ENDPOINT_URL_" + strings.ToUpper(strings.ReplaceAll(sdkID, " ", "_"))
	if v := e(name); v != "" {
		return v, true, nil
	}
	return "", false, nil
}
