package dynamo

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/user"
)

func TestUserAndOrgStore(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()

	t.Run("users", func(t *testing.T) {
		s := newStore(t, endpoint, "users")
		u := &user.User{
			ID: "internal-1", UserID: "s1234567", Name: "Ada", CreatedAt: 200, UpdatedAt: 200, Tags: []string{"cs101"},
			CostLimitLifetime: 100 * money.Dollar, CostLimitOverTime: 5 * money.Cent, CostLimitUnit: "mo",
			RateLimitOverTime: 10, RateLimitUnit: "m", TTL: "24h", ExpiresAt: 86_600,
		}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if u.Version != 1 {
			t.Errorf("version after create = %d", u.Version)
		}
		dup := *u
		dup.ID, dup.Name = "internal-2", "Someone else"
		if err := s.CreateUser(ctx, &dup); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate userId: %v", err)
		}
		got, err := s.GetUser(ctx, "s1234567")
		if err != nil || !reflect.DeepEqual(got, u) {
			t.Fatalf("GetUser = %+v, %v; want %+v", got, err, u)
		}
		if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing user: %v", err)
		}

		got.Revoked, got.RevokedReason, got.UpdatedAt = true, "left", 300
		if err := s.UpdateUser(ctx, got); err != nil || got.Version != 2 {
			t.Fatalf("UpdateUser = %v, version %d", err, got.Version)
		}
		again, _ := s.GetUser(ctx, "s1234567")
		if !reflect.DeepEqual(again, got) {
			t.Errorf("after update %+v, want %+v", again, got)
		}
		stale := *u // version 1
		stale.Name = "stale"
		if err := s.UpdateUser(ctx, &stale); !errors.Is(err, ErrConflict) || stale.Version != 1 {
			t.Fatalf("stale update: %v, version %d", err, stale.Version)
		}
		if err := s.UpdateUser(ctx, &user.User{UserID: "ghost", Version: 1}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		if _, err := s.GetUser(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update of a missing user created it: %v", err)
		}

		// Oldest first, whatever the userIds' order.
		for _, c := range []struct {
			id string
			at int64
		}{{"a-late", 500}, {"z-early", 100}} {
			if err := s.CreateUser(ctx, &user.User{ID: "i-" + c.id, UserID: c.id, Name: c.id, CreatedAt: c.at}); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, u := range list {
			ids = append(ids, u.UserID)
		}
		if want := []string{"z-early", "s1234567", "a-late"}; !reflect.DeepEqual(ids, want) {
			t.Errorf("ListUsers = %v, want %v", ids, want)
		}
		if list[1].Version != 2 || !list[1].Revoked {
			t.Errorf("listed user = %+v", list[1])
		}
	})

	t.Run("no users", func(t *testing.T) {
		s := newStore(t, endpoint, "nousers")
		list, err := s.ListUsers(ctx)
		if err != nil || len(list) != 0 {
			t.Fatalf("ListUsers = %v, %v", list, err)
		}
	})

	t.Run("concurrent user updates: exactly one wins", func(t *testing.T) {
		s := newStore(t, endpoint, "userrace")
		if err := s.CreateUser(ctx, &user.User{ID: "i", UserID: "u", Name: "n", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
		for round := range 5 {
			base, err := s.GetUser(ctx, "u")
			if err != nil {
				t.Fatal(err)
			}
			const writers = 2
			errs := make([]error, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					u := *base
					u.RateLimitOverTime = int64(i + 1)
					errs[i] = s.UpdateUser(ctx, &u)
				}()
			}
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, ErrConflict):
					t.Fatalf("round %d: unexpected error %v", round, err)
				}
			}
			if won != 1 {
				t.Fatalf("round %d: %d writers won (%v), want exactly 1", round, won, errs)
			}
			after, _ := s.GetUser(ctx, "u")
			if after.Version != base.Version+1 {
				t.Fatalf("round %d: version %d, want %d", round, after.Version, base.Version+1)
			}
		}
	})

	t.Run("org", func(t *testing.T) {
		s := newStore(t, endpoint, "org")
		o, err := s.GetOrg(ctx)
		if err != nil || !reflect.DeepEqual(*o, user.Org{}) {
			t.Fatalf("GetOrg before any write = %+v, %v", o, err)
		}
		tests := []struct {
			name    string
			version int64 // the version the write claims to have read
			set     user.Org
			err     error
		}{
			{"first write", 0, user.Org{CostLimitLifetime: 500 * money.Dollar, UpdatedAt: 10}, nil},
			{"second first write conflicts", 0, user.Org{CostLimitPerMonth: money.Dollar}, ErrConflict},
			{"write on the current version", 1, user.Org{CostLimitLifetime: 500 * money.Dollar, CostLimitPerMonth: 50 * money.Dollar, UpdatedAt: 20}, nil},
			{"stale version conflicts", 1, user.Org{}, ErrConflict},
			{"newer than stored conflicts", 9, user.Org{}, ErrConflict},
			{"clear the limits", 2, user.Org{UpdatedAt: 30}, nil},
		}
		want := user.Org{}
		for _, tc := range tests {
			o := tc.set
			o.Version = tc.version
			err := s.PutOrg(ctx, &o)
			if !errors.Is(err, tc.err) || (tc.err != nil) != (err != nil) {
				t.Fatalf("%s: PutOrg = %v, want %v", tc.name, err, tc.err)
			}
			if err == nil {
				if o.Version != tc.version+1 {
					t.Fatalf("%s: version %d, want %d", tc.name, o.Version, tc.version+1)
				}
				want = o
			} else if o.Version != tc.version {
				t.Fatalf("%s: a failed write changed the version to %d", tc.name, o.Version)
			}
			got, err := s.GetOrg(ctx)
			if err != nil || !reflect.DeepEqual(*got, want) {
				t.Fatalf("%s: GetOrg = %+v, %v; want %+v", tc.name, got, err, want)
			}
		}
	})

	t.Run("concurrent org writes: exactly one wins", func(t *testing.T) {
		s := newStore(t, endpoint, "orgrace")
		for round := range 3 {
			base, err := s.GetOrg(ctx)
			if err != nil {
				t.Fatal(err)
			}
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := *base
					o.CostLimitPerMonth = money.Nanos(i+1) * money.Dollar
					errs[i] = s.PutOrg(ctx, &o)
				}()
			}
			wg.Wait()
			if (errs[0] == nil) == (errs[1] == nil) {
				t.Fatalf("round %d: errors %v, want exactly one nil", round, errs)
			}
			for _, err := range errs {
				if err != nil && !errors.Is(err, ErrConflict) {
					t.Fatalf("round %d: %v", round, err)
				}
			}
		}
	})
}
