// Package litellm is the admin API's LiteLLM-compatible key management:
// POST /key/generate, GET /key/info and POST /user/new, with LiteLLM's
// snake_case fields and answers. Package admin wires the routes behind the
// admin bearer key (LiteLLM's "master key"); this package builds keys with
// the rules of package form and reaches the store through the small
// interfaces below.
//
// LiteLLM-compatible key management (LiteLLM's key management API):
// POST /key/generate, GET /key/info?key=, POST /user/new, with LiteLLM's
// snake_case fields and response shapes, behind the same admin bearer key
// (LiteLLM's "master key").
//
// Decisions where LiteLLM's documentation leaves room:
//   - duration: absent means one hour (the seed: "If null, default is set to
//     1 hour"); an explicit JSON null means the key never expires (the seed:
//     "Keys that don't expire: Just set duration to None"). A duration is a
//     positive integer and a unit: s, m, h, d (and their long forms, such as
//     "30min" in the seed, "2hours", "7days"; w for weeks).
//   - models becomes allowedModels ([] or null: every model); aliases maps a
//     requested model to the one that serves it (see shared/proxy/alias.go);
//     metadata is kept as is; key_alias names the key.
//   - max_budget is a lifetime spend limit in US dollars: the key's for
//     /key/generate, the user's (shared by all of the user's keys) for
//     /user/new. A max_budget of 0 means no spend at all, as in LiteLLM, not
//     "no limit" (stipend's convention for its own fields): it is stored as
//     the smallest limit there is, one nano-dollar, which no request fits.
//   - user_id on /key/generate names the key's user. An unknown user is
//     created implicitly, with no limits, named by its id (LiteLLM creates
//     user rows the same way). /user/new refuses an existing user_id (409):
//     re-running a class script never mints a second key per student;
//     further keys come from /key/generate with user_id.
//   - LiteLLM requests name no provider. The extension field
//     stipend_provider_setting_ids names them; without it the key names
//     none, and the proxy routes each of its requests by model among every
//     provider setting (those of any kind that serve the model, CONTRACT
//     §3), including settings created later. At least one must exist.
//   - /key/info's info.token is the key's id (LiteLLM shows a token there;
//     stipend stores no plaintext and never shows the hash); info.spend is
//     the key's lifetime spend (settled) in US dollars. The key itself is
//     checked against its stored hash before anything is shown, and the
//     query string, which carries it, is never logged.
//   - Times are ISO 8601 in UTC with microseconds and "+00:00", as
//     Python's datetime.isoformat() writes them; null means never.
package litellm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/admin/audit"
	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/storeerr"
	"github.com/stipend/stipend/shared/user"
)

// Rules of LiteLLM's fields ("<field> must be <rule>").
const (
	ruleLiteDuration = `a positive integer followed by a unit (s, m, h, d or w; "30s", "20m", "30min", "1h", "7d"), or null for a key that never expires`
	// liteDefaultDuration is the lifetime of a key whose request has no duration.
	liteDefaultDuration = "1h"
	// liteTimeLayout is Python's datetime.isoformat() for an aware UTC time.
	liteTimeLayout = "2006-01-02T15:04:05.000000+00:00"
	// ZeroBudget stands for a max_budget of 0: the smallest limit that can
	// be stored, under which no request fits.
	ZeroBudget = money.Nanos(1)
)

// liteKeyRequest is the body of POST /key/generate and POST /user/new.
type liteKeyRequest struct {
	Models             *[]string          `json:"models" rule:"a list of model names"`
	Duration           *string            `json:"duration" rule:"a positive integer followed by a unit (s, m, h, d or w; \"30s\", \"20m\", \"30min\", \"1h\", \"7d\"), or null for a key that never expires"`
	Metadata           *map[string]any    `json:"metadata" rule:"a JSON object"`
	Aliases            *map[string]string `json:"aliases" rule:"an object mapping requested model names to the model names that serve them"`
	MaxBudget          *money.Nanos       `json:"max_budget" rule:"a non-negative number of US dollars"`
	UserID             *string            `json:"user_id" rule:"1 to 128 letters, digits or . _ - @ +"`
	KeyAlias           *string            `json:"key_alias" rule:"a non-empty string"`
	ProviderSettingIDs *[]string          `json:"stipend_provider_setting_ids" rule:"a non-empty list of provider setting ids"`
}

