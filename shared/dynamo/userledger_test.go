package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
	"github.com/stipend/stipend/shared/user"
)

// TestUserVersionOnLedger: a key with a user but no user limit reserves
// with one UpdateItem (the user's version is checked on the key's ledger,
// ucfg), and a change of the user still applies to the very next reserve.
func TestUserVersionOnLedger(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	now := testclock.Now(t).Truncate(time.Hour).Add(-5 * time.Minute)
	reservation := func(id, keyID string, keyVersion, userVersion int64, userLimits *budget.Limits) *budget.Reservation {
		req := budget.Request{KeyID: keyID, UserID: "u", User: userLimits, Model: "gpt-4o-mini", Family: "gpt-4o-mini", Cost: money.Micro, Tokens: 100, Now: now}
		return &budget.Reservation{ID: id, KeyID: keyID,
			Checks:  []budget.Check{{Kind: budget.CheckKey, ID: keyID, Version: keyVersion}, {Kind: budget.CheckUser, ID: "u", Version: userVersion}},
			Charges: budget.Plan(req), Cost: money.Micro, Usage: ledger.Usage{PromptTokens: 10, CompletionTokens: 90}, Deadline: now.Add(time.Minute),
			Event: ledger.Event{ID: id, KeyID: keyID, UserID: "u", Model: "gpt-4o-mini", Status: 200, CreatedAt: now.UnixMilli()}}
	}
	setup := func(t *testing.T, table string, keys ...string) (*Store, *user.User) {
		s := newStore(t, endpoint, table)
		u := &user.User{UserID: "u", CreatedAt: 1}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := s.CreateKey(ctx, &apikey.Key{ID: k, UserID: "u", CreatedAt: 1}); err != nil {
				t.Fatal(err)
			}
		}
		return s, u
	}

	t.Run("without a user limit the reserve is one UpdateItem once the ledger has the user's version", func(t *testing.T) {
		s, u := setup(t, "uone", "k")
		if err := s.Reserve(ctx, reservation("first", "k", 1, u.Version, nil)); err != nil {
			t.Fatal(err) // seeds ucfg: the key was created after the user
		}
		if v := getN(ledgerItem(t, s, "k"), attrUserCfg); v != u.Version {
			t.Fatalf("ucfg = %d, want %d", v, u.Version)
		}
		before := s.Stats()
		if err := s.Reserve(ctx, reservation("second", "k", 1, u.Version, nil)); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Calls-before.Calls != 1 || st.Transactions != before.Transactions {
			t.Fatalf("reserve made %d calls, %d transactions, want 1 UpdateItem", st.Calls-before.Calls, st.Transactions-before.Transactions)
		}
		// A change of the user reaches the ledger in the user's own
		// transaction: the next reserve needs no seeding either.
		if err := s.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		before = s.Stats()
		if err := s.Reserve(ctx, reservation("third", "k", 1, u.Version, nil)); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Calls-before.Calls != 1 || st.Transactions != before.Transactions {
			t.Fatalf("reserve after UpdateUser made %d calls, %d transactions, want 1 UpdateItem", st.Calls-before.Calls, st.Transactions-before.Transactions)
		}
	})

	t.Run("a version the user item does not have is stale, seeded or not", func(t *testing.T) {
		s, u := setup(t, "ustale", "k")
		if err := s.Reserve(ctx, reservation("future", "k", 1, u.Version+1, nil)); !errors.Is(err, budget.ErrStale) {
			t.Fatalf("unseeded, a version the user does not have: %v", err)
		}
		if _, ok := ledgerItem(t, s, "k")[attrUserCfg]; ok {
			t.Fatal("seeded from a version the user does not have")
		}
		old := u.Version
		if err := s.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := s.Reserve(ctx, reservation("old", "k", 1, old, nil)); !errors.Is(err, budget.ErrStale) {
			t.Fatalf("the previous version after UpdateUser: %v", err)
		}
	})

	t.Run("revoking the user applies to the next reserve of each of its keys, under concurrency", func(t *testing.T) {
		keys := []string{"k1", "k2", "k3"}
		s, u := setup(t, "urevoke", keys...)
		for _, k := range keys {
			if err := s.Reserve(ctx, reservation("seed-"+k, k, 1, u.Version, nil)); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var admittedAfter []string
		revoked := make(chan struct{})
		for i := range 60 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i >= 30 {
					<-revoked
				}
				id := fmt.Sprintf("c%02d", i)
				err := s.Reserve(ctx, reservation(id, keys[i%len(keys)], 1, 1, nil))
				if i >= 30 && !errors.Is(err, budget.ErrStale) {
					mu.Lock()
					admittedAfter = append(admittedAfter, fmt.Sprintf("%s: %v", id, err))
					mu.Unlock()
				}
			}()
		}
		u.Revoked = true
		if err := s.UpdateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		close(revoked)
		wg.Wait()
		if len(admittedAfter) > 0 {
			t.Fatalf("reserves planned from the user's version 1 after its revocation: %v", admittedAfter)
		}
	})

	t.Run("a user limit still reserves in a transaction, checked on the ledger", func(t *testing.T) {
		s, u := setup(t, "ulimit", "k")
		limits := &budget.Limits{Lifetime: 3 * money.Micro}
		for i := range 3 {
			if err := s.Reserve(ctx, reservation(fmt.Sprintf("r%d", i), "k", 1, u.Version, limits)); err != nil {
				t.Fatal(err)
			}
		}
		var le *budget.LimitError
		if err := s.Reserve(ctx, reservation("over", "k", 1, u.Version, limits)); !errors.As(err, &le) {
			t.Fatalf("over the user's limit: %v", err)
		}
		if err := s.Reserve(ctx, reservation("stale", "k", 1, u.Version+1, limits)); !errors.Is(err, budget.ErrStale) {
			t.Fatalf("a version the user does not have: %v", err)
		}
	})

	t.Run("a change of the key (its user may change) makes the next reserve seed the user's version again", func(t *testing.T) {
		s, u := setup(t, "ukey", "k")
		if err := s.Reserve(ctx, reservation("first", "k", 1, u.Version, nil)); err != nil {
			t.Fatal(err)
		}
		other := &user.User{UserID: "v", CreatedAt: 1}
		if err := s.CreateUser(ctx, other); err != nil {
			t.Fatal(err)
		}
		other.Revoked = true
		if err := s.UpdateUser(ctx, other); err != nil { // version 2; v has no keys yet
			t.Fatal(err)
		}
		k, err := s.GetKey(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		k.UserID = "v"
		if err := s.UpdateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, ok := ledgerItem(t, s, "k")[attrUserCfg]; ok {
			t.Fatal("the key's change left the previous user's version on its ledger")
		}
		r := reservation("moved", "k", k.Version, 1, nil)
		r.Checks[1].ID = "v"
		if err := s.Reserve(ctx, r); !errors.Is(err, budget.ErrStale) {
			t.Fatalf("the new user's previous version: %v", err)
		}
		r = reservation("moved2", "k", k.Version, other.Version, nil)
		r.Checks[1].ID = "v"
		if err := s.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
	})
}
