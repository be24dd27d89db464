package proxy

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/budget"
)

// TestReserveWhileLoading: the first setting's fresh read and the
// reservation run at the same time (one round trip before forwarding), the
// request goes out with the fresh setting, a failed fresh read releases the
// reservation, and fresh ceilings that differ from the cached ones are
// reserved on again.
func TestReserveWhileLoading(t *testing.T) {
	const body = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name string
		// arm changes the store after a first request warmed the cache.
		arm        func(t *testing.T, s *fakeStore)
		wantStatus int
		// wantCeiling: the settled reservation has a provider ceiling charge.
		wantCeiling  bool
		wantUpstream bool
	}{
		{
			name: "the fresh read waits for the reserve to begin",
			arm: func(t *testing.T, s *fakeStore) {
				reserving := make(chan struct{})
				var once sync.Once
				s.beforeReserve = func() { once.Do(func() { close(reserving) }) }
				s.beforeGetProvider = func() error {
					select {
					case <-reserving:
						return nil
					case <-time.After(5 * time.Second):
						t.Error("the fresh read ran alone: the reserve did not begin while it waited")
						return errors.New("timed out waiting for the reserve")
					}
				}
			},
			wantStatus: http.StatusOK, wantUpstream: true,
		},
		{
			name: "a failed fresh read releases the reservation",
			arm: func(t *testing.T, s *fakeStore) {
				s.beforeGetProvider = func() error { return errors.New("dynamodb: connection refused") }
			},
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name: "fresh ceilings are reserved on",
			arm: func(t *testing.T, s *fakeStore) {
				p := *s.providers["p1"]
				p.RequestsPerMinute = 100
				s.providers["p1"] = &p
			},
			wantStatus: http.StatusOK, wantCeiling: true, wantUpstream: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, jsonBody(t, "chat.json"))
			if resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, body); resp.StatusCode != http.StatusOK {
				t.Fatalf("warm-up: %d", resp.StatusCode)
			}
			e.store.waitEvent(t)
			e.mu.Lock()
			e.lastReq = nil
			e.mu.Unlock()
			e.store.mu.Lock()
			tt.arm(t, e.store)
			events := len(e.store.events)
			e.store.mu.Unlock()

			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusOK {
				e.store.waitEvent(t)
			}
			e.mu.Lock()
			upstream := e.lastReq != nil
			e.mu.Unlock()
			if upstream != tt.wantUpstream {
				t.Errorf("upstream called = %v, want %v", upstream, tt.wantUpstream)
			}
			e.store.mu.Lock()
			defer e.store.mu.Unlock()
			if len(e.store.open) != 0 {
				t.Errorf("%d reservations left open", len(e.store.open))
			}
			if tt.wantStatus != http.StatusOK {
				if len(e.store.events) != events {
					t.Errorf("a refused request stored an event")
				}
				for id, v := range e.store.counters {
					if id.owner.Kind == budget.OwnerKey && id.counter.Kind == budget.Spend && v != sumSettled(e.store, id) {
						t.Errorf("counter %+v = %d after a release, want only the settled spend", id, v)
					}
				}
				return
			}
			var ceiling bool
			for id, v := range e.store.counters {
				if id.owner.Kind == budget.OwnerProvider && v > 0 {
					ceiling = true
				}
			}
			if ceiling != tt.wantCeiling {
				t.Errorf("provider ceiling counted = %v, want %v", ceiling, tt.wantCeiling)
			}
			if got := e.store.providers["p1"].RequestsPerMinute; tt.wantCeiling && got != 100 {
				t.Fatalf("setup: the fresh setting has RPM %d", got)
			}
		})
	}
}

// sumSettled is the spend the store's events settled on counter id's owner
// (every test key's spend counters hold exactly that once nothing is open).
func sumSettled(s *fakeStore, id counterID) int64 {
	var sum int64
	for _, ev := range s.events {
		if id.owner.Kind == budget.OwnerKey && ev.KeyID == id.owner.ID {
			sum += int64(ev.Cost)
		}
	}
	return sum
}
