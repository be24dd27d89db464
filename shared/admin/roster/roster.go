// Package roster is the admin API's bulk routes on secret keys, made for
// class rosters: enrolling a roster (a user and a key per student, from JSON
// or CSV), and updating or revoking many keys at once. Package admin wires
// the routes (authentication, audit, the error response); this package
// validates with the rules of package form, enrols with its own worker pool,
// and reaches the store through the small interfaces below.
//
// Bulk operations on secret keys, made for class rosters:
//
//	POST /api/v1/secret-keys/bulk          a user and a key per student, in one call
//	POST /api/v1/secret-keys/bulk-update   change the same fields on many keys (and their users)
//	POST /api/v1/secret-keys/bulk-revoke   revoke many keys (end of term)
//
// # Roster: POST /api/v1/secret-keys/bulk
//
// A JSON body (Content-Type: application/json) is
//
//	{
//	  "defaults": {<key fields>, "user": {<user fields>}},
//	  "students": [{"userId", "name", "email"?, "rotate"?, <key fields>, "user"?: {<user fields>}}, ...],
//	  "rotate": true | ["<userId>", ...]
//	}
//
// Key fields are those of POST /api/v1/secret-keys (providerSettingIds, ttl,
// costLimitInUsdLifetime, costLimitInUsdPerMonth, costLimitInUsdOverTime,
// costLimitInUsdUnit, rateLimitOverTime, rateLimitUnit, allowedModels,
// allowedPaths, modelLimits, keyRetrievalMethod, shouldLogRequest,
// shouldLogResponse, moderation, lowerMaxTokens, tags, metadata) with the
// same rules, except name and userId: each key is named after its student and
// belongs to the student's user. User fields are those of POST /api/v1/users
// (ttl, costLimitInUsd, costLimitInUsdOverTime, costLimitInUsdUnit,
// rateLimitOverTime, rateLimitUnit, tags) except userId and name; a user's
// ttl defaults to "never". A field given for a student replaces the default
// (lists and objects too, they are not merged). Every key also gets the tag
// "roster" (Tag), every new user too, and a student's email is kept in
// the key's metadata as "email".
//
// A CSV body (Content-Type: text/csv) has a header row naming its columns:
// userId and name are required; email, rotate, any key field and any user
// field written "user.<field>" (user.costLimitInUsd) are optional, in any
// order, matched case-insensitively. An empty cell means "the default". Lists
// (allowedModels, tags, providerSettingIds, allowedPaths as "POST
// /v1/chat/completions") are separated by ';', objects (modelLimits,
// metadata) are JSON. A byte order mark, CRLF line ends, quoted fields and
// blank lines are fine; a header without commas but with ';' or tabs makes
// that the separator (and ',' the list separator). The body must be UTF-8.
// Defaults then come from the query string, each key or user field as a
// parameter (?providerSettingIds=p1&costLimitInUsdLifetime=1&allowedModels=gpt-4o-mini;gpt-4o&user.costLimitInUsd=5,
// lists separated by ',' or ';' or given as repeated parameters), or all of
// them as one JSON object in ?defaults={...} (the parameters win over it);
// ?rotate=true or ?rotate=<userId>,<userId> rotates. With curl, send the file
// with --data-binary (-d drops its line ends). A body without a JSON or CSV
// Content-Type is read as JSON when it starts with '{', else as CSV.
//
// The whole roster is validated before anything is written: when any row
// breaks a rule, the answer is a 400 whose "errors" lists every problem, each
// naming its place (students[3] or CSV line and column), userId and field,
// and nothing is created. Then, for each student: a student whose roster key
// is still active (not revoked, not expired) is "existing" and gets nothing
// new, unless rotated: a new key replaces the old one, which is revoked with
// revokedReason "rotated". A student without one gets a user (when the userId
// is new; an existing user is left as it is) and a key: "created", with
// previousKeyId when it replaces a roster key that was revoked or expired.
// Each student's roster key is tracked by a marker item written in the same
// DynamoDB transaction as the key (see apikey.RosterKey), so two identical
// rosters sent at the same time still give each student one key. Keys made
// one at a time with POST /api/v1/secret-keys are not roster keys.
//
// The answer is JSON, {"summary", "created", "existing", "rotated",
// "failed"}, each entry with userId, name, email, keyId and, for created and
// rotated keys, the plaintext "key": shown this once, so keep the answer (a
// lost key is reissued with rotate). With ?format=csv or "Accept: text/csv"
// it is CSV for a mail merge: userId,name,email,keyId,key,status (status
// created, existing, rotated or failed), in roster order; cells a
// spreadsheet would run as formulas are prefixed with "'". The status is 200,
// or 207 when some students failed (storage errors: send the same roster
// again, it is idempotent); 503 when all of them did.
//
// # Bulk update and revoke
//
// Both select keys with exactly one of "userIds" (every key of these users;
// each must exist), "keyIds" (each must exist) or "tag" (every key with the
// tag, such as "roster" or a course tag given in the roster's defaults).
//
// POST /api/v1/secret-keys/bulk-update {<selector>, "set": {<key fields>,
// "user": {<user fields>}}, "includeRevoked": false} changes the fields of
// "set" on every selected key, with the rules of PATCH
// /api/v1/secret-keys/{keyId} (name, userId, keyRetrievalMethod and
// revocation cannot be set in bulk), and the fields of "set.user" on their
// users (for userIds, those users). Revoked keys are "skipped" unless
// includeRevoked. Every key is checked first: when the change would break a
// rule for any of them, the answer is a 400 listing them all and nothing is
// written. The answer counts matched, updated, skipped and failed keys and
// lists each key (and user) with its status.
//
// POST /api/v1/secret-keys/bulk-revoke {<selector>, "reason": "end of term"}
// revokes every selected key that is not revoked yet; the answer counts
// matched, revoked, alreadyRevoked and failed keys and lists each. Sending it
// again changes nothing. A later roster call reissues revoked roster keys.
//
// Both answer 200, 207 when some keys failed (send the request again), or
// 503 when all of them did. Bulk routes are stipend's own: unlike the
// BricksAI-shaped routes, they refuse unknown fields, so a misspelt limit is
// never silently dropped.
package roster

