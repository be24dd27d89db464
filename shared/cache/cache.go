// Package cache memoizes values fetched from slow stores (DynamoDB, Secrets
// Manager) for a bounded time. Concurrent misses for the same key share one
// fetch, and failed fetches are never remembered.
package cache

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// TTL remembers values of type V by string key for a fixed time. It is safe
// for concurrent use; the zero value is not usable, call New.
type TTL[V any] struct {
	fetch func(ctx context.Context, key string) (V, error)
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex
	entries map[string]*entry[V]
}

type entry[V any] struct {
	ready   chan struct{} // closed once value/err are set
	value   V
	err     error
	fetched time.Time
}

// New returns a cache that loads missing or expired values with fetch.
// A fetch gets at most fetchTimeout (10 s when <= 0) and is not cancelled when
// the caller that started it gives up, so other waiters still get its result.
func New[V any](ttl time.Duration, fetch func(ctx context.Context, key string) (V, error)) *TTL[V] {
	return &TTL[V]{fetch: fetch, ttl: ttl, now: time.Now, entries: map[string]*entry[V]{}}
}

// SetClock replaces the clock (for tests).
func (c *TTL[V]) SetClock(now func() time.Time) { c.now = now }

// Get returns the value for key, fetching it when absent or older than the TTL.
func (c *TTL[V]) Get(ctx context.Context, key string) (V, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok {
		select {
		case <-e.ready:
			if e.err == nil && c.now().Sub(e.fetched) < c.ttl {
				c.mu.Unlock()
				return e.value, nil
			}
			ok = false // expired: fetch again
		default: // a fetch is in flight: wait for it below
		}
	}
	if !ok {
		e = &entry[V]{ready: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		e.value, e.err = c.fetch(fctx, key)
		cancel()
		e.fetched = c.now()
		close(e.ready)
		if e.err != nil {
			c.mu.Lock()
			if c.entries[key] == e {
				delete(c.entries, key)
			}
			c.mu.Unlock()
		}
		return e.value, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.value, e.err
	case <-ctx.Done():
		var zero V
		return zero, fmt.Errorf("wait for %s: %w", key, ctx.Err())
	}
}

// Forget drops key so the next Get fetches it again.
func (c *TTL[V]) Forget(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}
