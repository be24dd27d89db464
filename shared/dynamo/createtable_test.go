package dynamo

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// TestCreateTableWaits checks CreateTable waits for the table to be
// active (DynamoDB answers CreateTable at once, while the table is still
// being created; DynamoDB Local's tables are active at once, so the wait
// is tested against a fake), and gives up on an error that is not "not
// found yet".
func TestCreateTableWaits(t *testing.T) {
	const prefix = "com.amazonaws.dynamodb.v20120810#"
	tests := []struct {
		name      string
		describe  []string // DescribeTable's answers in turn, "404" for ResourceNotFoundException, "400" for a validation error
		wantErr   bool
		wantCalls int
	}{
		{"creating, then active", []string{"404", "CREATING", "CREATING", "ACTIVE"}, false, 4},
		{"active at once", []string{"ACTIVE"}, false, 1},
		{"an error ends the wait", []string{"CREATING", "400"}, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var targets []string
			describes := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
				mu.Lock()
				defer mu.Unlock()
				targets = append(targets, op)
				w.Header().Set("Content-Type", "application/x-amz-json-1.0")
				if op != "DescribeTable" {
					_, _ = io.WriteString(w, `{"TableDescription":{"TableName":"t","TableStatus":"CREATING"}}`)
					return
				}
				a := tt.describe[min(describes, len(tt.describe)-1)]
				describes++
				switch a {
				case "404":
					w.WriteHeader(http.StatusBadRequest)
					_, _ = io.WriteString(w, `{"__type":"`+prefix+`ResourceNotFoundException","message":"not yet"}`)
				case "400":
					w.WriteHeader(http.StatusBadRequest)
					_, _ = io.WriteString(w, `{"__type":"`+prefix+`ValidationException","message":"no"}`)
				default:
					_, _ = io.WriteString(w, `{"Table":{"TableName":"t","TableStatus":"`+a+`"}}`)
				}
			}))
			defer srv.Close()
			s := New(ddb.NewAt(localtest.AWSConfig(), srv.URL), "t", 0)
			err := s.CreateTable(context.Background(), WithoutTTL())
			if (err != nil) != tt.wantErr {
				t.Fatalf("CreateTable: %v, want an error: %v", err, tt.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			if describes != tt.wantCalls || targets[0] != "CreateTable" {
				t.Errorf("calls %v: %d DescribeTable, want %d after CreateTable", targets, describes, tt.wantCalls)
			}
		})
	}
}
