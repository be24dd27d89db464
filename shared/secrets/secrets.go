// Package secrets keeps provider API keys (and the admin key) in AWS Secrets
// Manager and caches them in memory for a bounded time, so a request never
// waits on Secrets Manager except after a cold start or a TTL expiry.
//
// It calls Secrets Manager's JSON API itself (GetSecretValue, CreateSecret,
// PutSecretValue, through shared/awsjson) rather than through the SDK's
// client, whose package initialisation alone cost each function's cold
// start about a millisecond.
//
// Secret values never appear in errors or logs produced here.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/awsjson"
	"github.com/stipend/stipend/shared/cache"
)

// ErrNotFound reports a secret that does not exist.
var ErrNotFound = errors.New("secret not found")

// Manager reads and writes secrets in AWS Secrets Manager. It is safe for
// concurrent use.
type Manager struct {
	c *awsjson.Client
}

// NewManager returns a Manager calling Secrets Manager with cfg's region,
// credentials and HTTP client, at the endpoint cfg configures for it
// (AWS_ENDPOINT_URL_SECRETS_MANAGER, else AWS_ENDPOINT_URL; see awsenv),
// else the region's.
func NewManager(ctx context.Context, cfg aws.Config) (*Manager, error) {
	url, err := awsjson.ServiceEndpoint(ctx, cfg, "Secrets Manager", "secretsmanager")
	if err != nil {
		return nil, fmt.Errorf("secrets manager: %w", err)
	}
	return NewManagerAt(cfg, url), nil
}

// NewManagerAt returns a Manager calling Secrets Manager at url with cfg's
// region, credentials and HTTP client.
func NewManagerAt(cfg aws.Config, url string) *Manager {
	return &Manager{c: awsjson.New(awsjson.Config{
		Service: awsjson.Service{ // Secrets Manager's JSON protocol
			SigningName: "secretsmanager", TargetPrefix: "secretsmanager.", ContentType: "application/x-amz-json-1.1",
		},
		Endpoint: url, Region: cfg.Region, Credentials: cfg.Credentials, HTTPClient: cfg.HTTPClient,
	})}
}

// call sends in as op and decodes the answer into out.
func (m *Manager) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	res, err := m.c.Call(ctx, op, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("decode the %s answer: %w", op, err)
	}
	return nil
}

// code is err's Secrets Manager error code, or "".
func code(err error) string {
	var e *awsjson.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Get returns the string value of secret id (a name or ARN); "" for a
// secret that holds a binary value.
func (m *Manager) Get(ctx context.Context, id string) (string, error) {
	var out struct {
		SecretString *string
	}
	err := m.call(ctx, "GetSecretValue", struct{ SecretId string }{id}, &out)
	if code(err) == "ResourceNotFoundException" {
		return "", fmt.Errorf("secret %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("get secret %s: %w", id, err)
	}
	return aws.ToString(out.SecretString), nil
}

// Put stores value under name, creating the secret or adding a new version,
// and returns the secret's ARN. Each write carries a new client request
// token (the new version's id), so a retried attempt of it is not a second
// version.
func (m *Manager) Put(ctx context.Context, name, value string) (string, error) {
	token, err := awsjson.RequestToken()
	if err != nil {
		return "", fmt.Errorf("create secret %s: %w", name, err)
	}
	var out struct{ ARN string }
	err = m.call(ctx, "CreateSecret", struct {
		Name, SecretString, Description, ClientRequestToken string
	}{name, value, "stipend provider API key", token}, &out)
	if code(err) == "ResourceExistsException" {
		if token, err = awsjson.RequestToken(); err != nil {
			return "", fmt.Errorf("put secret %s: %w", name, err)
		}
		err = m.call(ctx, "PutSecretValue", struct {
			SecretId, SecretString, ClientRequestToken string
		}{name, value, token}, &out)
		if err != nil {
			return "", fmt.Errorf("put secret %s: %w", name, err)
		}
		return out.ARN, nil
	}
	if err != nil {
		return "", fmt.Errorf("create secret %s: %w", name, err)
	}
	return out.ARN, nil
}

// NewCache returns a cache of m's secrets that keeps each value for ttl
// (five minutes when <= 0).
func NewCache(m *Manager, ttl time.Duration) *cache.TTL[string] {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	return cache.New(ttl, m.Get)
}

// Ping reports whether Secrets Manager answers: it reads probe, a secret
// name that need not exist (a not-found answer counts as reachable), so the
// caller needs no permission beyond reading the secrets it reads anyway.
func (m *Manager) Ping(ctx context.Context, probe string) error {
	_, err := m.Get(ctx, probe)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("ping secrets manager: %w", err)
	}
	return nil
}
