// Package dynamotest gives other packages' tests a stipend store on
// DynamoDB Local (see infra/localstack/localtest for starting one).
package dynamotest

import (
	"context"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/dynamo"
)

// Store returns a store on a new table in the DynamoDB Local at endpoint,
// created as template.yaml declares it but without TTL, so that DynamoDB
// Local never deletes a fixture dated by the test's clock. Tests that share
// one DynamoDB Local give each store its own table.
func Store(tb testing.TB, endpoint, table string) *dynamo.Store {
	tb.Helper()
	s := dynamo.New(dynamo.NewClientAt(localtest.AWSConfig(), endpoint), table, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateTable(ctx, dynamo.WithoutTTL()); err != nil {
		tb.Fatalf("dynamotest: create table %s: %v", table, err)
	}
	return s
}
