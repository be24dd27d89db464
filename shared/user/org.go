package user

import "github.com/stipend/stipend/shared/money"

// Org is the organisation-wide settings: spend limits across every key and
// user together, which protect the account of the provider keys behind the
// proxy (a teacher's one OpenAI account shared by a whole class) whatever the
// per-key and per-user limits add up to. Zero means no limit; an
// organisation that never set limits has the zero Org (Version 0).
type Org struct {
	// CostLimitLifetime caps the organisation's spend over all time.
	CostLimitLifetime money.Nanos `json:"costLimitInUsd"`
	// CostLimitPerMonth caps the organisation's spend per calendar month (UTC).
	CostLimitPerMonth money.Nanos `json:"costLimitInUsdPerMonth"`
	UpdatedAt         int64       `json:"updatedAt"` // unix seconds; 0 = never set
	Version           int64       `json:"-"`         // 0 = never stored; bumped on every change
}
