package dynamo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

func rosterTestKey(userID string) *apikey.Key {
	id, plain := apikey.Generate()
	return &apikey.Key{ID: id, Hash: apikey.Hash(plain), Name: userID, UserID: userID, Tags: []string{"roster"}, CreatedAt: 100, UpdatedAt: 100}
}

func TestRosterKeys(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()

	t.Run("create, read, replace", func(t *testing.T) {
		s := newStore(t, endpoint, "roster")
		k1 := rosterTestKey("s1")
		if err := s.CreateRosterKey(ctx, k1); err != nil || k1.Version != 1 {
			t.Fatalf("CreateRosterKey = %v, version %d", err, k1.Version)
		}
		// The key is an ordinary key: GetKey and ListKeys see it.
		got, err := s.GetKey(ctx, k1.ID)
		if err != nil || got.Hash != k1.Hash || got.UserID != "s1" || got.Version != 1 {
			t.Fatalf("GetKey = %+v, %v", got, err)
		}
		// A second roster key for the same user is refused, and not stored.
		k2 := rosterTestKey("s1")
		if err := s.CreateRosterKey(ctx, k2); !errors.Is(err, ErrExists) {
			t.Fatalf("second roster key: %v", err)
		}
		if _, err := s.GetKey(ctx, k2.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("refused key was stored: %v", err)
		}
		if err := s.CreateRosterKey(ctx, &apikey.Key{ID: "x"}); err == nil {
			t.Fatal("key without a userId accepted")
		}

		m, err := s.RosterKeys(ctx, []string{"s1", "nobody", "s1"})
		if err != nil || len(m) != 1 || m["s1"].KeyID != k1.ID || m["s1"].Key == nil || m["s1"].Key.Hash != k1.Hash {
			t.Fatalf("RosterKeys = %+v, %v", m, err)
		}
		// The marker does not disturb the user's own item or the user list.
		if users, err := s.ListUsers(ctx); err != nil || len(users) != 0 {
			t.Fatalf("ListUsers = %v, %v", users, err)
		}

		// Rotate: k3 replaces k1, which is revoked in the same transaction.
		k3 := rosterTestKey("s1")
		old := *m["s1"].Key
		old.Revoked, old.RevokedReason = true, "rotated"
		stale := old
		if err := s.ReplaceRosterKey(ctx, k1.ID, &old, k3); err != nil || old.Version != 2 || k3.Version != 1 {
			t.Fatalf("ReplaceRosterKey = %v (versions %d, %d)", err, old.Version, k3.Version)
		}
		if got, _ := s.GetKey(ctx, k1.ID); !got.Revoked || got.RevokedReason != "rotated" || got.Version != 2 {
			t.Fatalf("old key after rotate: %+v", got)
		}
		if m, _ := s.RosterKeys(ctx, []string{"s1"}); m["s1"].KeyID != k3.ID {
			t.Fatalf("marker after rotate: %+v", m)
		}

		tests := []struct {
			name   string
			prev   string
			revoke *apikey.Key
		}{
			{"marker moved on", k1.ID, nil},
			{"stale version of the key to revoke", k3.ID, func() *apikey.Key { c := *k3; c.Version = 0; return &c }()},
			{"revoke names another key", k3.ID, &stale},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				k := rosterTestKey("s1")
				err := s.ReplaceRosterKey(ctx, tc.prev, tc.revoke, k)
				if err == nil {
					t.Fatal("replace succeeded")
				}
				if _, gerr := s.GetKey(ctx, k.ID); !errors.Is(gerr, ErrNotFound) {
					t.Fatalf("failed replace stored its key: %v", gerr)
				}
				if m, _ := s.RosterKeys(ctx, []string{"s1"}); m["s1"].KeyID != k3.ID {
					t.Fatalf("marker moved: %+v", m)
				}
			})
		}
		if err := s.ReplaceRosterKey(ctx, k1.ID, nil, rosterTestKey("s1")); !errors.Is(err, ErrConflict) {
			t.Errorf("replace of a key the marker no longer names: %v", err)
		}
		if err := s.ReplaceRosterKey(ctx, "never", nil, rosterTestKey("no-marker")); !errors.Is(err, ErrConflict) {
			t.Errorf("replace without a marker: %v", err)
		}
	})

	t.Run("marker naming a missing key", func(t *testing.T) {
		s := newStore(t, endpoint, "roster-missing")
		if _, err := s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.table), Item: rosterMarker("s9", "gone", 1)}); err != nil {
			t.Fatal(err)
		}
		m, err := s.RosterKeys(ctx, []string{"s9"})
		if err != nil || m["s9"].KeyID != "gone" || m["s9"].Key != nil {
			t.Fatalf("RosterKeys = %+v, %v", m, err)
		}
		k := rosterTestKey("s9")
		if err := s.ReplaceRosterKey(ctx, "gone", nil, k); err != nil {
			t.Fatalf("reissue: %v", err)
		}
	})

	t.Run("batches of more than 100", func(t *testing.T) {
		s := newStore(t, endpoint, "roster-batch")
		const n = 250
		ids := make([]string, 0, n+10)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			id := fmt.Sprintf("s%03d", i)
			ids = append(ids, id)
			wg.Go(func() { errs <- s.CreateRosterKey(ctx, rosterTestKey(id)) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10 {
			ids = append(ids, fmt.Sprintf("absent%d", i))
		}
		m, err := s.RosterKeys(ctx, ids)
		if err != nil || len(m) != n {
			t.Fatalf("RosterKeys: %d markers, %v", len(m), err)
		}
		for id, rk := range m {
			if rk.Key == nil || rk.Key.UserID != id || rk.Key.ID != rk.KeyID {
				t.Fatalf("marker %s = %+v", id, rk)
			}
		}
	})

	t.Run("concurrent creates for one user", func(t *testing.T) {
		s := newStore(t, endpoint, "roster-race")
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, lost := 0, 0
		for range n {
			wg.Go(func() {
				err := s.CreateRosterKey(ctx, rosterTestKey("s1"))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, ErrExists):
					lost++
				default:
					t.Errorf("CreateRosterKey: %v", err)
				}
			})
		}
		wg.Wait()
		keys, err := s.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if won != 1 || lost != n-1 || len(keys) != 1 {
			t.Fatalf("won %d, lost %d, keys stored %d; want 1, %d, 1", won, lost, len(keys), n-1)
		}
	})
}
