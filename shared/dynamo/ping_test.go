package dynamo

import (
	"context"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

func TestPing(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := newStore(t, endpoint, "ping").Ping(ctx); err != nil {
		t.Errorf("Ping on an existing table: %v", err)
	}
	missing := New(ddb.NewAt(localtest.AWSConfig(), endpoint), "no-such-table", 0)
	if err := missing.Ping(ctx); err == nil {
		t.Error("Ping on a missing table succeeded")
	}
	down := New(ddb.NewAt(localtest.AWSConfig(), "http://127.0.0.1:1"), "ping", 0)
	if err := down.Ping(ctx); err == nil {
		t.Error("Ping on an endpoint nobody listens on succeeded")
	}
}
