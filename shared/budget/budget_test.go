package budget

import (
	"testing"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
)

func TestWindow(t *testing.T) {
	at := time.Date(2026, 11, 23, 16, 5, 42, 500, time.UTC)
	tests := []struct {
		u          Unit
		start, end time.Time
		label      string
	}{
		{Second, time.Date(2026, 11, 23, 16, 5, 42, 0, time.UTC), time.Date(2026, 11, 23, 16, 5, 43, 0, time.UTC), "20261123T160542"},
		{Minute, time.Date(2026, 11, 23, 16, 5, 0, 0, time.UTC), time.Date(2026, 11, 23, 16, 6, 0, 0, time.UTC), "20261123T1605"},
		{Hour, time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC), "20261123T16"},
		{Day, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), "20261123"},
		{Month, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "202611"},
		{Lifetime, time.Time{}, time.Time{}, "all"},
	}
	for _, tt := range tests {
		s, e, l := Window(tt.u, at)
		if !s.Equal(tt.start) || !e.Equal(tt.end) || l != tt.label {
			t.Errorf("Window(%q) = %v %v %q", tt.u, s, e, l)
		}
	}
	// A non-UTC time lands in its UTC window.
	berlin := time.FixedZone("CET", 3600)
	if _, _, l := Window(Month, time.Date(2026, 12, 1, 0, 30, 0, 0, berlin)); l != "202611" {
		t.Errorf("00:30 CET on Dec 1 is still November in UTC, got %s", l)
	}
}

func names(cs []Charge) map[string]Charge {
	m := map[string]Charge{}
	for _, c := range cs {
		m[storedName(c)] = c
	}
	return m
}

// storedName names c's counter "<owner>/<counter>" as shared/dynamo stores
// it (and as this test's tables were written).
func storedName(c Charge) string {
	owner := map[OwnerKind]string{OwnerKey: "KEY#" + c.Owner.ID, OwnerUser: "USER#" + c.Owner.ID, OwnerOrg: "ORG"}[c.Owner.Kind]
	var name string
	switch {
	case c.Kind == Spend && c.Unit == Lifetime:
		name = "USAGE"
	case c.Kind == Spend:
		name = "SPEND#" + string(c.Unit) + "#" + c.Window
	case c.Model != "" && c.Kind == Tokens:
		name = "TPM#" + c.Model + "#" + c.Window
	case c.Model != "":
		name = "RPM#" + c.Model + "#" + c.Window
	default:
		name = "REQ#" + string(c.Unit) + "#" + c.Window
	}
	return owner + "/" + name
}