// liteGenerated is the answer to POST /key/generate.
type liteGenerated struct {
	Key     string  `json:"key"`
	Expires *string `json:"expires"`
	KeyName string  `json:"key_name"`
	UserID  *string `json:"user_id"`
}

// liteNewUser is the answer to POST /user/new.
type liteNewUser struct {
	Key       string       `json:"key"`
	Expires   *string      `json:"expires"`
	UserID    string       `json:"user_id"`
	MaxBudget *money.Nanos `json:"max_budget"`
}

// liteInfo is the answer to GET /key/info.
type liteInfo struct {
	Key  string       `json:"key"`
	Info liteKeyState `json:"info"`
}

type liteKeyState struct {
	Token     string            `json:"token"`
	Spend     money.Nanos       `json:"spend"`
	Expires   *string           `json:"expires"`
	Models    []string          `json:"models"`
	Aliases   map[string]string `json:"aliases"`
	Config    map[string]any    `json:"config"`
	UserID    *string           `json:"user_id"`
	MaxBudget *money.Nanos      `json:"max_budget"`
	Metadata  map[string]any    `json:"metadata"`
	KeyName   string            `json:"key_name"`
}

// Keys stores and reads the keys the LiteLLM routes make and show.
type Keys interface {
	CreateKey(ctx context.Context, k *apikey.Key) error
	GetKey(ctx context.Context, id string) (*apikey.Key, error)
	// KeyTotals returns a key's lifetime counters (zero when it has none yet).
	KeyTotals(ctx context.Context, id string) (ledger.Totals, error)
}

// Users stores and reads the users the LiteLLM routes name.
type Users interface {
	GetUser(ctx context.Context, userID string) (*user.User, error)
	// CreateUser is storeerr.ErrExists when the userId is taken.
	CreateUser(ctx context.Context, u *user.User) error
}

// Config wires a Handler; every field is required.
type Config struct {
	Keys  Keys
	Users Users
	// Providers are read to check stipend_provider_setting_ids and to price
	// the models their prices name.
	Providers form.ProviderReader
	// Rules are the key forms' rules (prices).
	Rules form.Rules
	Log   *slog.Logger
	Now   func() time.Time
}

// Handler answers the LiteLLM routes; each method answers one route and
// returns its error for package admin's one error writer. It is safe for
// concurrent use.
type Handler struct {
	cfg Config
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler { return &Handler{cfg: cfg} }

// liteTime formats unix seconds as LiteLLM does; 0 (never) is nil.
func liteTime(unix int64) *string {
	if unix == 0 {
		return nil
	}
	s := time.Unix(unix, 0).UTC().Format(liteTimeLayout)
	return &s
}

// decodeLite reads a LiteLLM body into req and reports whether duration was
// given as an explicit null.
func decodeLite(w http.ResponseWriter, r *http.Request, req *liteKeyRequest) (durationNull bool, err error) {
	body, err := request.Read(w, r, request.MaxBodyBytes)
	if err != nil {
		return false, err
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) == nil {
		if d, ok := raw["duration"]; ok && string(bytes.TrimSpace(d)) == "null" {
			durationNull = true
		}
	}
	return durationNull, request.DecodeBytes(body, req)
}

// splitDuration splits a LiteLLM duration into its digits and its unit:
// what `^\s*(\d{1,9})\s*([A-Za-z]+)\s*$` matches, written out (a regexp's
// bounded repetition cost the admin's cold start about half a millisecond
// to compile at package init).
func splitDuration(s string) (digits, unit string, ok bool) {
	i := skipSpace(s, 0)
	j := i
	for j < len(s) && '0' <= s[j] && s[j] <= '9' {
		j++
	}
	if j == i || j-i > 9 {
		return "", "", false
	}
	k := skipSpace(s, j)
	l := k
	for l < len(s) && ('a' <= s[l] && s[l] <= 'z' || 'A' <= s[l] && s[l] <= 'Z') {
		l++
	}
	if l == k || skipSpace(s, l) != len(s) {
		return "", "", false
	}
	return s[i:j], s[k:l], true
}

// skipSpace returns the index of the first byte of s from i on that is not
// white space as a regexp's \s means it (tab, newline, form feed, carriage
// return, space).
func skipSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte("\t\n\f\r ", s[i]) >= 0 {
		i++
	}
	return i
}

