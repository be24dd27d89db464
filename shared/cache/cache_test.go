package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeGetter struct {
	calls atomic.Int64
	delay time.Duration
	fail  atomic.Bool
}

func (f *fakeGetter) Get(ctx context.Context, id string) (string, error) {
	f.calls.Add(1)
	time.Sleep(f.delay)
	if f.fail.Load() {
		return "", errors.New("boom")
	}
	return "value-of-" + id, nil
}

func TestCacheSharesConcurrentFetches(t *testing.T) {
	src := &fakeGetter{delay: 20 * time.Millisecond}
	c := New(time.Minute, src.Get)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Get(context.Background(), "a")
			if err != nil || v != "value-of-a" {
				t.Errorf("Get = %q, %v", v, err)
			}
		}()
	}
	wg.Wait()
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("fetched %d times, want 1", n)
	}
}

func TestCacheTTLAndErrors(t *testing.T) {
	src := &fakeGetter{}
	c := New(time.Minute, src.Get)
	now := time.Unix(0, 0)
	c.SetClock(func() time.Time { return now })
	ctx := context.Background()
	steps := []struct {
		advance   time.Duration
		fail      bool
		wantErr   bool
		wantCalls int64
	}{
		{0, false, false, 1},
		{30 * time.Second, false, false, 1}, // cached
		{31 * time.Second, false, false, 2}, // expired: refetch
		{61 * time.Second, true, true, 3},   // expired, fetch fails
		{0, false, false, 4},                // failure not cached
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		src.fail.Store(s.fail)
		_, err := c.Get(ctx, "a")
		if (err != nil) != s.wantErr || src.calls.Load() != s.wantCalls {
			t.Fatalf("step %d: err %v, calls %d; want err %v calls %d", i, err, src.calls.Load(), s.wantErr, s.wantCalls)
		}
	}
}