func TestPlan(t *testing.T) {
	now := time.Date(2026, 11, 23, 16, 5, 42, 0, time.UTC)
	base := Request{KeyID: "k", Model: "gpt-4o-mini-2024-07-18", Family: "gpt-4o-mini", Cost: 500, Tokens: 100, Now: now}
	tests := []struct {
		name string
		mut  func(*Request)
		want map[string]int64 // counter -> limit; deferred when negative (limit 0)
	}{
		{"no limits: key reserved, organisation deferred", func(r *Request) {}, map[string]int64{"KEY#k/USAGE": 0, "KEY#k/SPEND#mo#202611": 0, "ORG/USAGE": -1, "ORG/SPEND#mo#202611": -1}},
		{"user without limits: counted, deferred", func(r *Request) { r.UserID = "bob" }, map[string]int64{
			"KEY#k/USAGE": 0, "KEY#k/SPEND#mo#202611": 0, "USER#bob/USAGE": -1, "USER#bob/SPEND#mo#202611": -1, "ORG/USAGE": -1, "ORG/SPEND#mo#202611": -1,
		}},
		{"limit on one counter reserves that one only", func(r *Request) {
			r.UserID = "bob"
			r.User = &Limits{OverTime: money.Dollar, OverTimeUnit: Month}
			r.Org = &Limits{Lifetime: money.Dollar}
		}, map[string]int64{
			"KEY#k/USAGE": 0, "KEY#k/SPEND#mo#202611": 0, "USER#bob/USAGE": -1, "USER#bob/SPEND#mo#202611": int64(money.Dollar),
			"ORG/USAGE": int64(money.Dollar), "ORG/SPEND#mo#202611": -1,
		}},
		{"all key limits", func(r *Request) {
			r.Key = Limits{Lifetime: money.Dollar, PerMonth: money.Dollar / 5, OverTime: money.Cent, OverTimeUnit: Hour, Rate: 5, RateUnit: Minute,
				Models: map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 35, TPM: 1600}}}
		}, map[string]int64{
			"KEY#k/USAGE": int64(money.Dollar), "KEY#k/SPEND#mo#202611": int64(money.Dollar / 5), "KEY#k/SPEND#h#20261123T16": int64(money.Cent),
			"KEY#k/REQ#m#20261123T1605": 5, "KEY#k/RPM#gpt-4o-mini#20261123T1605": 35, "KEY#k/TPM#gpt-4o-mini#20261123T1605": 1600,
			"ORG/USAGE": -1, "ORG/SPEND#mo#202611": -1,
		}},
		{"over-time in months merges with monthly, stricter wins", func(r *Request) {
			r.Key = Limits{PerMonth: money.Dollar, OverTime: money.Dollar / 2, OverTimeUnit: Month}
		}, map[string]int64{"KEY#k/USAGE": 0, "KEY#k/SPEND#mo#202611": int64(money.Dollar / 2), "ORG/USAGE": -1, "ORG/SPEND#mo#202611": -1}},
		{"user and org", func(r *Request) {
			r.UserID = "alice"
			r.User = &Limits{Lifetime: money.Dollar, Rate: 10, RateUnit: Hour}
			r.Org = &Limits{Lifetime: 100 * money.Dollar, PerMonth: 20 * money.Dollar}
		}, map[string]int64{
			"KEY#k/USAGE": 0, "KEY#k/SPEND#mo#202611": 0, "USER#alice/USAGE": int64(money.Dollar), "USER#alice/REQ#h#20261123T16": 10,
			"USER#alice/SPEND#mo#202611": -1, "ORG/USAGE": int64(100 * money.Dollar), "ORG/SPEND#mo#202611": int64(20 * money.Dollar),
		}},
		{"model limit by exact name wins over family", func(r *Request) {
			r.Key.Models = map[string]apikey.ModelLimit{"gpt-4o-mini-2024-07-18": {RPM: 3}, "gpt-4o-mini": {RPM: 35}}
		}, map[string]int64{"KEY#k/USAGE": 0, "KEY#k/SPEND#mo#202611": 0, "KEY#k/RPM#gpt-4o-mini-2024-07-18#20261123T1605": 3, "ORG/USAGE": -1, "ORG/SPEND#mo#202611": -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.mut(&r)
			got := names(Plan(r))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d charges %v, want %v", len(got), got, tt.want)
			}
			for n, limit := range tt.want {
				c, ok := got[n]
				deferred := limit < 0
				if !ok || c.Limit != max(limit, 0) || c.Deferred != deferred {
					t.Fatalf("%s: got %+v (present %v), want limit %d, deferred %v", n, c, ok, max(limit, 0), deferred)
				}
				if deferred && c.Reserved() != 0 || !deferred && c.Reserved() != c.Amount {
					t.Fatalf("%s: reserved %d of %d", n, c.Reserved(), c.Amount)
				}
				want := map[Kind]int64{Spend: 500, Requests: 1, Tokens: 100}[c.Kind]
				if c.Amount != want {
					t.Fatalf("%s amount = %d, want %d", n, c.Amount, want)
				}
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 16, 5, 42, 0, time.UTC)
	_, end, _ := Window(Minute, now)
	if got := (Charge{Resets: end}).RetryAfter(now); got != 18*time.Second {
		t.Fatalf("RetryAfter = %v", got)
	}
	if got := (Charge{}).RetryAfter(now); got != 0 {
		t.Fatalf("lifetime RetryAfter = %v", got)
	}
}

func TestFitOutput(t *testing.T) {
	tests := []struct {
		remaining, prompt money.Nanos
		outPico, n        int64
		want              int64
	}{
		{1000, 100, 600_000, 1, 1},         // 899 nanos left / 600 per token
		{money.Cent, 0, 600_000, 1, 16666}, // 1 cent at $0.60/M
		{money.Cent, 0, 600_000, 2, 8333},
		{100, 100, 600_000, 1, 0},
		{50, 100, 600_000, 1, 0},
	}
	for _, tt := range tests {
		if got := FitOutput(tt.remaining, tt.prompt, tt.outPico, tt.n); got != tt.want {
			t.Errorf("FitOutput(%d, %d, %d, %d) = %d, want %d", tt.remaining, tt.prompt, tt.outPico, tt.n, got, tt.want)
		}
		// Whatever fits must really fit.
		got := FitOutput(tt.remaining, tt.prompt, tt.outPico, tt.n)
		cost := tt.prompt + money.Nanos((got*tt.n*tt.outPico+999)/1000)
		if got > 0 && cost > tt.remaining {
			t.Errorf("FitOutput overshoots: %d tokens cost %d > %d", got, cost, tt.remaining)
		}
	}
}