// liteDuration turns a LiteLLM duration into stipend's ttl ("30min" ->
// "30m", "2w" -> "14d") and its length.
func liteDuration(s string) (string, time.Duration, error) {
	digits, u, ok := splitDuration(s)
	if !ok {
		return "", 0, request.MustBe("duration", ruleLiteDuration)
	}
	n, _ := strconv.ParseInt(digits, 10, 64)
	var unit string
	switch strings.ToLower(u) {
	case "s", "sec", "secs", "second", "seconds":
		unit = "s"
	case "m", "min", "mins", "minute", "minutes":
		unit = "m"
	case "h", "hr", "hrs", "hour", "hours":
		unit = "h"
	case "d", "day", "days":
		unit = "d"
	case "w", "wk", "wks", "week", "weeks":
		n, unit = n*7, "d"
	default:
		return "", 0, request.MustBe("duration", ruleLiteDuration)
	}
	ttl := strconv.FormatInt(n, 10) + unit
	d, err := apikey.ParseDuration(ttl)
	if err != nil {
		return "", 0, request.MustBe("duration", ruleLiteDuration)
	}
	return ttl, d, nil
}

// budgetOf turns a max_budget into a lifetime limit (see ZeroBudget).
func budgetOf(field string, b *money.Nanos) (money.Nanos, error) {
	switch {
	case b == nil:
		return 0, nil
	case *b < 0:
		return 0, request.MustBe(field, form.RuleDollars)
	case *b == 0:
		return ZeroBudget, nil
	}
	return *b, nil
}

// liteUserID returns the trimmed, checked user_id of req ("" when absent).
func liteUserID(req *liteKeyRequest) (string, error) {
	if req.UserID == nil {
		return "", nil
	}
	id := strings.TrimSpace(*req.UserID)
	if id != "" && !form.ValidUserID(id) {
		return "", request.MustBe("user_id", form.RuleUserID)
	}
	return id, nil
}

// liteSettings returns the provider settings of a LiteLLM key (see the
// decisions above).
func (h *Handler) liteSettings(r *http.Request, ids *[]string) ([]string, error) {
	const field = "stipend_provider_setting_ids"
	if ids != nil {
		if len(*ids) == 0 {
			return nil, request.MustBe(field, "a non-empty list of provider setting ids")
		}
		out := make([]string, 0, len(*ids))
		seen := map[string]bool{}
		for _, id := range *ids {
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			if _, err := h.cfg.Providers.GetProvider(r.Context(), id); err != nil {
				if storeerr.IsNotFound(err) {
					return nil, request.Invalid(field, "provider setting %q does not exist", id)
				}
				return nil, response.StoreError(err, "provider "+id)
			}
			out = append(out, id)
		}
		if len(out) == 0 {
			return nil, request.MustBe(field, "a non-empty list of provider setting ids")
		}
		return out, nil
	}
	list, err := h.cfg.Providers.ListProviders(r.Context())
	if err != nil {
		return nil, response.StoreError(err, "providers")
	}
	if len(list) == 0 {
		return nil, request.Invalid(field, "no provider setting exists yet: create one with POST /api/v1/providers first")
	}
	return []string{}, nil // none named: every setting, routed by model
}

