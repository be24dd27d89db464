package admin

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
// "roster" (RosterTag), every new user too, and a student's email is kept in
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

import (
	"context"

	"github.com/stipend/stipend/shared/apikey"
)

// RosterStore is the storage of roster markers, each user's one roster key;
// *dynamo.Store implements it (shared/dynamo/bulk.go).
type RosterStore interface {
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
}

// RosterTag marks every key (and new user) a roster creates.
const RosterTag = "roster"

const (
	// maxRosterBytes bounds a roster body (a 1000-row CSV is about 100 KB).
	maxRosterBytes = 2 << 20
	// maxRosterStudents bounds one roster call, so it ends well within the
	// admin function's 30 s timeout.
	maxRosterStudents = 1000
	// bulkConcurrency is how many students (or keys) are written at once.
	bulkConcurrency = 16
	// problemsInMessage is how many problems the error message quotes; the
	// "errors" list has all of them.
	problemsInMessage = 5

	statusCreated        = "created"
	statusExisting       = "existing"
	statusRotated        = "rotated"
	statusFailed         = "failed"
	statusUpdated        = "updated"
	statusSkipped        = "skipped"
	statusRevoked        = "revoked"
	statusAlreadyRevoked = "alreadyRevoked"

	revokedRotated = "rotated"

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
