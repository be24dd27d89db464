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

// TestFullWindowsRoom: a reserve that returned its window's counter tells
// how many places are left: that many of the key's requests hold a place
// at once, the next waits until one ends (then enters) or until the window
// fills (then it is refused); at the counter's limit the window is full.
func TestFullWindowsRoom(t *testing.T) {
	now := testclock.Now(t)
	clock := func() time.Time { return now }
	k := &apikey.Key{ID: "k", Version: 1}
	_, end, label := budget.Window(budget.Minute, now)
	requests := budget.Charge{Owner: budget.KeyOwner("k"), Counter: budget.Counter{Kind: budget.Requests, Unit: budget.Minute, Window: label},
		Amount: 1, Limit: 10, Resets: end}
	model := requests
	model.Model = "gpt-4o"
	reserved := func(f *fullWindows, counted ...int64) {
		f.reserved(k, &budget.Reservation{Charges: []budget.Charge{model, requests}, Counted: counted}, now)
	}
	enter := func(t *testing.T, f *fullWindows, k *apikey.Key) (release func(), full bool, took time.Duration) {
		t.Helper()
		t0 := time.Now()
		release, _, full, err := f.enter(context.Background(), k, clock)
		if err != nil {
			t.Fatal(err)
		}
		return release, full, time.Since(t0)
	}
	// waiter enters in the background and reports when it is let in or refused.
	type outcome struct {
		release func()
		full    bool
	}
	waiter := func(f *fullWindows) <-chan outcome {
		out := make(chan outcome, 1)
		go func() {
			release, _, full, _ := f.enter(context.Background(), k, clock)
			out <- outcome{release, full}
		}()
		return out
	}
	blocked := func(t *testing.T, out <-chan outcome) {
		t.Helper()
		select {
		case o := <-out:
			t.Fatalf("entered (full %v) with no room left", o.full)
		case <-time.After(30 * time.Millisecond):
		}
	}

	t.Run("at the limit the window is full", func(t *testing.T) {
		var f fullWindows
		reserved(&f, 10, 10) // the model's counter at its limit notes nothing
		if _, full, _ := enter(t, &f, k); !full {
			t.Fatal("not refused at the limit")
		}
		var g fullWindows
		reserved(&g, 10, 9)
		if _, full, _ := enter(t, &g, k); full {
			t.Fatal("refused on a model's window")
		}
	})

	t.Run("two places left: the third waits, enters when one ends", func(t *testing.T) {
		var f fullWindows
		reserved(&f, 8, 8)
		r1, _, _ := enter(t, &f, k)
		r2, _, _ := enter(t, &f, k)
		out := waiter(&f)
		blocked(t, out)
		// Another version of the key (a raised limit) is not held back.
		r3, full, took := enter(t, &f, &apikey.Key{ID: "k", Version: 2})
		if full || took >= gateWait/2 {
			t.Fatalf("another version: full %v after %v", full, took)
		}
		r3()
		r1() // failed without taking its place: the waiter goes in
		o := <-out
		if o.full {
			t.Fatal("the waiter was refused")
		}
		o.release()
		r2()
	})

	t.Run("two places left: the third is refused when the window fills", func(t *testing.T) {
		var f fullWindows
		reserved(&f, 8, 8)
		r1, _, _ := enter(t, &f, k)
		r2, _, _ := enter(t, &f, k)
		out := waiter(&f)
		blocked(t, out)
		reserved(&f, 9, 9) // out of order: the later, fuller, news stays
		reserved(&f, 8, 8)
		r1()
		blocked(t, out) // one place left, one holding it
		reserved(&f, 10, 10)
		if o := <-out; !o.full {
			t.Fatal("the waiter was let in to a full window")
		}
		r2()
	})
}