// liteKey validates a LiteLLM request and returns the key it describes, not
// yet stored, with its plaintext. userID is the key's user (already
// checked); budget says whether max_budget is the key's.
func (h *Handler) liteKey(r *http.Request, req *liteKeyRequest, durationNull bool, userID string, budget bool) (*apikey.Key, string, error) {
	kr := form.KeyRequest{UserID: &userID, Metadata: req.Metadata, AllowedModels: req.Models}
	switch {
	case req.Duration != nil:
		ttl, _, err := liteDuration(*req.Duration)
		if err != nil {
			return nil, "", err
		}
		kr.TTL = &ttl
	case !durationNull:
		ttl := liteDefaultDuration
		kr.TTL = &ttl
	}
	name := "LiteLLM key"
	if userID != "" {
		name += " for " + userID
	}
	if req.KeyAlias != nil {
		name = *req.KeyAlias
	}
	if err := form.ValidName("key_alias", &name); err != nil {
		return nil, "", err
	}
	kr.Name = &name
	if req.Models != nil {
		models, err := form.ValidModels("models", req.Models)
		if err != nil {
			return nil, "", err
		}
		var aliases map[string]string
		if req.Aliases != nil {
			aliases = *req.Aliases
		}
		if err := h.cfg.Rules.WithSettingPrices(r.Context(), h.cfg.Providers).CheckPriced("models", models, aliases); err != nil {
			return nil, "", err
		}
	}
	if req.Metadata != nil {
		if err := form.CheckMetadata("metadata", *req.Metadata); err != nil {
			return nil, "", err
		}
	}
	kr.Aliases = req.Aliases
	if budget {
		limit, err := budgetOf("max_budget", req.MaxBudget)
		if err != nil {
			return nil, "", err
		}
		kr.CostLimitLifetime = &limit
	}
	settings, err := h.liteSettings(r, req.ProviderSettingIDs)
	if err != nil {
		return nil, "", err
	}
	now := h.cfg.Now()
	id, plaintext := apikey.Generate()
	k := &apikey.Key{
		ID: id, Hash: apikey.Hash(plaintext), Tags: []string{},
		CreatedAt: now.Unix(), UpdatedAt: now.Unix(), KeyRetrievalMethod: form.RetrieveOnce,
	}
	if err := h.cfg.Rules.WithSettingPrices(r.Context(), h.cfg.Providers).ApplyKey(&kr, settings, k, now); err != nil {
		return nil, "", err
	}
	return k, plaintext, nil
}

// storeLiteKey stores k and notes it for the audit trail.
func (h *Handler) storeLiteKey(r *http.Request, k *apikey.Key) error {
	if err := h.cfg.Keys.CreateKey(r.Context(), k); err != nil {
		return response.StoreError(err, "secret key "+k.ID)
	}
	audit.NoteTargets(r, k.ID, k.UserID)
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "secret key created", slog.String("key", k.ID), slog.String("via", "litellm"))
	return nil
}

// Generate answers POST /key/generate.
func (h *Handler) Generate(w http.ResponseWriter, r *http.Request) error {
	var req liteKeyRequest
	durationNull, err := decodeLite(w, r, &req)
	if err != nil {
		return err
	}
	userID, err := liteUserID(&req)
	if err != nil {
		return err
	}
	k, plaintext, err := h.liteKey(r, &req, durationNull, userID, true)
	if err != nil {
		return err
	}
	if userID != "" {
		if err := h.ensureUser(r, userID); err != nil {
			return err
		}
	}
	if err := h.storeLiteKey(r, k); err != nil {
		return err
	}
	out := liteGenerated{Key: plaintext, Expires: liteTime(k.ExpiresAt), KeyName: k.Name}
	if k.UserID != "" {
		out.UserID = &k.UserID
	}
	return response.JSON(w, http.StatusOK, out)
}

// ensureUser creates user userID, with no limits, unless it exists.
func (h *Handler) ensureUser(r *http.Request, userID string) error {
	_, err := h.cfg.Users.GetUser(r.Context(), userID)
	if err == nil || !storeerr.IsNotFound(err) {
		if err != nil {
			return response.StoreError(err, "user "+userID)
		}
		return nil
	}
	now := h.cfg.Now().Unix()
	u := &user.User{ID: apikey.NewID(), UserID: userID, Name: userID, Tags: []string{}, CreatedAt: now, UpdatedAt: now}
	if err := h.cfg.Users.CreateUser(r.Context(), u); err != nil && !errors.Is(err, storeerr.ErrExists) {
		return response.StoreError(err, "user "+userID)
	}
	audit.NoteTargets(r, userID)
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "user created", slog.String("user", u.ID), slog.String("via", "litellm"))
	return nil
}

