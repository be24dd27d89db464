package dynamo

import (
	"testing"
	"time"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/testclock"
)

// TestCounterKeys pins the stored names of counters: existing tables hold
// them, so a typed owner or counter must keep its item key exactly, and
// every stored name must read back to the same owner and counter.
func TestCounterKeys(t *testing.T) {
	now := time.Date(2026, 11, 23, 16, 5, 0, 0, time.UTC)
	tests := []struct {
		owner   budget.Owner
		counter budget.Counter
		pk, sk  string
	}{
		{budget.KeyOwner("k"), budget.LifetimeSpend(), "KEY#k", "USAGE"},
		{budget.UserOwner("bob"), budget.MonthSpend(now), "USER#bob", "SPEND#mo#202611"},
		{budget.OrgOwner(), budget.MonthSpend(now), "ORG", "SPEND#mo#202611"},
		{budget.KeyOwner("k"), budget.Counter{Kind: budget.Spend, Unit: budget.Hour, Window: "20261123T16"}, "KEY#k", "SPEND#h#20261123T16"},
		{budget.KeyOwner("k"), budget.Counter{Kind: budget.Requests, Unit: budget.Minute, Window: "20261123T1605"}, "KEY#k", "REQ#m#20261123T1605"},
		{budget.KeyOwner("k"), budget.Counter{Kind: budget.Requests, Unit: budget.Minute, Window: "20261123T1605", Model: "gpt-4o-mini"}, "KEY#k", "RPM#gpt-4o-mini#20261123T1605"},
		{budget.KeyOwner("k"), budget.Counter{Kind: budget.Tokens, Unit: budget.Minute, Window: "20261123T1605", Model: "ft:gpt#x"}, "KEY#k", "TPM#ft:gpt#x#20261123T1605"},
	}
	for _, tt := range tests {
		pk, sk := counterKey(tt.owner, tt.counter)
		if pk != tt.pk || sk != tt.sk {
			t.Errorf("counterKey(%+v, %+v) = %q %q, want %q %q", tt.owner, tt.counter, pk, sk, tt.pk, tt.sk)
		}
		o, err := parseOwner(pk)
		if err != nil || o != tt.owner {
			t.Errorf("parseOwner(%q) = %+v, %v", pk, o, err)
		}
		c, err := parseCounter(sk)
		if err != nil || c != tt.counter {
			t.Errorf("parseCounter(%q) = %+v, %v", sk, c, err)
		}
	}
	// The deprecated stored names agree with the typed counters.
	at := testclock.Now(t)
	if _, sk := counterKey(budget.OrgOwner(), budget.MonthSpend(at)); sk != budget.MonthCounter(at) {
		t.Errorf("month counter %q, budget.MonthCounter %q", sk, budget.MonthCounter(at))
	}
}

// TestReservationLayout pins the stored form of a reservation: a stored one
// decodes to the plan it was written from, and encodes to the same bytes.
func TestReservationLayout(t *testing.T) {
	now := testclock.Now(t)
	r := &budget.Reservation{ID: "ev1", KeyID: "k", Cost: 500, Deadline: now.Add(time.Minute).UTC(),
		Charges: budget.Plan(budget.Request{KeyID: "k", UserID: "bob", Cost: 500, Tokens: 10, Now: now,
			Key: budget.Limits{Rate: 5, RateUnit: budget.Minute, PerMonth: 1000}})}
	b, err := encodeReservation(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeReservation(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Charges) != len(r.Charges) {
		t.Fatalf("decoded %d charges, want %d", len(got.Charges), len(r.Charges))
	}
	// A deferred charge is stored by its counter only (its amount is the
	// reservation's cost).
	stored := func(c budget.Charge) budget.Charge {
		if c.Deferred {
			return budget.Charge{Owner: c.Owner, Counter: c.Counter, Amount: int64(r.Cost), Deferred: true}
		}
		return c
	}
	want := map[budget.Charge]bool{}
	for _, c := range r.Charges {
		want[stored(c)] = true
	}
	for _, c := range got.Charges {
		if !want[c] {
			t.Errorf("decoded charge %+v not in the plan", c)
		}
	}
	again, _ := encodeReservation(got)
	if string(again) != string(b) {
		t.Errorf("re-encoded\n%s\nwant\n%s", again, b)
	}
}
