// Package dynamotest gives other packages' tests a stipend store on a
// DynamoDB Local endpoint (tests start one with infra/localstack/localtest;
// this package only connects to it, so storage never depends on infra/).
package dynamotest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// Store returns a store on a new table in the DynamoDB Local at endpoint,
// created as template.yaml declares it but without TTL, so that DynamoDB
// Local never deletes a fixture dated by the test's clock. Tests that share
// one DynamoDB Local give each store its own table.
func Store(tb testing.TB, endpoint, table string) *dynamo.Store {
	tb.Helper()
	s := dynamo.New(ddb.NewAt(localConfig(), endpoint), table, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateTable(ctx, dynamo.WithoutTTL()); err != nil {
		tb.Fatalf("dynamotest: create table %s: %v", table, err)
	}
	return s
}

// localConfig is an SDK configuration that DynamoDB Local accepts: any
// region and any static credentials.
func localConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	}
}
