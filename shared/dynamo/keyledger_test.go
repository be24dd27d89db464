package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// ledgerItem reads key k's ledger as stored.
func ledgerItem(t *testing.T, s *Store, k string) map[string]ddb.AttributeValue {
	t.Helper()
	out, err := s.db.GetItem(context.Background(), &ddb.GetItemInput{TableName: aws.String(s.table), Key: ledgerKey(k), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

// entries lists the reservation attributes (open or tombstones) of a ledger.
func entries(item map[string]ddb.AttributeValue) []string {
	var out []string
	for name := range item {
		if strings.HasPrefix(name, entryPrefix) {
			out = append(out, name)
		}
	}
	return out
}

func TestKeyLedger(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	reservation := func(id string, l budget.Limits, cost money.Nanos, at time.Time, checks ...budget.Check) *budget.Reservation {
		req := budget.Request{KeyID: "k", Key: l, Model: "gpt-4o-mini", Family: "gpt-4o-mini", Cost: cost, Tokens: 100, Now: at}
		return &budget.Reservation{ID: id, KeyID: "k", Checks: checks, Charges: budget.Plan(req), Cost: cost,
			Usage: ledger.Usage{PromptTokens: 10, CompletionTokens: 90}, Deadline: at.Add(time.Minute),
			Event: ledger.Event{ID: id, KeyID: "k", Model: "gpt-4o-mini", Status: 200, CreatedAt: at.UnixMilli()}}
	}

	t.Run("a reserve on the ledger returns the key's counters with it included", func(t *testing.T) {
		s := newStore(t, endpoint, "counted")
		if err := s.CreateKey(ctx, &apikey.Key{ID: "k", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
		limits := budget.Limits{Lifetime: money.Dollar, Rate: 2, RateUnit: budget.Minute}
		check := budget.Check{Kind: budget.CheckKey, ID: "k", Version: 1}
		requestsOf := func(r *budget.Reservation) int {
			for i, c := range r.Charges {
				if c.Kind == budget.Requests && c.Limit == 2 {
					return i
				}
			}
			t.Fatalf("no request window among %+v", r.Charges)
			return -1
		}
		for n := int64(1); n <= 2; n++ {
			r := reservation(fmt.Sprint("c", n), limits, money.Cent, now, check)
			if err := s.Reserve(ctx, r); err != nil {
				t.Fatal(err)
			}
			if len(r.Counted) != len(r.Charges) {
				t.Fatalf("reserve %d: Counted %v for %d charges", n, r.Counted, len(r.Charges))
			}
			i := requestsOf(r)
			if r.Counted[i] != n {
				t.Fatalf("reserve %d: request window counted %d, want %d (%v)", n, r.Counted[i], n, r.Counted)
			}
			for j, c := range r.Charges {
				if c.Deferred && r.Counted[j] != -1 {
					t.Fatalf("reserve %d: deferred %s counted %d", n, c.Scope, r.Counted[j])
				}
				if c.Owner == budget.KeyOwner("k") && c.Kind == budget.Spend && c.Unit == budget.Lifetime && r.Counted[j] != n*int64(money.Cent) {
					t.Fatalf("reserve %d: lifetime spend counted %d, want %d (%+v)", n, r.Counted[j], n*int64(money.Cent), r.Charges)
				}
			}
		}
		// The third is refused and learns nothing.
		r := reservation("c3", limits, money.Cent, now, check)
		var le *budget.LimitError
		if err := s.Reserve(ctx, r); !errors.As(err, &le) || r.Counted != nil {
			t.Fatalf("third reserve: %v, counted %v", err, r.Counted)
		}
	})

	t.Run("a key's own limits: the reserve is one UpdateItem, the settle the event and one UpdateItem", func(t *testing.T) {
		s := newStore(t, endpoint, "onewrite")
		if err := s.CreateKey(ctx, &apikey.Key{ID: "k", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
		limits := budget.Limits{Lifetime: money.Dollar, PerMonth: money.Dollar, Rate: 100, RateUnit: budget.Minute,
			Models: map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 50, TPM: 100_000}}}
		var r *budget.Reservation
		for n, want := range []struct{ calls, transactions int64 }{
			// The key's first: the ledger's update finds it not registered
			// for the organisation's spend (deferral.go), registers it (one
			// transaction) and tries again (Stats counts the calls that
			// succeeded: the PutItem, the transaction, the UpdateItem).
			{3, 1},
			// From then on: the event's PutItem, the ledger's update.
			{2, 0},
		} {
			id := fmt.Sprint("one", n)
			r = reservation(id, limits, money.Cent, now, budget.Check{Kind: budget.CheckKey, ID: "k", Version: 1})
			before := s.Stats()
			if err := s.Reserve(ctx, r); err != nil {
				t.Fatal(err)
			}
			if calls := s.Stats().Calls - before.Calls; calls != 1 {
				t.Fatalf("reserve %d made %d calls, want 1", n, calls)
			}
			before = s.Stats()
			ev := &ledger.Event{ID: id, KeyID: "k", Status: 200, Cost: money.Cent / 2, Usage: ledger.Usage{PromptTokens: 10, CompletionTokens: 40}, CreatedAt: now.UnixMilli()}
			if err := s.Settle(ctx, r, ev); err != nil {
				t.Fatal(err)
			}
			after := s.Stats()
			if calls, txs := after.Calls-before.Calls, after.Transactions-before.Transactions; calls != want.calls || txs != want.transactions {
				t.Fatalf("settle %d made %d calls, %d transactions; want %d, %d", n, calls, txs, want.calls, want.transactions)
			}
		}
		item := ledgerItem(t, s, "k")
		if n := entries(item); len(n) != 0 {
			t.Fatalf("entries left after the settle: %v", n)
		}
		for _, c := range r.Charges {
			if c.Owner.Kind != budget.OwnerKey {
				continue
			}
			want := map[budget.Kind]int64{budget.Spend: int64(money.Cent), budget.Requests: 2, budget.Tokens: 100}[c.Kind]
			if got := getN(item, counterAttr(c.Counter)); got != want {
				t.Errorf("%s = %d, want %d", counterAttr(c.Counter), got, want)
			}
		}
		month, _ := s.CounterTotals(ctx, budget.KeyOwner("k"), budget.MonthSpend(now))
		if month.Cost != money.Cent || month.Committed != money.Cent || month.Requests != 2 || month.CompletionTokens != 80 {
			t.Fatalf("month %+v", month)
		}
		// The organisation's spend is on the ledger, and counted.
		for _, c := range []budget.Counter{budget.LifetimeSpend(), budget.MonthSpend(now)} {
			org, err := s.CounterTotals(ctx, budget.OrgOwner(), c)
			if err != nil || org.Cost != money.Cent || org.Committed != money.Cent || org.Requests != 2 || org.CompletionTokens != 80 {
				t.Fatalf("organisation %s: %+v, %v", counterSK(c), org, err)
			}
		}
		vals, _ := s.Counters(ctx, r.Charges)
		for i, c := range r.Charges {
			want := map[budget.Kind]int64{budget.Spend: int64(money.Cent), budget.Requests: 2}[c.Kind]
			if c.Kind != budget.Tokens && vals[i] != want {
				t.Errorf("Counters: %s %s = %d, want %d", c.Owner, counterSK(c.Counter), vals[i], want)
			}
		}
	})

	t.Run("revocation applies to the next reserve, under concurrency", func(t *testing.T) {
		s := newStore(t, endpoint, "revoke")
		k := &apikey.Key{ID: "k", CreatedAt: 1}
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		check := budget.Check{Kind: budget.CheckKey, ID: "k", Version: 1}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var admittedAfter []string
		revoked := make(chan struct{})
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i >= 20 {
					<-revoked
				}
				id := fmt.Sprintf("c%02d", i)
				err := s.Reserve(ctx, reservation(id, budget.Limits{}, money.Micro, now, check))
				if i >= 20 && !errors.Is(err, budget.ErrStale) {
					mu.Lock()
					admittedAfter = append(admittedAfter, fmt.Sprintf("%s: %v", id, err))
					mu.Unlock()
				}
			}()
		}
		k.Revoked = true
		if err := s.UpdateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		close(revoked)
		wg.Wait()
		if len(admittedAfter) > 0 {
			t.Fatalf("reserves planned from version 1 after the revocation: %v", admittedAfter)
		}
		if err := s.Reserve(ctx, reservation("v2", budget.Limits{}, money.Micro, now, budget.Check{Kind: budget.CheckKey, ID: "k", Version: 2})); err != nil {
			t.Fatalf("the current version is refused: %v", err)
		}
	})

	t.Run("a key stored before ledgers had versions is seeded once from its item", func(t *testing.T) {
		s := newStore(t, endpoint, "seed")
		item, _ := keyItem(&apikey.Key{ID: "k", CreatedAt: 1, Version: 3})
		if err := s.putItem(ctx, item, ifAbsent, 0, "key k"); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, reservation("old", budget.Limits{}, 1, now, budget.Check{Kind: budget.CheckKey, ID: "k", Version: 2})); !errors.Is(err, budget.ErrStale) {
			t.Fatalf("an older version: %v", err)
		}
		if _, ok := ledgerItem(t, s, "k")[attrConfig]; ok {
			t.Fatal("seeded from a stale version")
		}
		if err := s.Reserve(ctx, reservation("cur", budget.Limits{}, 1, now, budget.Check{Kind: budget.CheckKey, ID: "k", Version: 3})); err != nil {
			t.Fatal(err)
		}
		if v := getN(ledgerItem(t, s, "k"), attrConfig); v != 3 {
			t.Fatalf("cfg = %d", v)
		}
	})

	t.Run("seeding carries a window's value over from the counter items of the earlier layout", func(t *testing.T) {
		s := newStore(t, endpoint, "seedwindows")
		item, _ := keyItem(&apikey.Key{ID: "k", CreatedAt: 1, Version: 1})
		if err := s.putItem(ctx, item, ifAbsent, 0, "key k"); err != nil {
			t.Fatal(err)
		}
		// This month, before the upgrade: 90c committed on the month's own item.
		if _, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: aws.String(s.table), Key: key(counterKey(budget.KeyOwner("k"), budget.MonthSpend(now))),
			UpdateExpression: aws.String("ADD v :a"), ExpressionAttributeValues: map[string]ddb.AttributeValue{":a": num(int64(90 * money.Cent))}}); err != nil {
			t.Fatal(err)
		}
		check := budget.Check{Kind: budget.CheckKey, ID: "k", Version: 1}
		var le *budget.LimitError
		if err := s.Reserve(ctx, reservation("over", budget.Limits{PerMonth: money.Dollar}, 20*money.Cent, now, check)); !errors.As(err, &le) || le.Charge.Scope != "key monthly spend" {
			t.Fatalf("90c + 20c under a $1 monthly limit: %v", err)
		}
		if err := s.Reserve(ctx, reservation("fits", budget.Limits{PerMonth: money.Dollar}, 10*money.Cent, now, check)); err != nil {
			t.Fatalf("90c + 10c under a $1 monthly limit: %v", err)
		}
	})

	t.Run("a retried reserve whose first attempt landed succeeds without charging twice", func(t *testing.T) {
		s := newStore(t, endpoint, "retry")
		r := reservation("twice", budget.Limits{Lifetime: money.Dollar}, 10*money.Cent, now)
		for range 2 {
			if err := s.Reserve(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if tot, _ := s.KeyTotals(ctx, "k"); tot.Committed != 10*money.Cent {
			t.Fatalf("committed %s", tot.Committed)
		}
	})

	t.Run("the sweep finds expired reservations, keeps the index while one is open and drops it after", func(t *testing.T) {
		s := newStore(t, endpoint, "sweep")
		l := budget.Limits{Lifetime: money.Dollar, Rate: 100, RateUnit: budget.Minute}
		early := reservation("early", l, 10*money.Cent, now)
		late := reservation("late", l, 10*money.Cent, now)
		late.Deadline = now.Add(10 * time.Minute)
		settled := reservation("settled", l, 10*money.Cent, now)
		for _, r := range []*budget.Reservation{early, late, settled} {
			if err := s.Reserve(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Settle(ctx, settled, &ledger.Event{ID: "settled", KeyID: "k", Status: 200, Cost: money.Cent, CreatedAt: now.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
		stale, err := s.StaleReservations(ctx, now.Add(2*time.Minute))
		if err != nil || len(stale) != 1 || stale[0].ID != "early" {
			t.Fatalf("stale %v, %v", stale, err)
		}
		if err := s.SettleStale(ctx, stale[0]); err != nil {
			t.Fatal(err)
		}
		if again, _ := s.StaleReservations(ctx, now.Add(2*time.Minute)); len(again) != 0 {
			t.Fatalf("settled reservation found again: %d", len(again))
		}
		// The index moved to the late one's deadline.
		if sk := getS(ledgerItem(t, s, "k"), attrGSI3SK); sk != ledgerDue(late.Deadline, "k") {
			t.Fatalf("index %q", sk)
		}
		stale, _ = s.StaleReservations(ctx, now.Add(11*time.Minute))
		if len(stale) != 1 || stale[0].ID != "late" {
			t.Fatalf("late not found: %v", stale)
		}
		if err := s.SettleStale(ctx, stale[0]); err != nil {
			t.Fatal(err)
		}
		s.StaleReservations(ctx, now.Add(20*time.Minute))
		item := ledgerItem(t, s, "k")
		if _, ok := item[attrGSI3PK]; ok {
			t.Fatalf("index left on an idle ledger: %v", getS(item, attrGSI3SK))
		}
		for name := range item {
			if strings.HasPrefix(name, "REQ#") {
				t.Errorf("ended window %s left", name)
			}
		}
		tot, _ := s.KeyTotals(ctx, "k")
		if tot.Cost != 21*money.Cent || tot.Committed != 21*money.Cent || tot.Requests != 3 {
			t.Fatalf("totals %+v", tot)
		}
	})

	t.Run("an event stored by an invocation that died before the ledger: the sweep settles with it, once", func(t *testing.T) {
		s := newStore(t, endpoint, "halfway")
		r := reservation("half", budget.Limits{Lifetime: money.Dollar}, 40*money.Cent, now)
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		ev := &ledger.Event{ID: "half", KeyID: "k", Status: 200, Cost: 3 * money.Cent, CreatedAt: r.Event.CreatedAt}
		if _, err := s.recordEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		stale, _ := s.StaleReservations(ctx, now.Add(time.Hour))
		if len(stale) != 1 {
			t.Fatalf("stale %d", len(stale))
		}
		if err := s.SettleStale(ctx, stale[0]); err != nil {
			t.Fatal(err)
		}
		tot, _ := s.KeyTotals(ctx, "k")
		var evs []*ledger.Event
		s.Events(ctx, "k", now.Add(-time.Hour), now.Add(time.Hour), func(e *ledger.Event) error { evs = append(evs, e); return nil })
		if tot.Cost != 3*money.Cent || tot.Committed != 3*money.Cent || len(evs) != 1 || evs[0].Incomplete {
			t.Fatalf("totals %+v, events %+v", tot, evs)
		}
	})

	t.Run("a reservation kept as its own item by an earlier version is still swept", func(t *testing.T) {
		s := newStore(t, endpoint, "legacy")
		r := reservation("old", budget.Limits{Lifetime: money.Dollar}, 40*money.Cent, now)
		item, err := reservationItem(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
			t.Fatal(err)
		}
		// What the earlier version's reserve added to the lifetime counter.
		if _, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: aws.String(s.table), Key: ledgerKey("k"),
			UpdateExpression: aws.String("ADD v :a"), ExpressionAttributeValues: map[string]ddb.AttributeValue{":a": num(int64(40 * money.Cent))}}); err != nil {
			t.Fatal(err)
		}
		stale, _ := s.StaleReservations(ctx, now.Add(time.Hour))
		if len(stale) != 1 {
			t.Fatalf("stale %d", len(stale))
		}
		if err := s.SettleStale(ctx, stale[0]); err != nil {
			t.Fatal(err)
		}
		if err := s.SettleStale(ctx, stale[0]); !errors.Is(err, budget.ErrSettled) {
			t.Fatalf("second sweep: %v", err)
		}
		if tot, _ := s.KeyTotals(ctx, "k"); tot.Cost != 40*money.Cent || tot.Committed != 40*money.Cent || tot.Requests != 1 {
			t.Fatalf("totals %+v", tot)
		}
	})

	t.Run("abandon on the key's ledger: nothing charged, whether the reserve landed before or lands after", func(t *testing.T) {
		s := newStore(t, endpoint, "abandon1")
		l := budget.Limits{Lifetime: money.Dollar, Rate: 10, RateUnit: budget.Minute}
		landed, late := reservation("landed", l, 30*money.Cent, now), reservation("late", l, 30*money.Cent, now)
		if err := s.Reserve(ctx, landed); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.Abandon(ctx, landed); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Abandon(ctx, late); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, late); err == nil {
			t.Fatal("a reserve landed after its abandon")
		}
		for _, r := range []*budget.Reservation{landed, late} {
			if err := s.Settle(ctx, r, &ledger.Event{ID: r.ID, KeyID: "k", Cost: money.Cent}); !errors.Is(err, budget.ErrSettled) {
				t.Fatalf("settle after abandon: %v", err)
			}
		}
		if tot, _ := s.KeyTotals(ctx, "k"); tot.Committed != 0 || tot.Cost != 0 || tot.Requests != 0 {
			t.Fatalf("after abandons: %+v", tot)
		}
		if org, _ := s.CounterTotals(ctx, budget.OrgOwner(), budget.LifetimeSpend()); org.Committed != 0 || org.Requests != 0 {
			t.Fatalf("organisation after abandons: %+v", org)
		}
		if list, _ := s.StaleReservations(ctx, now.Add(time.Hour)); len(list) != 0 {
			t.Fatalf("the sweep would charge %d abandoned reservations", len(list))
		}
	})

	t.Run("a busy key's reserve removes the windows two and three before its own", func(t *testing.T) {
		s := newStore(t, endpoint, "windows")
		l := budget.Limits{Rate: 100, RateUnit: budget.Minute, Models: map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 100, TPM: 100_000}}}
		windowed := func(item map[string]ddb.AttributeValue) []string {
			var out []string
			for name := range item {
				if strings.HasPrefix(name, "REQ#") || strings.HasPrefix(name, "RPM#") || strings.HasPrefix(name, "TPM#") {
					out = append(out, name)
				}
			}
			sort.Strings(out)
			return out
		}
		for i, at := range []time.Time{now, now.Add(time.Minute), now.Add(2 * time.Minute), now.Add(3 * time.Minute)} {
			if err := s.Reserve(ctx, reservation(fmt.Sprintf("w%d", i), l, 1, at)); err != nil {
				t.Fatal(err)
			}
		}
		// Minutes 2 and 3 stay (3 counters each); minute 0 went with minute 2's
		// reserve, minute 1 with minute 3's.
		got := windowed(ledgerItem(t, s, "k"))
		if len(got) != 6 {
			t.Fatalf("window attributes %v", got)
		}
		for _, name := range got {
			for _, gone := range []time.Time{now, now.Add(time.Minute)} {
				if strings.HasSuffix(name, "#"+gone.UTC().Format("20060102T1504")) {
					t.Fatalf("%s left: %v", gone.Format("15:04"), got)
				}
			}
		}
	})

	t.Run("tombstones of released reservations go after their time", func(t *testing.T) {
		s := newStore(t, endpoint, "tomb")
		r := reservation("rel", budget.Limits{}, money.Cent, now)
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, r); err == nil {
			t.Fatal("a copy of a released reserve landed")
		}
		if n := entries(ledgerItem(t, s, "k")); len(n) != 1 {
			t.Fatalf("entries %v", n)
		}
		s.StaleReservations(ctx, r.Deadline.Add(tombstoneLife+time.Minute))
		if n := entries(ledgerItem(t, s, "k")); len(n) != 0 {
			t.Fatalf("tombstone left: %v", n)
		}
	})
}

