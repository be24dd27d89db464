package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/testclock"
)

// TestFullWindows: only a key's own request window is remembered as full,
// and only for the key's version that was refused and until it ends.
func TestFullWindows(t *testing.T) {
	now := testclock.Now(t)
	k := &apikey.Key{ID: "k", Version: 3}
	_, end, label := budget.Window(budget.Minute, now)
	requests := budget.Charge{Owner: budget.KeyOwner("k"), Counter: budget.Counter{Kind: budget.Requests, Unit: budget.Minute, Window: label},
		Amount: 1, Limit: 10, Resets: end}
	with := func(f func(*budget.Charge)) budget.Charge { c := requests; f(&c); return c }
	tests := []struct {
		name    string
		noted   budget.Charge
		key     *apikey.Key
		at      time.Time
		refused bool
	}{
		{"the key's request window, same version, before its end", requests, k, now, true},
		{"a later version of the key (a raised limit)", requests, &apikey.Key{ID: "k", Version: 4}, now, false},
		{"another key", requests, &apikey.Key{ID: "other", Version: 3}, now, false},
		{"the window has ended", requests, k, end, false},
		{"a model's request window", with(func(c *budget.Charge) { c.Model = "gpt-4o" }), k, now, false},
		{"the user's request window", with(func(c *budget.Charge) { c.Owner = budget.UserOwner("u") }), k, now, false},
		{"a spend window (a settle gives back)", with(func(c *budget.Charge) { c.Kind = budget.Spend }), k, now, false},
		{"a token window (a settle gives back)", with(func(c *budget.Charge) { c.Kind = budget.Tokens }), k, now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f fullWindows
			if _, ok := f.refused(k, now); ok {
				t.Fatal("refused before any refusal")
			}
			f.note(k, tt.noted, now)
			c, ok := f.refused(tt.key, tt.at)
			if ok != tt.refused {
				t.Fatalf("refused = %v, want %v", ok, tt.refused)
			}
			if ok && c != tt.noted {
				t.Fatalf("refused on %+v, want %+v", c, tt.noted)
			}
		})
	}
}

// TestFullWindowsGate: requests of a key wait at its gate while gateWidth
// others hold it, and are refused the moment one of those notes the window
// full, without waiting for a place.
func TestFullWindowsGate(t *testing.T) {
	now := testclock.Now(t)
	clock := func() time.Time { return now }
	k := &apikey.Key{ID: "k", Version: 1}
	_, end, label := budget.Window(budget.Minute, now)
	c := budget.Charge{Owner: budget.KeyOwner("k"), Counter: budget.Counter{Kind: budget.Requests, Unit: budget.Minute, Window: label},
		Amount: 1, Limit: 10, Resets: end}
	var f fullWindows
	var releases []func()
	for range gateWidth {
		release, _, full, err := f.enter(context.Background(), k, clock)
		if err != nil || full {
			t.Fatalf("enter: full %v, %v", full, err)
		}
		releases = append(releases, release)
	}
	type result struct {
		full bool
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		t0 := time.Now()
		_, _, full, err := f.enter(context.Background(), k, clock)
		done <- result{full, err, time.Since(t0)}
	}()
	time.Sleep(20 * time.Millisecond)
	f.note(k, c, now)
	res := <-done
	if res.err != nil || !res.full || res.took >= gateWait/2 {
		t.Fatalf("the waiting request: full %v, %v, after %v", res.full, res.err, res.took)
	}
	// A request arriving now is refused at once; once the places are
	// back, a request of another version (a raised limit) enters.
	if _, refused, full, _ := f.enter(context.Background(), k, clock); !full || refused != c {
		t.Fatalf("after the note: full %v, refused %+v", full, refused)
	}
	for _, r := range releases {
		r()
	}
	release, _, full, err := f.enter(context.Background(), &apikey.Key{ID: "k", Version: 2}, clock)
	if err != nil || full {
		t.Fatalf("another version: full %v, %v", full, err)
	}
	release()
}
