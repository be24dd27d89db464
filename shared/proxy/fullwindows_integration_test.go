package proxy_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/testclock"
)

// TestIntegrationFullWindowReached: the request that takes the last place
// in its key's request window notes the window full, so the next one is
// refused without a call to the store; a request that still finds room
// makes no more calls than one of a key without limits: its limit headers
// come from the counters its reserve returned, not from a read.
func TestIntegrationFullWindowReached(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	e := newITEnv(t, endpoint, "full-window-reached", testclock.Now(t)) // a fixed clock: one window
	ctx := context.Background()
	body := chatBody("Say hello", itChunks)
	// calls is the store calls of one request of key, handlers included.
	calls := func(key itKey) (itResult, int64) {
		e.inflight.Wait()
		before := e.store.Stats().Calls
		r := e.do(ctx, key.plain, body)
		e.inflight.Wait()
		return r, e.store.Stats().Calls - before
	}
	unlimited := e.newKey(nil)
	e.do(ctx, unlimited.plain, body) // the key and its provider setting are cached
	r, plain := calls(unlimited)
	if r.status != http.StatusOK {
		t.Fatalf("key without limits: %+v", r)
	}
	tests := []struct {
		name   string
		limit  int64
		status int // the third request's
		calls  int64
	}{
		{"two per minute: the second fills the window", 2, http.StatusTooManyRequests, 0},
		{"three per minute: room left after two", 3, http.StatusOK, plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.newKey(func(k *apikey.Key) { k.RateLimitOverTime, k.RateLimitUnit = tt.limit, "m" })
			for i := range 2 {
				if r := e.do(ctx, key.plain, body); r.status != http.StatusOK {
					t.Fatalf("request %d: %+v", i, r)
				}
			}
			r, n := calls(key)
			if r.status != tt.status {
				t.Fatalf("third request: %+v, want status %d", r, tt.status)
			}
			if n != tt.calls {
				t.Fatalf("third request made %d store calls, want %d", n, tt.calls)
			}
		})
	}
}