func TestShardedCounting(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	s := newStore(t, endpoint, "shards")

	// 40 requests of 4 keys of one user, neither the user nor the
	// organisation with a limit: counted on shards, never on their items.
	keys := []string{"k1", "k2", "k3", "k4"}
	admitted, _ := race(t, s, 40, keys, func(k string) budget.Request {
		return budget.Request{KeyID: k, UserID: "u", Cost: money.Cent, Now: now}
	}, money.Cent)
	if admitted != 40 {
		t.Fatalf("admitted %d", admitted)
	}
	for _, owner := range []budget.Owner{budget.UserOwner("u"), budget.OrgOwner()} {
		for _, c := range []budget.Counter{budget.LifetimeSpend(), budget.MonthSpend(now)} {
			tot, err := s.CounterTotals(ctx, owner, c)
			if err != nil || tot.Cost != 40*money.Cent || tot.Committed != 40*money.Cent || tot.Requests != 40 {
				t.Fatalf("%s %s: %+v, %v", owner, c, tot, err)
			}
			out, _ := s.db.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(s.table), Key: key(counterKey(owner, c)), ConsistentRead: aws.Bool(true)})
			if out.Item != nil {
				t.Errorf("%s %s: the counter item itself was written", owner, c)
			}
		}
	}
	plan := func(id string, cost money.Nanos) *budget.Reservation {
		req := budget.Request{KeyID: "k1", UserID: "u", User: &budget.Limits{Lifetime: 50 * money.Cent}, Cost: cost, Now: now}
		return &budget.Reservation{ID: id, KeyID: "k1", Charges: budget.Plan(req), Cost: cost, Deadline: now.Add(time.Minute)}
	}
	vals, _ := s.Counters(ctx, plan("read", money.Cent).Charges)
	for i, c := range plan("read", money.Cent).Charges {
		if c.Owner.Kind == budget.OwnerUser && vals[i] != int64(40*money.Cent) {
			t.Errorf("Counters: user %s = %d", counterSK(c.Counter), vals[i])
		}
	}
	// A limit set later counts the spend on the shards.
	var le *budget.LimitError
	if err := s.Reserve(ctx, plan("over", 11*money.Cent)); !errors.As(err, &le) || le.Charge.Scope != "user lifetime spend" {
		t.Fatalf("40c + 11c under a 50c limit: %v", err)
	}
	if err := s.Reserve(ctx, plan("fits", 10*money.Cent)); err != nil {
		t.Fatalf("40c + 10c under a 50c limit: %v", err)
	}
}

