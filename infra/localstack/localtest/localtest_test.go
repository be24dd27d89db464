package localtest

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack"
)

func TestStart(t *testing.T) {
	tests := []struct {
		name        string
		start       func(testing.TB) string
		signingName string
		contentType string
		target      string
		want        string
	}{
		{
			name: "DynamoDB", start: StartDynamoDB, signingName: "dynamodb",
			contentType: "application/x-amz-json-1.0", target: "DynamoDB_20120810.ListTables", want: `"TableNames"`,
		},
		{
			name: "SecretsManager", start: StartSecretsManager, signingName: "secretsmanager",
			contentType: "application/x-amz-json-1.1", target: "secretsmanager.ListSecrets", want: `"SecretList"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var endpoint string
			// Run the start in a subtest, whose cleanup must stop the process.
			t.Run("started", func(t *testing.T) {
				endpoint = tt.start(t)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", strings.NewReader("{}"))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", tt.contentType)
				req.Header.Set("X-Amz-Target", tt.target)
				req.Header.Set("Authorization", localstack.DummyAuthorization(tt.signingName))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tt.want) {
					t.Fatalf("%s = %d %s", tt.target, resp.StatusCode, body)
				}
			})
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second)
			if err == nil {
				conn.Close()
				t.Fatalf("%s still up after the test that started it ended", endpoint)
			}
		})
	}
}

func TestStallAndResume(t *testing.T) {
	d := StartDynamoDBProcess(t)
	list := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Endpoint+"/", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
		req.Header.Set("Authorization", localstack.DummyAuthorization("dynamodb"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := list(10 * time.Second); err != nil {
		t.Fatalf("before stalling: %v", err)
	}
	d.Stall()
	if err := list(500 * time.Millisecond); err == nil {
		t.Fatal("a stalled DynamoDB Local answered")
	}
	d.Resume()
	if err := list(10 * time.Second); err != nil {
		t.Fatalf("after resuming: %v", err)
	}
	d.Stall() // closed while stalled: the cleanup must still end it
}
