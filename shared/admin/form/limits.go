package form

import (
	"strings"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/money"
)

// The fields keys and users share (limits, expiry, revocation), applied the
// same way for both. Unit rules come from package budget, which enforces them.

// setTTL applies a ttl field: "" — and "never" where allowed — removes the
// expiry; anything else is a duration counted from now.
func setTTL(raw *string, rule string, allowNever bool, now time.Time, ttl *string, expiresAt *int64) error {
	if raw == nil {
		return nil
	}
	v := strings.TrimSpace(*raw)
	*ttl, *expiresAt = "", 0
	if v == "" || allowNever && v == "never" {
		return nil
	}
	d, err := apikey.ParseDuration(v)
	if err != nil {
		return request.MustBe("ttl", rule)
	}
	*ttl, *expiresAt = v, now.Add(d).Unix()
	return nil
}

// setRate applies rateLimitOverTime and rateLimitUnit.
func setRate(count *request.WholeNumber, unit *string, dstCount *int64, dstUnit *string) error {
	if count != nil {
		if *count < 0 {
			return request.MustBe("rateLimitOverTime", RuleCount)
		}
		*dstCount = int64(*count)
	}
	if unit != nil {
		if *unit != "" && !budget.ValidRateUnit(*unit) {
			return request.MustBe("rateLimitUnit", RuleRateUnit)
		}
		*dstUnit = *unit
	}
	return nil
}

// setDollars applies a non-negative limit in US dollars.
func setDollars(field string, v *money.Nanos, dst *money.Nanos) error {
	if v == nil {
		return nil
	}
	if *v < 0 {
		return request.MustBe(field, RuleDollars)
	}
	*dst = *v
	return nil
}

// setCostUnit applies costLimitInUsdUnit.
func setCostUnit(v *string, dst *string) error {
	if v == nil {
		return nil
	}
	if *v != "" && !budget.ValidCostUnit(*v) {
		return request.MustBe("costLimitInUsdUnit", RuleCostUnit)
	}
	*dst = *v
	return nil
}

// SetRevoked applies revoked and revokedReason: revoking or reinstating
// replaces the reason; a reason alone changes it only on a revoked item.
func SetRevoked(revoked *bool, reason *string, dstRevoked *bool, dstReason *string) {
	switch {
	case revoked != nil:
		*dstRevoked, *dstReason = *revoked, ""
		if *revoked && reason != nil {
			*dstReason = *reason
		}
	case reason != nil && *dstRevoked:
		*dstReason = *reason
	}
}