// TestLedgerEntryLayout: an entry decodes to the reservation it was written
// from (what a settle and the sweep need), and stays small: the ledger's
// every write costs a unit per KB.
func TestLedgerEntryLayout(t *testing.T) {
	now := testclock.Now(t)
	req := budget.Request{KeyID: "k4bcdefghijklmnopqrstuvwxy", UserID: "bob", Cost: 500, Tokens: 1000, Now: now, Model: "gpt-4o-mini", Family: "gpt-4o-mini",
		Key: budget.Limits{Lifetime: 1000, PerMonth: 1000, OverTime: 100, OverTimeUnit: budget.Day, Rate: 5, RateUnit: budget.Minute,
			Models: map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 5, TPM: 10000}}}}
	r := &budget.Reservation{ID: "ev1bcdefghijklmnopqrstuvwx", KeyID: req.KeyID, Cost: 500, Usage: ledger.Usage{PromptTokens: 10, CompletionTokens: 990},
		Deadline: now.Add(time.Minute).Truncate(time.Millisecond), Charges: budget.Plan(req),
		Event: ledger.Event{ID: "ev1bcdefghijklmnopqrstuvwx", KeyID: req.KeyID, UserID: "bob", ProviderID: "p1bcdefghijklmnopqrstuvwx", Model: "gpt-4o-mini",
			Path: "/v1/chat/completions", Method: "POST", Stream: true, CustomID: "lab-3", CreatedAt: now.UnixMilli(), RequestBody: "not kept"}}
	p, err := splitReservation(r)
	if err != nil {
		t.Fatal(err)
	}
	data, err := encodeEntry(r, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 512 {
		t.Errorf("entry of %d bytes:\n%s", len(data), data)
	}
	got, err := decodeEntry(r.KeyID, r.ID, data)
	if err != nil {
		t.Fatal(err)
	}
	want := r.Event
	want.RequestBody, want.Usage, want.Cost = "", r.Usage, r.Cost
	if got.Event != want || got.Cost != r.Cost || got.Usage != r.Usage || !got.Deadline.Equal(r.Deadline) {
		t.Errorf("decoded %+v\nwant %+v", got, r)
	}
	stored := func(c budget.Charge) budget.Charge {
		if c.Deferred {
			return budget.Charge{Owner: c.Owner, Counter: c.Counter, Amount: int64(r.Cost), Deferred: true}
		}
		return budget.Charge{Owner: c.Owner, Counter: c.Counter, Amount: c.Amount}
	}
	if len(got.Charges) != len(r.Charges) {
		t.Fatalf("decoded %d charges, want %d", len(got.Charges), len(r.Charges))
	}
	for i, c := range r.Charges {
		if got.Charges[i] != stored(c) {
			t.Errorf("charge %d: %+v, want %+v", i, got.Charges[i], stored(c))
		}
	}
}
