// Package apikey defines stipend's proxy secret keys: their format, their
// hash, and the configuration (limits, allowlists, expiry) stored for each.
//
// A key looks like "sk-stp-<id>_<secret>": the id names the stored record (so a
// lookup is one read) and the 256-bit secret is never stored; only the SHA-256
// of the whole key is, and it is compared in constant time.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/money"
)

// Prefix starts every stipend proxy key.
const Prefix = "sk-stp-"

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrMalformed reports a string that is not a stipend key.
var ErrMalformed = errors.New("malformed stipend key")

// NewID returns a random 26-character identifier (128 bits), usable for keys,
// providers and events.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return enc.EncodeToString(b[:])
}

// Generate returns a new key id and the plaintext key that embeds it.
func Generate() (id, key string) {
	id = NewID()
	var s [32]byte
	_, _ = rand.Read(s[:])
	return id, Prefix + id + "_" + enc.EncodeToString(s[:])
}

// Parse returns the key id embedded in key.
func Parse(key string) (id string, err error) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return "", ErrMalformed
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 26 || len(secret) != 52 || !isBase32(id) || !isBase32(secret) {
		return "", ErrMalformed
	}
	return id, nil
}

func isBase32(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// Hash returns the hex SHA-256 of key, the only form in which keys are stored.
func Hash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Matches reports in constant time whether key hashes to hash.
func Matches(key, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(Hash(key)), []byte(hash)) == 1
}

// PathRule allows one path with one HTTP method ("" or "*" means any method).
type PathRule struct {
	Path   string `json:"path"`
	Method string `json:"method"`
}

// ModelLimit caps requests and tokens per minute for one model.
type ModelLimit struct {
	RPM int64 `json:"rpm,omitempty"`
	TPM int64 `json:"tpm,omitempty"`
}

// Key is the stored configuration of one proxy key. Zero limits mean "no limit".
type Key struct {
	ID                 string                `json:"keyId"`
	Name               string                `json:"name"`
	Hash               string                `json:"-"`
	Tags               []string              `json:"tags"`
	SettingIDs         []string              `json:"settingIds"`
	CreatedAt          int64                 `json:"createdAt"`
	UpdatedAt          int64                 `json:"updatedAt"`
	Revoked            bool                  `json:"revoked"`
	RevokedReason      string                `json:"revokedReason"`
	TTL                string                `json:"ttl"`
	ExpiresAt          int64                 `json:"expiresAt,omitempty"` // unix seconds; 0 = never
	CostLimitLifetime  money.Nanos           `json:"costLimitInUsd"`
	CostLimitPerMonth  money.Nanos           `json:"costLimitInUsdPerMonth"`
	CostLimitOverTime  money.Nanos           `json:"costLimitInUsdOverTime"`
	CostLimitUnit      string                `json:"costLimitInUsdUnit"`
	RateLimitOverTime  int64                 `json:"rateLimitOverTime"`
	RateLimitUnit      string                `json:"rateLimitUnit"`
	AllowedModels      []string              `json:"allowedModels"`
	AllowedPaths       []PathRule            `json:"allowedPaths"`
	ModelLimits        map[string]ModelLimit `json:"modelLimits"`
	Aliases            map[string]string     `json:"aliases,omitempty"`
	UserID             string                `json:"userId,omitempty"`
	ShouldLogRequest   bool                  `json:"shouldLogRequest"`
	ShouldLogResponse  bool                  `json:"shouldLogResponse"`
	Moderation         bool                  `json:"moderation"`
	KeyRetrievalMethod string                `json:"keyRetrievalMethod"`
	Metadata           map[string]any        `json:"metadata,omitempty"`
	// LowerMaxTokens (default true) lets stipend lower a request's output cap
	// to what the remaining budget can pay for, instead of refusing it.
	LowerMaxTokens *bool `json:"lowerMaxTokens,omitempty"`
	// Archived keys are revoked and left out of key lists unless asked for;
	// their events and spend stay reportable. ArchivedAt is unix seconds.
	Archived   bool  `json:"archived,omitempty"`
	ArchivedAt int64 `json:"archivedAt,omitempty"`
	// Sealed is the plaintext key encrypted by package keyvault, kept only
	// for ANYTIME_BY_VIEWER keys so the admin can read it back. It is stored,
	// never shown in admin views.
	Sealed  string `json:"sealed,omitempty"`
	Version int64  `json:"-"` // bumped on every change

	// ModerationStrikeLimit is how many flagged requests suspend a key with
	// Moderation on (0: DefaultStrikeLimit); see StrikeLimit.
	ModerationStrikeLimit int64 `json:"moderationStrikeLimit,omitempty"`
	// Suspended keys are refused (401 key_suspended) until an admin lifts
	// the suspension. A key is suspended when its flagged requests reach its
	// strike limit; SuspendedEventIDs are those requests' events.
	Suspended         bool     `json:"suspended,omitempty"`
	SuspendedAt       int64    `json:"suspendedAt,omitempty"` // unix seconds
	SuspendedReason   string   `json:"suspendedReason,omitempty"`
	SuspendedEventIDs []string `json:"suspendedEventIds,omitempty"`
}

// DefaultStrikeLimit is how many flagged requests suspend a key with
// moderation on when its ModerationStrikeLimit is not set.
const DefaultStrikeLimit = 3

// StrikeLimit is how many flagged requests suspend k.
func (k *Key) StrikeLimit() int64 {
	if k.ModerationStrikeLimit > 0 {
		return k.ModerationStrikeLimit
	}
	return DefaultStrikeLimit
}

// Strikes are a key's flagged requests since its strikes were last reset
// (when an admin lifted its suspension): how many, and their event ids.
type Strikes struct {
	Count    int64
	EventIDs []string
}

// Expired reports whether k has expired at now.
func (k *Key) Expired(now time.Time) bool {
	return k.ExpiresAt > 0 && now.Unix() >= k.ExpiresAt
}

// MayLowerMaxTokens reports whether stipend may lower a request's output cap
// to fit the remaining budget (the default).
func (k *Key) MayLowerMaxTokens() bool { return k.LowerMaxTokens == nil || *k.LowerMaxTokens }

// AllowsModel reports whether model may be used with k; an empty list allows all.
func (k *Key) AllowsModel(model string) bool {
	if len(k.AllowedModels) == 0 {
		return true
	}
	for _, m := range k.AllowedModels {
		if m == model {
			return true
		}
	}
	return false
}

// AllowsPath reports whether method and path may be used with k; an empty
// list allows all.
func (k *Key) AllowsPath(method, path string) bool {
	if len(k.AllowedPaths) == 0 {
		return true
	}
	for _, p := range k.AllowedPaths {
		if p.Path == path && (p.Method == "" || p.Method == "*" || strings.EqualFold(p.Method, method)) {
			return true
		}
	}
	return false
}

// ParseDuration reads a positive duration written as an integer followed by
// s, m, h or d ("30s", "20m", "720h", "7d").
func ParseDuration(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, errors.New("duration must be a positive integer followed by s, m, h or d")
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[s[len(s)-1]]
	n := int64(0)
	for _, c := range s[:len(s)-1] {
		if c < '0' || c > '9' || n > 1e9 {
			unit = 0
			break
		}
		n = n*10 + int64(c-'0')
	}
	// The product must fit a time.Duration (about 292 years).
	if unit == 0 || n <= 0 || n > int64(math.MaxInt64/unit) {
		return 0, errors.New("duration must be a positive integer followed by s, m, h or d")
	}
	return time.Duration(n) * unit, nil
}
