// Package form is the admin API's key and user forms: the fields a client
// sends to create or change a proxy key (KeyRequest) or a user
// (UserRequest), their rules, their defaults, and how they are applied to an
// apikey.Key or a user.User. The single-item routes (package admin), the
// roster and bulk update (package roster) and the LiteLLM-compatible routes
// (package litellm) all build keys and users through it, so a field means
// the same, and is refused with the same 400, on every route.
//
// The rules live here rather than in apikey and user because they are the
// admin API's: its field names, its messages and its checks against stored
// provider settings and users. The domain packages stay free of them.
package form

import (
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
)

// Key retrieval methods (BricksAI's keyRetrievalMethod).
const (
	RetrieveOnce            = "ONCE"
	RetrieveOncePerViewer   = "ONCE_PER_VIEWER"
	RetrieveAnytimeByViewer = "ANYTIME_BY_VIEWER"
)

// Rules shared by validation messages ("<field> must be <rule>").
const (
	RuleDollars     = "a non-negative number of US dollars"
	RuleCount       = "a non-negative integer"
	RuleRateUnit    = "one of s, m, h, d"
	RuleCostUnit    = "one of m, h, d, mo"
	RuleTTL         = "a positive integer followed by s, m, h or d, like 1h"
	RulePaths       = "a list of {path, method} objects whose path starts with /v1/"
	RuleModelLimits = "an object mapping model names to {rpm, tpm} non-negative integers"
	RuleAliases     = "an object mapping requested model names to the model names that serve them"
	RuleUserID      = "1 to 128 letters, digits or . _ - @ +"
	RuleUserTTL     = `one of "never", "24h", "168h", "720h", or a positive integer followed by s, m, h or d`
)

// MaxUserIDLen bounds a userId.
const MaxUserIDLen = 128

// KeyRequest is the body of POST and PATCH /api/v1/secret-keys. Every field is
// a pointer: nil means "absent", so an update changes only what it names.
type KeyRequest struct {
	Name               *string                       `json:"name" rule:"a non-empty string"`
	ProviderSettingIDs *[]string                     `json:"providerSettingIds" rule:"a non-empty list of provider setting ids"`
	TTL                *string                       `json:"ttl" rule:"a positive integer followed by s, m, h or d, like 1h"`
	RateLimitOverTime  *request.WholeNumber          `json:"rateLimitOverTime" rule:"a non-negative integer"`
	RateLimitUnit      *string                       `json:"rateLimitUnit" rule:"one of s, m, h, d"`
	CostLimitPerMonth  *money.Nanos                  `json:"costLimitInUsdPerMonth" rule:"a non-negative number of US dollars"`
	CostLimitLifetime  *money.Nanos                  `json:"costLimitInUsdLifetime" rule:"a non-negative number of US dollars"`
	CostLimitOverTime  *money.Nanos                  `json:"costLimitInUsdOverTime" rule:"a non-negative number of US dollars"`
	CostLimitUnit      *string                       `json:"costLimitInUsdUnit" rule:"one of m, h, d, mo"`
	KeyRetrievalMethod *string                       `json:"keyRetrievalMethod" rule:"ONCE, ONCE_PER_VIEWER or ANYTIME_BY_VIEWER"`
	AllowedModels      *[]string                     `json:"allowedModels" rule:"a list of model names"`
	AllowedPaths       *[]apikey.PathRule            `json:"allowedPaths" rule:"a list of {path, method} objects whose path starts with /v1/"`
	ModelLimits        *map[string]apikey.ModelLimit `json:"modelLimits" rule:"an object mapping model names to {rpm, tpm} non-negative integers"`
	UserID             *string                       `json:"userId" rule:"a string"`
	ShouldLogRequest   *bool                         `json:"shouldLogRequest" rule:"true or false"`
	ShouldLogResponse  *bool                         `json:"shouldLogResponse" rule:"true or false"`
	Moderation         *bool                         `json:"moderation" rule:"true or false"`
	LowerMaxTokens     *bool                         `json:"lowerMaxTokens" rule:"true or false"`
	Tags               *[]string                     `json:"tags" rule:"a list of strings"`
	Metadata           *map[string]any               `json:"metadata" rule:"a JSON object"`
	Aliases            *map[string]string            `json:"aliases" rule:"an object mapping requested model names to the model names that serve them"`
	Revoked            *bool                         `json:"revoked" rule:"true or false"`
	RevokedReason      *string                       `json:"revokedReason" rule:"a string"`

	// ModerationStrikeLimit: flagged requests that suspend the key (default
	// 3); Suspended: false lifts a suspension and resets the strikes.
	ModerationStrikeLimit *request.WholeNumber `json:"moderationStrikeLimit" rule:"a positive integer"`
	Suspended             *bool                `json:"suspended" rule:"false, which lifts the key's suspension and resets its moderation strikes"`
}

// UserRequest is the body of POST and PATCH /api/v1/users. Every field is a
// pointer: nil means "absent", so an update changes only what it names.
type UserRequest struct {
	UserID            *string              `json:"userId" rule:"1 to 128 letters, digits or . _ - @ +"`
	Name              *string              `json:"name" rule:"a non-empty string"`
	TTL               *string              `json:"ttl" rule:"one of \"never\", \"24h\", \"168h\", \"720h\", or a positive integer followed by s, m, h or d"`
	RateLimitOverTime *request.WholeNumber `json:"rateLimitOverTime" rule:"a non-negative integer"`
	RateLimitUnit     *string              `json:"rateLimitUnit" rule:"one of s, m, h, d"`
	CostLimitLifetime *money.Nanos         `json:"costLimitInUsd" rule:"a non-negative number of US dollars"`
	CostLimitOverTime *money.Nanos         `json:"costLimitInUsdOverTime" rule:"a non-negative number of US dollars"`
	CostLimitUnit     *string              `json:"costLimitInUsdUnit" rule:"one of m, h, d, mo"`
	Tags              *[]string            `json:"tags" rule:"a list of strings"`
	Revoked           *bool                `json:"revoked" rule:"true or false"`
	RevokedReason     *string              `json:"revokedReason" rule:"a string"`
}
