// Package user defines stipend's users and organisation settings.
//
// A User is a person (e.g. a student) who may own several proxy keys
// (apikey.Key.UserID names the user); the user's limits apply across all of
// those keys together, on top of each key's own limits. The Org holds the
// organisation-wide spend limits that cap every key and user at once.
//
// The JSON tags are the admin API's field names (those of BricksAI's admin
// API) and also the stored form.
package user

import (
	"time"

	"github.com/stipend/stipend/shared/money"
)

// User is a person (e.g. a student) whose limits apply across all of their
// keys. Zero limits mean "no limit".
type User struct {
	// ID is an internal random id (apikey.NewID()); UserID is the id the
	// admin chose (e.g. a student number), unique, and the one the API and
	// keys use.
	ID            string   `json:"id"`
	UserID        string   `json:"userId"`
	Name          string   `json:"name"`
	CreatedAt     int64    `json:"createdAt"` // unix seconds
	UpdatedAt     int64    `json:"updatedAt"` // unix seconds
	Tags          []string `json:"tags"`
	Revoked       bool     `json:"revoked"`
	RevokedReason string   `json:"revokedReason"`
	// CostLimitLifetime caps the user's spend over all time.
	CostLimitLifetime money.Nanos `json:"costLimitInUsd"`
	// CostLimitOverTime caps the user's spend per CostLimitUnit ("m", "h",
	// "d" or "mo"; BricksAI allows only "mo").
	CostLimitOverTime money.Nanos `json:"costLimitInUsdOverTime"`
	CostLimitUnit     string      `json:"costLimitInUsdUnit"`
	// RateLimitOverTime caps the user's requests per RateLimitUnit (s, m, h, d).
	RateLimitOverTime int64  `json:"rateLimitOverTime"`
	RateLimitUnit     string `json:"rateLimitUnit"`
	// TTL is the lifetime the user was given ("24h", "7d"; "" = never), and
	// ExpiresAt the unix second it ends (0 = never).
	TTL       string `json:"ttl"`
	ExpiresAt int64  `json:"expiresAt,omitempty"`
	Version   int64  `json:"-"` // bumped on every change
}

// Expired reports whether u has expired at now.
func (u *User) Expired(now time.Time) bool {
	return u.ExpiresAt > 0 && now.Unix() >= u.ExpiresAt
}
