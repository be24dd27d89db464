package secrets

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stipend/stipend/infra/localstack/localtest"
)

func TestPing(t *testing.T) {
	endpoint := localtest.StartSecretsManager(t)
	at := func(url string) *Manager {
		return NewManager(secretsmanager.NewFromConfig(localtest.AWSConfig(), func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(url) }))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name    string
		m       *Manager
		wantErr bool
	}{
		{"probe secret missing counts as reachable", at(endpoint), false},
		{"nobody listening", at("http://127.0.0.1:1"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Ping(ctx, "stipend/test/providers/readyz")
			if (err != nil) != tt.wantErr {
				t.Errorf("Ping = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
