// Package awsenv builds the AWS SDK configuration every function shares from
// the process environment alone, with explicit timeouts on the SDK's HTTP
// client. Local stacks point the SDK at DynamoDB Local and a Secrets Manager
// stand-in with the SDK's own variables AWS_ENDPOINT_URL_DYNAMODB and
// AWS_ENDPOINT_URL_SECRETS_MANAGER.
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
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Timeouts of every SDK call: each gets at most CallTimeout, a dial at most
// DialTimeout.
const (
	CallTimeout = 10 * time.Second
	DialTimeout = 3 * time.Second
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
// SECRETS_MANAGER) override endpoints as the SDK documents.
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
	client := awshttp.NewBuildableClient().
		WithTimeout(CallTimeout).
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = DialTimeout }).
		WithTransportOptions(func(t *http.Transport) { t.MaxIdleConnsPerHost = MaxIdleConnsPerHost })
	cfg := aws.Config{
		Region:        region,
		Credentials:   aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))),
		HTTPClient:    client,
		ConfigSources: []any{endpoints(getenv)},
	}
	if u := getenv("AWS_ENDPOINT_URL"); u != "" {
		cfg.BaseEndpoint = aws.String(u)
	}
	return cfg, nil
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
