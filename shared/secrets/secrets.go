// Package secrets keeps provider API keys (and the admin key) in AWS Secrets
// Manager and caches them in memory for a bounded time, so a request never
// waits on Secrets Manager except after a cold start or a TTL expiry.
//
// Secret values never appear in errors or logs produced here.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/stipend/stipend/shared/cache"
)

// ErrNotFound reports a secret that does not exist.
var ErrNotFound = errors.New("secret not found")

// Manager reads and writes secrets in AWS Secrets Manager.
type Manager struct {
	sm *secretsmanager.Client
}

// NewManager returns a Manager using client.
func NewManager(client *secretsmanager.Client) *Manager { return &Manager{sm: client} }

// Get returns the string value of secret id (a name or ARN).
func (m *Manager) Get(ctx context.Context, id string) (string, error) {
	out, err := m.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return "", fmt.Errorf("secret %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("get secret %s: %w", id, err)
	}
	return aws.ToString(out.SecretString), nil
}

// Put stores value under name, creating the secret or adding a new version,
// and returns the secret's ARN.
func (m *Manager) Put(ctx context.Context, name, value string) (string, error) {
	out, err := m.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(name), SecretString: aws.String(value),
		Description: aws.String("stipend provider API key"),
	})
	var exists *types.ResourceExistsException
	if errors.As(err, &exists) {
		put, perr := m.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
		if perr != nil {
			return "", fmt.Errorf("put secret %s: %w", name, perr)
		}
		return aws.ToString(put.ARN), nil
	}
	if err != nil {
		return "", fmt.Errorf("create secret %s: %w", name, err)
	}
	return aws.ToString(out.ARN), nil
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
