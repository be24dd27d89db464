// Package localtest gives tests in other packages DynamoDB Local and a
// Secrets Manager stand-in (moto_server) with one call each. Every call
// starts a fresh process for the calling test and closes it when that test
// (with its subtests) ends, so tests never share state. A process costs
// about 2 s (DynamoDB Local) or 1 s (moto_server) to start: share one across
// subtests, using distinct table or secret names, rather than start one per
// subtest. A test that cannot get one fails; it is never skipped.
//
// Point AWS SDK clients at the returned endpoint with
// localstack.Region and any static credentials, such as
// localstack.AccessKeyID and localstack.SecretAccessKey.
package localtest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/stipend/stipend/infra/localstack"
)

// startTimeout bounds a start, including an `npm ci` on a fresh clone.
const startTimeout = 3 * time.Minute

// StartDynamoDB starts an in-memory DynamoDB Local for tb, closes it in
// tb.Cleanup, and returns its endpoint, such as http://127.0.0.1:41234. It
// calls tb.Fatal if DynamoDB Local cannot be started.
func StartDynamoDB(tb testing.TB) string {
	tb.Helper()
	return StartDynamoDBProcess(tb).Endpoint
}

// DynamoDB is a DynamoDB Local started for one test, which the test may
// stall (as DynamoDB does when it stops answering) and resume.
type DynamoDB struct {
	// Endpoint is its base URL, such as http://127.0.0.1:41234.
	Endpoint string

	tb testing.TB
	p  *localstack.Process
}

// StartDynamoDBProcess is StartDynamoDB returning a handle that can stall
// the process. It is resumed before it is closed in tb.Cleanup.
func StartDynamoDBProcess(tb testing.TB) *DynamoDB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := localstack.StartDynamoDB(ctx, localstack.Options{InMemory: true})
	if err != nil {
		tb.Fatalf("localtest: %v", err)
	}
	tb.Cleanup(func() { closeProcess(tb, p) })
	return &DynamoDB{Endpoint: p.Endpoint, tb: tb, p: p}
}

// Stall freezes DynamoDB Local (SIGSTOP): requests to it wait, unanswered
// and uncommitted, until Resume, and then run. It calls tb.Fatal on failure.
func (d *DynamoDB) Stall() {
	d.tb.Helper()
	if err := d.p.Stall(); err != nil {
		d.tb.Fatalf("localtest: stall DynamoDB Local: %v", err)
	}
}

// Resume lets a stalled DynamoDB Local run again (SIGCONT). It calls
// tb.Fatal on failure.
func (d *DynamoDB) Resume() {
	d.tb.Helper()
	if err := d.p.Resume(); err != nil {
		d.tb.Fatalf("localtest: resume DynamoDB Local: %v", err)
	}
}

// StartSecretsManager starts moto_server for tb, closes it in tb.Cleanup,
// and returns its endpoint. It calls tb.Fatal if moto_server cannot be
// started.
func StartSecretsManager(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := localstack.StartSecretsManager(ctx, nil)
	if err != nil {
		tb.Fatalf("localtest: %v", err)
	}
	tb.Cleanup(func() { closeProcess(tb, p) })
	return p.Endpoint
}

// closeProcess closes p, failing tb if the process had died during the test.
func closeProcess(tb testing.TB, p *localstack.Process) {
	tb.Helper()
	if err := p.Close(); err != nil {
		tb.Errorf("localtest: %v", err)
	}
}

// AWSConfig is an SDK configuration for the local services: their region and
// static credentials. Point a client at a service with its endpoint.
func AWSConfig() aws.Config {
	return aws.Config{
		Region:      localstack.Region,
		Credentials: credentials.NewStaticCredentialsProvider(localstack.AccessKeyID, localstack.SecretAccessKey, ""),
	}
}
