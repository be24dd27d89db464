package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/testclock"
)

// newStore returns a Store on a fresh table in one DynamoDB Local shared by
// the subtests of t.
func newStore(t *testing.T, endpoint, table string) *Store {
	t.Helper()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	db := ddb.NewAt(cfg, endpoint)
	s := New(db, table, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// No TTL: fixtures are dated by the tests' clocks (see testclock).
	if err := s.CreateTable(ctx, WithoutTTL()); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable(ctx, WithoutTTL()); err != nil {
		t.Fatalf("CreateTable is not idempotent: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()

	t.Run("providers", func(t *testing.T) {
		s := newStore(t, endpoint, "providers")
		p := &provider.Setting{ID: "p1", Name: "openai", Provider: provider.OpenAI, SecretID: "arn:secret", CreatedAt: 10}
		if err := s.CreateProvider(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateProvider(ctx, p); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate create: %v", err)
		}
		got, err := s.GetProvider(ctx, "p1")
		if err != nil || got.SecretID != "arn:secret" || got.Name != "openai" {
			t.Fatalf("GetProvider = %+v, %v", got, err)
		}
		if _, err := s.GetProvider(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing provider: %v", err)
		}
		// A setting is decoded once while its item is unchanged: what a
		// caller does to its copy reaches neither the store nor the next
		// caller, and a change is read at the next call.
		got.Name = "scribbled"
		got.AllowedModels = append(got.AllowedModels, "scribbled")
		p.Deployments, p.Prices = map[string]string{"gpt-4o": "d1"}, map[string]provider.Rates{"gpt-4o": {Input: 1}}
		if err := s.UpdateProvider(ctx, p); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			got, err := s.GetProvider(ctx, "p1")
			if err != nil || got.Name != "openai" || len(got.AllowedModels) != 0 || got.Deployments["gpt-4o"] != "d1" || got.Prices["gpt-4o"].Input != 1 {
				t.Fatalf("GetProvider #%d after a caller changed its copy = %+v, %v", i, got, err)
			}
			got.Deployments["gpt-4o"] = "scribbled"
			got.Prices["gpt-4o"] = provider.Rates{Input: 2}
		}
		p.Name = "renamed"
		if err := s.UpdateProvider(ctx, p); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetProvider(ctx, "p1"); err != nil || got.Name != "renamed" {
			t.Fatalf("GetProvider after a rename = %+v, %v", got, err)
		}
		if err := s.UpdateProvider(ctx, &provider.Setting{ID: "ghost"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		s.CreateProvider(ctx, &provider.Setting{ID: "p0", CreatedAt: 5})
		list, err := s.ListProviders(ctx)
		if err != nil || len(list) != 2 || list[0].ID != "p0" || list[1].Name != "renamed" {
			t.Fatalf("ListProviders = %+v, %v", list, err)
		}
	})

	t.Run("keys", func(t *testing.T) {
		s := newStore(t, endpoint, "keys")
		id, plain := apikey.Generate()
		k := &apikey.Key{ID: id, Name: "student", Hash: apikey.Hash(plain), CreatedAt: 100, CostLimitLifetime: money.Dollar,
			AllowedPaths: []apikey.PathRule{{Path: "/v1/chat/completions", Method: "POST"}}, ModelLimits: map[string]apikey.ModelLimit{"gpt-4o-mini": {RPM: 35, TPM: 1600}}}
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetKey(ctx, id)
		if err != nil || got.Hash != k.Hash || got.Version != 1 || got.CostLimitLifetime != money.Dollar || got.ModelLimits["gpt-4o-mini"].TPM != 1600 {
			t.Fatalf("GetKey = %+v, %v", got, err)
		}
		// Two admins edit the same version: the second loses.
		a, b := *got, *got
		a.Name, b.Name = "a", "b"
		if err := s.UpdateKey(ctx, &a); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateKey(ctx, &b); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale update: %v", err)
		}
		if err := s.UpdateKey(ctx, &apikey.Key{ID: "ghost", Version: 1}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		if got, _ := s.GetKey(ctx, id); got.Name != "a" || got.Version != 2 {
			t.Fatalf("after update: %+v", got)
		}
		s.CreateKey(ctx, &apikey.Key{ID: "older", CreatedAt: 50})
		list, err := s.ListKeys(ctx)
		if err != nil || len(list) != 2 || list[0].ID != "older" || list[1].Hash == "" {
			t.Fatalf("ListKeys = %+v, %v", list, err)
		}
	})

	t.Run("concurrent records are exact", func(t *testing.T) {
		s := newStore(t, endpoint, "records")
		const n = 100
		base := testclock.MonthStart(testclock.Now(t), -1)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ev := &ledger.Event{
					ID: fmt.Sprintf("ev%03d", i), KeyID: "k1", Model: "gpt-4o-mini", Status: 200,
					Usage: ledger.Usage{PromptTokens: 10, CachedTokens: 2, CompletionTokens: 5},
					Cost:  money.Nanos(1000 + i), LatencyMs: 20, CreatedAt: base.Add(time.Duration(i) * time.Second).UnixMilli(),
				}
				if i%10 == 0 {
					ev.Status = 500
				}
				errs <- record(ctx, s, ev)
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// Settling the same reservation again adds nothing.
		r := &budget.Reservation{ID: "ev000", KeyID: "k1", Charges: budget.Plan(budget.Request{KeyID: "k1", Cost: 1000, Now: base})}
		if err := s.Settle(ctx, r, &ledger.Event{ID: "ev000", KeyID: "k1", Cost: 1000, CreatedAt: base.UnixMilli()}); !errors.Is(err, budget.ErrSettled) {
			t.Fatalf("second settle: %v", err)
		}
		tot, err := s.KeyTotals(ctx, "k1")
		if err != nil {
			t.Fatal(err)
		}
		wantCost := money.Nanos(n*1000 + n*(n-1)/2)
		want := ledger.Totals{Cost: wantCost, Committed: wantCost, Requests: n, Successes: n - n/10, PromptTokens: 10 * n, CachedTokens: 2 * n, CompletionTokens: 5 * n, LatencyMs: 20 * n}
		if tot != want {
			t.Fatalf("totals = %+v, want %+v", tot, want)
		}
		var seen []string
		var sum money.Nanos
		err = s.Events(ctx, "k1", base.Add(10*time.Second), base.Add(20*time.Second), func(ev *ledger.Event) error {
			seen = append(seen, ev.ID)
			sum += ev.Cost
			return nil
		})
		if err != nil || len(seen) != 10 || seen[0] != "ev010" || seen[9] != "ev019" {
			t.Fatalf("Events = %v, %v", seen, err)
		}
		if empty, _ := s.KeyTotals(ctx, "never-used"); empty != (ledger.Totals{}) {
			t.Fatalf("unused key totals = %+v", empty)
		}
	})
}

// record reserves an event's cost as its worst case and settles it, as the
// proxy does for one request.
func record(ctx context.Context, s *Store, ev *ledger.Event) error {
	req := budget.Request{KeyID: ev.KeyID, Cost: ev.Cost, Tokens: ev.Usage.Total(), Now: time.UnixMilli(ev.CreatedAt)}
	r := &budget.Reservation{ID: ev.ID, KeyID: ev.KeyID, Charges: budget.Plan(req), Cost: ev.Cost, Deadline: time.Now().Add(time.Minute)}
	if err := s.Reserve(ctx, r); err != nil {
		return err
	}
	return s.Settle(ctx, r, ev)
}
