package proxy

import (
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
