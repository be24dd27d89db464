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
// refused without a call to the store; a key whose window still has room
// is not.
func TestIntegrationFullWindowReached(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	e := newITEnv(t, endpoint, "full-window-reached", testclock.Now(t)) // a fixed clock: one window
	ctx := context.Background()
	body := chatBody("Say hello", itChunks)
	tests := []struct {
		name      string
		limit     int64
		storeCall bool // the third request reaches the store
		status    int  // the third request's
	}{
		{"two per minute: the second fills the window", 2, false, http.StatusTooManyRequests},
		{"three per minute: room left after two", 3, true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := e.newKey(func(k *apikey.Key) { k.RateLimitOverTime, k.RateLimitUnit = tt.limit, "m" })
			for i := range 2 {
				if r := e.do(ctx, key.plain, body); r.status != http.StatusOK {
					t.Fatalf("request %d: %+v", i, r)
				}
			}
			e.inflight.Wait() // the settles have returned
			before := e.store.Stats().Calls
			r := e.do(ctx, key.plain, body)
			e.inflight.Wait()
			if r.status != tt.status {
				t.Fatalf("third request: %+v, want status %d", r, tt.status)
			}
			if called := e.store.Stats().Calls > before; called != tt.storeCall {
				t.Fatalf("third request called the store: %v, want %v", called, tt.storeCall)
			}
		})
	}
}