// NewUser answers POST /user/new: a new user whose max_budget is shared
// by all of its keys, and a first key for it.
func (h *Handler) NewUser(w http.ResponseWriter, r *http.Request) error {
	var req liteKeyRequest
	durationNull, err := decodeLite(w, r, &req)
	if err != nil {
		return err
	}
	userID, err := liteUserID(&req)
	if err != nil {
		return err
	}
	if userID == "" {
		userID = apikey.NewID()
	}
	limit, err := budgetOf("max_budget", req.MaxBudget)
	if err != nil {
		return err
	}
	// Everything about the key is checked before the user is created.
	k, plaintext, err := h.liteKey(r, &req, durationNull, userID, false)
	if err != nil {
		return err
	}
	now := h.cfg.Now().Unix()
	u := &user.User{
		ID: apikey.NewID(), UserID: userID, Name: userID, Tags: []string{},
		CreatedAt: now, UpdatedAt: now, CostLimitLifetime: limit,
	}
	if err := h.cfg.Users.CreateUser(r.Context(), u); err != nil {
		if errors.Is(err, storeerr.ErrExists) {
			return apierror.New(http.StatusConflict, response.CodeConflict, fmt.Sprintf(
				"user %q already exists; create more keys for it with POST /key/generate and user_id", userID)).WithParam("user_id")
		}
		return response.StoreError(err, "user "+userID)
	}
	audit.NoteTargets(r, userID)
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "user created", slog.String("user", u.ID), slog.String("via", "litellm"))
	if err := h.storeLiteKey(r, k); err != nil {
		return err
	}
	out := liteNewUser{Key: plaintext, Expires: liteTime(k.ExpiresAt), UserID: userID}
	if req.MaxBudget != nil {
		b := *req.MaxBudget
		out.MaxBudget = &b
	}
	return response.JSON(w, http.StatusOK, out)
}

// errLiteKeyNotFound answers /key/info for a key that is malformed, unknown,
// or does not match its record: the three are not told apart.
var errLiteKeyNotFound = apierror.New(http.StatusNotFound, apierror.CodeNotFound, "key not found").WithParam("key")

// KeyInfo answers GET /key/info?key=<plaintext key>.
func (h *Handler) KeyInfo(w http.ResponseWriter, r *http.Request) error {
	plain := strings.TrimSpace(r.URL.Query().Get("key"))
	if plain == "" {
		return request.Invalid("key", "key is required: GET /key/info?key=<the key>")
	}
	id, err := apikey.Parse(plain)
	if err != nil {
		return errLiteKeyNotFound
	}
	k, err := h.cfg.Keys.GetKey(r.Context(), id)
	if err != nil {
		if storeerr.IsNotFound(err) {
			return errLiteKeyNotFound
		}
		return response.StoreError(err, "secret key "+id)
	}
	if !apikey.Matches(plain, k.Hash) {
		return errLiteKeyNotFound
	}
	tot, err := h.cfg.Keys.KeyTotals(r.Context(), k.ID)
	if err != nil {
		return response.StoreError(err, "spend of secret key "+k.ID)
	}
	st := liteKeyState{
		Token: k.ID, Spend: tot.Cost, Expires: liteTime(k.ExpiresAt),
		Models: response.NonEmpty(k.AllowedModels), Aliases: k.Aliases, Config: map[string]any{},
		Metadata: k.Metadata, KeyName: k.Name,
	}
	if st.Aliases == nil {
		st.Aliases = map[string]string{}
	}
	if st.Metadata == nil {
		st.Metadata = map[string]any{}
	}
	if k.UserID != "" {
		st.UserID = &k.UserID
	}
	if k.CostLimitLifetime > 0 {
		b := k.CostLimitLifetime
		if b == ZeroBudget {
			b = 0
		}
		st.MaxBudget = &b
	}
	return response.JSON(w, http.StatusOK, liteInfo{Key: plain, Info: st})
}
