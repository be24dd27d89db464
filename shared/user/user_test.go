package user

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/money"
)

func TestUserExpired(t *testing.T) {
	now := time.Unix(1_000, 0)
	for _, tc := range []struct {
		expiresAt int64
		want      bool
	}{
		{0, false},
		{999, true},
		{1_000, true},
		{1_001, false},
	} {
		u := User{ExpiresAt: tc.expiresAt}
		if got := u.Expired(now); got != tc.want {
			t.Errorf("Expired with expiresAt %d = %v, want %v", tc.expiresAt, got, tc.want)
		}
	}
}

func TestUserAndOrgJSON(t *testing.T) {
	u := User{ID: "i", UserID: "s1", Name: "n", CreatedAt: 1, UpdatedAt: 2, Tags: []string{"t"},
		CostLimitLifetime: 100 * money.Dollar, CostLimitOverTime: money.Cent, CostLimitUnit: "mo",
		RateLimitOverTime: 10, RateLimitUnit: "s", Version: 7}
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"i","userId":"s1","name":"n","createdAt":1,"updatedAt":2,"tags":["t"],"revoked":false,"revokedReason":"",` +
		`"costLimitInUsd":100,"costLimitInUsdOverTime":0.01,"costLimitInUsdUnit":"mo","rateLimitOverTime":10,"rateLimitUnit":"s","ttl":""}`
	if string(b) != want {
		t.Errorf("json\n %s\nwant\n %s", b, want)
	}
	o, _ := json.Marshal(Org{CostLimitLifetime: money.Dollar, CostLimitPerMonth: 5 * money.Cent, UpdatedAt: 3, Version: 2})
	if string(o) != `{"costLimitInUsd":1,"costLimitInUsdPerMonth":0.05,"updatedAt":3}` {
		t.Errorf("org json %s", o)
	}
}
