package form

import (
	"context"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/user"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/storeerr"
)

// UserReader reads users: a key's userId must name a stored one.
type UserReader interface {
	GetUser(ctx context.Context, userID string) (*user.User, error)
}

// ApplyUser validates the limits, ttl and tags present in req and writes them
// to u; create (u fresh) and update (u as stored) share it. Name is written
// too, once the caller has checked it; userId and revocation are the
// callers'. now sets expiresAt when a ttl is given.
func ApplyUser(req *UserRequest, u *user.User, now time.Time) error {
	if req.Name != nil {
		u.Name = strings.TrimSpace(*req.Name)
	}
	// "never" and "" mean no expiry, shown as "" (as BricksAI does).
	for _, err := range []error{
		setTTL(req.TTL, RuleUserTTL, true, now, &u.TTL, &u.ExpiresAt),
		setRate(req.RateLimitOverTime, req.RateLimitUnit, &u.RateLimitOverTime, &u.RateLimitUnit),
		setDollars("costLimitInUsd", req.CostLimitLifetime, &u.CostLimitLifetime),
		setDollars("costLimitInUsdOverTime", req.CostLimitOverTime, &u.CostLimitOverTime),
		setCostUnit(req.CostLimitUnit, &u.CostLimitUnit),
	} {
		if err != nil {
			return err
		}
	}
	if req.Tags != nil {
		u.Tags = response.NonEmpty(*req.Tags)
	}
	// Rules across fields, checked on the result so an update that sets only
	// one of a pair is judged with the other as stored.
	if u.RateLimitOverTime > 0 && u.RateLimitUnit == "" {
		return request.Invalid("rateLimitUnit", "rateLimitUnit is required when rateLimitOverTime is greater than 0; it must be %s", RuleRateUnit)
	}
	if u.CostLimitOverTime > 0 && u.CostLimitUnit == "" {
		return request.Invalid("costLimitInUsdUnit", "costLimitInUsdUnit is required when costLimitInUsdOverTime is greater than 0; it must be %s", RuleCostUnit)
	}
	return nil
}

// ValidUserID reports whether id is a usable userId: it appears in URL paths
// and storage keys, so it is kept to a safe alphabet.
func ValidUserID(id string) bool {
	if id == "" || len(id) > MaxUserIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-@+", c) >= 0) {
			return false
		}
	}
	return true
}

// CheckUser checks the userId of a key request: absent or "" (no user) is
// fine, anything else must name an existing user.
func CheckUser(ctx context.Context, store UserReader, userID *string) error {
	if userID == nil || strings.TrimSpace(*userID) == "" {
		return nil
	}
	id := strings.TrimSpace(*userID)
	if _, err := store.GetUser(ctx, id); err != nil {
		if storeerr.IsNotFound(err) {
			return request.Invalid("userId", "user %q does not exist; create it with POST /api/v1/users first", id)
		}
		return response.StoreError(err, "user "+id)
	}
	return nil
}

// ValidName checks a required display name.
func ValidName(field string, s *string) error {
	if s == nil || strings.TrimSpace(*s) == "" {
		return request.Invalid(field, "%s is required and must be a non-empty string", field)
	}
	if len(*s) > 256 {
		return request.Invalid(field, "%s must be at most 256 characters", field)
	}
	return nil
}
