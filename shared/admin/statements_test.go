package admin

import (
	"context"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// statementState holds closed months and counters for the fake store.
type statementState struct {
	statements map[string][]ledger.Statement // owner -> months
	counters   map[string]ledger.Totals      // owner/counter -> figures
}

func (s *fakeStore) Statements(_ context.Context, owner string) ([]ledger.Statement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ledger.Statement{}, s.statements[owner]...), nil
}

func (s *fakeStore) OwnerTotals(_ context.Context, owner, counter string) (ledger.Totals, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters[owner+"/"+counter], nil
}

func TestStatements(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	c := e.createKey(t, `{"name":"n","providerSettingIds":["p1"]}`)
	now := time.Date(2026, 12, 14, 9, 0, 0, 0, time.UTC)
	e.configure(func(c *Config) { c.Now = func() time.Time { return now } })
	e.store.statements = map[string][]ledger.Statement{"KEY#" + c.ID: {{Owner: "KEY#" + c.ID, Month: "2026-11", Cost: 3 * money.Cent, Requests: 7}}}
	e.store.counters = map[string]ledger.Totals{"KEY#" + c.ID + "/SPEND#mo#202612": {Cost: money.Cent, Requests: 2, Successes: 1}}

	var got struct {
		Statements []struct {
			Month            string
			CostInUsd        money.Nanos
			NumberOfRequests int64
		}
		MonthToDate struct {
			Month            string
			CostInUsd        money.Nanos
			NumberOfRequests int64
			SuccessCount     int64
		}
	}
	decode(t, e.do(t, "GET", "/api/v1/secret-keys/"+c.ID+"/statements", ""), 200, &got)
	if len(got.Statements) != 1 || got.Statements[0].Month != "2026-11" || got.Statements[0].CostInUsd != 3*money.Cent || got.Statements[0].NumberOfRequests != 7 {
		t.Fatalf("statements = %+v", got.Statements)
	}
	if m := got.MonthToDate; m.Month != "2026-12" || m.CostInUsd != money.Cent || m.NumberOfRequests != 2 || m.SuccessCount != 1 {
		t.Fatalf("month to date = %+v", m)
	}
	decode(t, e.do(t, "GET", "/api/v1/secret-keys/nope/statements", ""), 404, nil)
	decode(t, e.do(t, "GET", "/api/v1/users/nobody/statements", ""), 404, nil)
}