import (
	"context"
	"log/slog"
	"time"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/user"
)

// Enrolment is the storage a roster writes: each user's one roster key,
// tracked by a marker written in the same transaction as the key, and the
// users it creates; *dynamo.Store implements it (shared/dynamo/bulk.go).
type Enrolment interface {
	// RosterKeys returns the marker of each of userIDs that has one, with
	// the key it names (Key nil when that key does not exist).
	RosterKeys(ctx context.Context, userIDs []string) (map[string]apikey.RosterKey, error)
	// CreateRosterKey stores k with its marker; storeerr.ErrExists when the
	// user already has a marker. Nothing is written on failure.
	CreateRosterKey(ctx context.Context, k *apikey.Key) error
	// ReplaceRosterKey stores k and moves the marker from prevKeyID to it,
	// and writes revoke (the previous key, revoked) when not nil;
	// storeerr.ErrConflict when the marker or that key changed first.
	ReplaceRosterKey(ctx context.Context, prevKeyID string, revoke, k *apikey.Key) error
	// CreateUser stores a new user; storeerr.ErrExists when the userId is
	// taken (the roster then leaves that user as it is).
	CreateUser(ctx context.Context, u *user.User) error
}

// Keys are the keys a bulk update or revoke selects and changes.
type Keys interface {
	ListKeys(ctx context.Context) ([]*apikey.Key, error)
	GetKey(ctx context.Context, id string) (*apikey.Key, error)
	// UpdateKey writes only over k.Version (storeerr.ErrConflict otherwise).
	UpdateKey(ctx context.Context, k *apikey.Key) error
}

// Users are the users a bulk update selects and changes.
type Users interface {
	ListUsers(ctx context.Context) ([]*user.User, error)
	GetUser(ctx context.Context, userID string) (*user.User, error)
	// UpdateUser writes only over u.Version (storeerr.ErrConflict otherwise).
	UpdateUser(ctx context.Context, u *user.User) error
}

// Config wires a Handler; every field is required.
type Config struct {
	Enrolment Enrolment
	Keys      Keys
	Users     Users
	// Providers are read to check providerSettingIds and to price the
	// models their prices name.
	Providers form.ProviderReader
	// Rules are the key and user forms' rules (prices, vault).
	Rules form.Rules
	Log   *slog.Logger
	Now   func() time.Time
}

// Handler serves the bulk routes; each method answers one route and returns
// its error for package admin's one error writer. It is safe for concurrent
// use.
type Handler struct {
	cfg Config
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler { return &Handler{cfg: cfg} }

// withSettingPrices returns a copy of h for one request whose rules also
// accept the models provider settings price (form.Rules.WithSettingPrices).
func (h *Handler) withSettingPrices(ctx context.Context) *Handler {
	c := *h
	c.cfg.Rules = h.cfg.Rules.WithSettingPrices(ctx, h.cfg.Providers)
	return &c
}

// Tag marks every key (and new user) a roster creates.
const Tag = "roster"

const (
	// MaxBytes bounds a roster body (a 1000-row CSV is about 100 KB).
	MaxBytes = 2 << 20
	// MaxStudents bounds one roster call, so it ends well within the
	// admin function's 30 s timeout.
	MaxStudents = 1000
	// bulkConcurrency is how many students (or keys) are written at once.
	bulkConcurrency = 16
	// problemsInMessage is how many problems the error message quotes; the
	// "errors" list has all of them.
	problemsInMessage = 5

	StatusCreated        = "created"
	StatusExisting       = "existing"
	StatusRotated        = "rotated"
	StatusFailed         = "failed"
	StatusUpdated        = "updated"
	StatusSkipped        = "skipped"
	StatusRevoked        = "revoked"
	StatusAlreadyRevoked = "alreadyRevoked"

	RevokedRotated = "rotated"

	ruleEmail = "an email address like ada@example.edu"
)

// Fields a roster or bulk update may not set, and why.
var (
	rosterKeyRefused = map[string]string{
		"name":          "each key is named after its student",
		"userId":        "each key belongs to its student's user",
		"revoked":       "a roster creates keys; revoke them with POST /api/v1/secret-keys/bulk-revoke",
		"revokedReason": "a roster creates keys; revoke them with POST /api/v1/secret-keys/bulk-revoke",
		"suspended":     "a roster creates keys; lift a key's suspension with PATCH /api/v1/secret-keys/{keyId}",
	}
	rosterUserRefused = map[string]string{
		"userId":        "it is the student's userId",
		"name":          "it is the student's name",
		"revoked":       "a roster does not revoke users",
		"revokedReason": "a roster does not revoke users",
	}
	updateKeyRefused = map[string]string{
		"name":               "keys keep their own names; rename one with PATCH /api/v1/secret-keys/{keyId}",
		"userId":             "keys keep their users; move one with PATCH /api/v1/secret-keys/{keyId}",
		"keyRetrievalMethod": "it cannot be changed after a key is created",
		"revoked":            "use POST /api/v1/secret-keys/bulk-revoke",
		"revokedReason":      "use POST /api/v1/secret-keys/bulk-revoke",
		"suspended":          "lift a key's suspension with PATCH /api/v1/secret-keys/{keyId}",
	}
	updateUserRefused = rosterUserRefused
)
