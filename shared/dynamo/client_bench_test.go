package dynamo

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/awsenv"
)

// BenchmarkSDKCall measures the SDK's own cost of one DynamoDB call as the
// functions' client makes it (awsenv's configuration, NewClientAt): a
// GetItem (Ping) answered at once by a local server, so what remains is
// serialising, signing, the middleware stack, the HTTP round trip on a
// reused connection and decoding.
func BenchmarkSDKCall(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	cfg, err := awsenv.FromEnv(func(k string) string {
		return map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}[k]
	})
	if err != nil {
		b.Fatal(err)
	}
	s := New(NewClientAt(cfg, srv.URL), "bench", time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
