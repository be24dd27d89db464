package admin

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/storeerr"
)

// Key retrieval methods (BricksAI's keyRetrievalMethod).
const (
	RetrieveOnce            = "ONCE"
	RetrieveOncePerViewer   = "ONCE_PER_VIEWER"
	RetrieveAnytimeByViewer = "ANYTIME_BY_VIEWER"
)

// Rules shared by validation messages ("<field> must be <rule>").
const (
	ruleDollars     = "a non-negative number of US dollars"
	ruleCount       = "a non-negative integer"
	ruleRateUnit    = "one of s, m, h, d"
	ruleCostUnit    = "one of m, h, d, mo"
	ruleTTL         = "a positive integer followed by s, m, h or d, like 1h"
	rulePaths       = "a list of {path, method} objects whose path starts with /v1/"
	ruleModelLimits = "an object mapping model names to {rpm, tpm} non-negative integers"
)

// keyRequest is the body of POST and PATCH /api/v1/secret-keys. Every field is
// a pointer: nil means "absent", so an update changes only what it names.
type keyRequest struct {
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

// keyView is a key as the API shows it (the seed's shape plus stipend's
// fields). It never carries the key's hash or plaintext.
type keyView struct {
	Name                   string                       `json:"name"`
	KeyID                  string                       `json:"keyId"`
	Tags                   []string                     `json:"tags"`
	CreatedAt              int64                        `json:"createdAt"`
	UpdatedAt              int64                        `json:"updatedAt"`
	Revoked                bool                         `json:"revoked"`
	RevokedReason          string                       `json:"revokedReason"`
	CostLimitInUsd         money.Nanos                  `json:"costLimitInUsd"` // lifetime
	CostLimitInUsdPerMonth money.Nanos                  `json:"costLimitInUsdPerMonth"`
	CostLimitInUsdOverTime money.Nanos                  `json:"costLimitInUsdOverTime"`
	CostLimitInUsdUnit     string                       `json:"costLimitInUsdUnit"`
	RateLimitOverTime      int64                        `json:"rateLimitOverTime"`
	RateLimitUnit          string                       `json:"rateLimitUnit"`
	TTL                    string                       `json:"ttl"`
	ExpiresAt              int64                        `json:"expiresAt"` // 0: never
	SettingIDs             []string                     `json:"settingIds"`
	ShouldLogRequest       bool                         `json:"shouldLogRequest"`
	ShouldLogResponse      bool                         `json:"shouldLogResponse"`
	Moderation             bool                         `json:"moderation"`
	LowerMaxTokens         bool                         `json:"lowerMaxTokens"`
	AllowedModels          []string                     `json:"allowedModels"`
	AllowedPaths           []apikey.PathRule            `json:"allowedPaths"`
	ModelLimits            map[string]apikey.ModelLimit `json:"modelLimits"`
	UserID                 string                       `json:"userId"`
	KeyRetrievalMethod     string                       `json:"keyRetrievalMethod"`
	Metadata               map[string]any               `json:"metadata"`
	Aliases                map[string]string            `json:"aliases"`
	Archived               bool                         `json:"archived"`
	ArchivedAt             int64                        `json:"archivedAt"` // 0: not archived
	Metrics                *Metrics                     `json:"metrics,omitempty"`

	// Moderation strikes and suspension: the limit in force, whether the
	// key is suspended, since when (0: not), why, and the flagged events
	// that led to it. GET /api/v1/secret-keys/{keyId} adds the strikes
	// counted since the last lift and their events.
	ModerationStrikeLimit int64    `json:"moderationStrikeLimit"`
	Suspended             bool     `json:"suspended"`
	SuspendedAt           int64    `json:"suspendedAt"`
	SuspendedReason       string   `json:"suspendedReason"`
	SuspendedEventIDs     []string `json:"suspendedEventIds"`
	ModerationStrikes     *int64   `json:"moderationStrikes,omitempty"`
	FlaggedEventIDs       []string `json:"flaggedEventIds,omitempty"`
}

// strikeStore is the part of the store that counts moderation strikes;
// *dynamo.Store has it (test fakes may not).
type strikeStore interface {
	Strikes(ctx context.Context, keyID string) (apikey.Strikes, error)
	ResetStrikes(ctx context.Context, keyID string) error
}

// withStrikes adds the key's current moderation strikes to v.
func (h *Handler) withStrikes(ctx context.Context, v *keyView) error {
	ss, ok := h.cfg.Store.(strikeStore)
	if !ok {
		return nil
	}
	st, err := ss.Strikes(ctx, v.KeyID)
	if err != nil {
		return storeError(err, "moderation strikes of secret key "+v.KeyID)
	}
	v.ModerationStrikes, v.FlaggedEventIDs = &st.Count, nonEmpty(st.EventIDs)
	return nil
}

func viewOf(k *apikey.Key) keyView {
	v := keyView{
		Name: k.Name, KeyID: k.ID, Tags: nonEmpty(k.Tags), CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
		Revoked: k.Revoked, RevokedReason: k.RevokedReason,
		CostLimitInUsd: k.CostLimitLifetime, CostLimitInUsdPerMonth: k.CostLimitPerMonth,
		CostLimitInUsdOverTime: k.CostLimitOverTime, CostLimitInUsdUnit: k.CostLimitUnit,
		RateLimitOverTime: k.RateLimitOverTime, RateLimitUnit: k.RateLimitUnit,
		TTL: k.TTL, ExpiresAt: k.ExpiresAt, SettingIDs: nonEmpty(k.SettingIDs),
		ShouldLogRequest: k.ShouldLogRequest, ShouldLogResponse: k.ShouldLogResponse, Moderation: k.Moderation,
		LowerMaxTokens: k.MayLowerMaxTokens(),
		AllowedModels:  nonEmpty(k.AllowedModels), AllowedPaths: nonEmpty(k.AllowedPaths),
		ModelLimits: k.ModelLimits, UserID: k.UserID, KeyRetrievalMethod: k.KeyRetrievalMethod,
		Metadata: k.Metadata, Aliases: k.Aliases, Archived: k.Archived, ArchivedAt: k.ArchivedAt,
		ModerationStrikeLimit: k.StrikeLimit(), Suspended: k.Suspended, SuspendedAt: k.SuspendedAt,
		SuspendedReason: k.SuspendedReason, SuspendedEventIDs: nonEmpty(k.SuspendedEventIDs),
	}
	if v.Aliases == nil {
		v.Aliases = map[string]string{}
	}
	if k.CostLimitOverTime == 0 && k.CostLimitPerMonth > 0 {
		// BricksAI shows a monthly limit as the over-time pair in months;
		// scripts written against it read it there. Enforcement treats the
		// two as one monthly counter either way (budget.Plan).
		v.CostLimitInUsdOverTime, v.CostLimitInUsdUnit = k.CostLimitPerMonth, "mo"
	}
	if v.ModelLimits == nil {
		v.ModelLimits = map[string]apikey.ModelLimit{}
	}
	if v.Metadata == nil {
		v.Metadata = map[string]any{}
	}
	if v.KeyRetrievalMethod == "" {
		v.KeyRetrievalMethod = RetrieveOnce
	}
	return v
}

// createdKey is the answer to POST /api/v1/secret-keys: the seed's id, name,
// organizationId and key (the plaintext, shown this once), then the key's view.
type createdKey struct {
	ID             string `json:"id"`
	OrganizationID string `json:"organizationId"`
	Key            string `json:"key"`
	keyView
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request) error {
	var req keyRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	if err := validName("name", req.Name); err != nil {
		return err
	}
	if req.ProviderSettingIDs == nil {
		return invalid("providerSettingIds", "providerSettingIds is required and must be a non-empty list of provider setting ids")
	}
	if req.Suspended != nil {
		return invalid("suspended", "suspended cannot be set on a new key; a key is suspended by its moderation strikes")
	}
	method, err := h.retrievalMethodSealed(&req)
	if err != nil {
		return err
	}

	settings, err := h.validSettings(r, *req.ProviderSettingIDs)
	if err != nil {
		return err
	}
	if err := h.validUser(r, req.UserID); err != nil {
		return err
	}

	now := h.cfg.Now()
	id, plaintext := apikey.Generate()
	k := &apikey.Key{
		ID: id, Hash: apikey.Hash(plaintext), Tags: []string{},
		CreatedAt: now.Unix(), UpdatedAt: now.Unix(), KeyRetrievalMethod: method,
	}
	if err := h.withSettingPrices(r.Context()).apply(&req, settings, k, now); err != nil {
		return err
	}
	if err := h.sealKey(r, k, plaintext); err != nil {
		return err
	}
	if err := h.cfg.Store.CreateKey(r.Context(), k); err != nil {
		return storeError(err, "secret key "+k.ID)
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "secret key created", slog.String("key", k.ID))
	return writeJSON(w, http.StatusOK, createdKey{ID: k.ID, Key: plaintext, keyView: viewOf(k)})
}

// retrievalMethod returns the keyRetrievalMethod a new key gets from req
// (ONCE when absent), or the 400 for one stipend does not support.
func retrievalMethod(req *keyRequest) (string, error) {
	method := RetrieveOnce
	if req.KeyRetrievalMethod != nil && *req.KeyRetrievalMethod != "" {
		method = *req.KeyRetrievalMethod
	}
	switch method {
	case RetrieveOnce, RetrieveOncePerViewer:
		return method, nil
	case RetrieveAnytimeByViewer:
		// ANYTIME_BY_VIEWER needs the plaintext kept, sealed (sealKey in
		// lifecycle.go). POST /api/v1/secret-keys does that and accepts it
		// through Handler.retrievalMethodSealed; routes that do not seal
		// refuse it rather than silently downgrade it.
		return "", invalid("keyRetrievalMethod", "keyRetrievalMethod ANYTIME_BY_VIEWER is not supported yet; use ONCE or ONCE_PER_VIEWER")
	default:
		return "", mustBe("keyRetrievalMethod", "ONCE or ONCE_PER_VIEWER")
	}
}

func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("keyId")
	var req keyRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	if req.Name != nil {
		if err := validName("name", req.Name); err != nil {
			return err
		}
	}
	var settings []string
	if req.ProviderSettingIDs != nil {
		var err error
		if settings, err = h.validSettings(r, *req.ProviderSettingIDs); err != nil {
			return err
		}
	}
	if err := h.validUser(r, req.UserID); err != nil {
		return err
	}
	if req.Suspended != nil {
		if *req.Suspended {
			return invalid("suspended", "suspended can only be set to false, which lifts a suspension; to stop a key, revoke it")
		}
		// Strikes first: a request flagged before the lift lands counts
		// against the suspension being lifted, not the fresh start.
		if ss, ok := h.cfg.Store.(strikeStore); ok {
			if err := ss.ResetStrikes(r.Context(), id); err != nil {
				return storeError(err, "moderation strikes of secret key "+id)
			}
		}
	}
	k, err := update(r.Context(), "secret key "+id,
		func(ctx context.Context) (*apikey.Key, error) { return h.cfg.Store.GetKey(ctx, id) },
		func(k *apikey.Key) error {
			if req.KeyRetrievalMethod != nil && *req.KeyRetrievalMethod != k.KeyRetrievalMethod &&
				!(*req.KeyRetrievalMethod == RetrieveOnce && k.KeyRetrievalMethod == "") {
				return invalid("keyRetrievalMethod", "keyRetrievalMethod cannot be changed after the key is created")
			}
			if k.Archived && req.Revoked != nil && !*req.Revoked {
				return invalid("revoked", "secret key %s is archived and cannot be reinstated; create a new key", id)
			}
			now := h.cfg.Now()
			if err := h.withSettingPrices(r.Context()).apply(&req, settings, k, now); err != nil {
				return err
			}
			setRevoked(req.Revoked, req.RevokedReason, &k.Revoked, &k.RevokedReason)
			if req.Suspended != nil && k.Suspended {
				k.Suspended, k.SuspendedAt, k.SuspendedReason, k.SuspendedEventIDs = false, 0, "", nil
			}
			k.UpdatedAt = now.Unix()
			return nil
		},
		h.cfg.Store.UpdateKey)
	if err != nil {
		return err
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "secret key updated",
		slog.String("key", k.ID), slog.Bool("revoked", k.Revoked), slog.Bool("suspended", k.Suspended))
	return writeJSON(w, http.StatusOK, viewOf(k))
}

// apply validates the fields present in req and writes them to k. It is
// shared by create (k fresh) and update (k as stored). settings are
// req.ProviderSettingIDs already checked by validSettings (nil when absent);
// now sets expiresAt when a ttl is given.
func (h *Handler) apply(req *keyRequest, settings []string, k *apikey.Key, now time.Time) error {
	if req.Name != nil {
		k.Name = strings.TrimSpace(*req.Name)
	}
	if settings != nil {
		k.SettingIDs = settings
	}
	for _, err := range []error{
		setTTL(req.TTL, ruleTTL, false, now, &k.TTL, &k.ExpiresAt),
		setRate(req.RateLimitOverTime, req.RateLimitUnit, &k.RateLimitOverTime, &k.RateLimitUnit),
		setDollars("costLimitInUsdPerMonth", req.CostLimitPerMonth, &k.CostLimitPerMonth),
		setDollars("costLimitInUsdLifetime", req.CostLimitLifetime, &k.CostLimitLifetime),
		setDollars("costLimitInUsdOverTime", req.CostLimitOverTime, &k.CostLimitOverTime),
		setCostUnit(req.CostLimitUnit, &k.CostLimitUnit),
	} {
		if err != nil {
			return err
		}
	}
	if req.AllowedModels != nil {
		models, err := validModels("allowedModels", req.AllowedModels)
		if err != nil {
			return err
		}
		k.AllowedModels = models
	}
	if req.AllowedPaths != nil {
		paths, err := validPaths(*req.AllowedPaths)
		if err != nil {
			return err
		}
		k.AllowedPaths = paths
	}
	if req.ModelLimits != nil {
		for model, l := range *req.ModelLimits {
			if strings.TrimSpace(model) == "" || l.RPM < 0 || l.TPM < 0 {
				return mustBe("modelLimits", ruleModelLimits)
			}
		}
		k.ModelLimits = *req.ModelLimits
	}
	if req.UserID != nil {
		k.UserID = strings.TrimSpace(*req.UserID)
	}
	if req.ShouldLogRequest != nil {
		k.ShouldLogRequest = *req.ShouldLogRequest
	}
	if req.ShouldLogResponse != nil {
		k.ShouldLogResponse = *req.ShouldLogResponse
	}
	if req.Moderation != nil {
		k.Moderation = *req.Moderation
	}
	if req.ModerationStrikeLimit != nil {
		if *req.ModerationStrikeLimit < 1 {
			return mustBe("moderationStrikeLimit", "a positive integer")
		}
		k.ModerationStrikeLimit = int64(*req.ModerationStrikeLimit)
	}
	if req.LowerMaxTokens != nil {
		v := *req.LowerMaxTokens
		k.LowerMaxTokens = &v
	}
	if req.Tags != nil {
		k.Tags = nonEmpty(*req.Tags)
	}
	if req.Metadata != nil {
		if err := checkMetadata("metadata", *req.Metadata); err != nil {
			return err
		}
		k.Metadata = *req.Metadata
	}
	if req.Aliases != nil {
		aliases, err := validAliases("aliases", *req.Aliases)
		if err != nil {
			return err
		}
		k.Aliases = aliases
	}
	if req.AllowedModels != nil || req.Aliases != nil {
		if err := h.checkPriced("allowedModels", k.AllowedModels, k.Aliases); err != nil {
			return err
		}
	}
	// Rules across fields, checked on the result so an update that sets only
	// one of a pair is judged with the other as stored.
	if k.RateLimitOverTime > 0 && k.RateLimitUnit == "" {
		return invalid("rateLimitUnit", "rateLimitUnit is required when rateLimitOverTime is greater than 0; it must be %s", ruleRateUnit)
	}
	if k.CostLimitOverTime > 0 && k.CostLimitUnit == "" {
		return invalid("costLimitInUsdUnit", "costLimitInUsdUnit is required when costLimitInUsdOverTime is greater than 0; it must be %s", ruleCostUnit)
	}
	return nil
}

// validSettings checks that ids is a non-empty list of existing provider
// settings and returns it without duplicates.
func (h *Handler) validSettings(r *http.Request, ids []string) ([]string, error) {
	const field = "providerSettingIds"
	if len(ids) == 0 {
		return nil, invalid(field, "providerSettingIds is required and must be a non-empty list of provider setting ids")
	}
	out := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" {
			return nil, invalid(field, "providerSettingIds must not contain an empty id")
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, err := h.cfg.Store.GetProvider(r.Context(), id); err != nil {
			if storeerr.IsNotFound(err) {
				return nil, invalid(field, "provider setting %q does not exist", id)
			}
			return nil, storeError(err, "provider "+id)
		}
		out = append(out, id)
	}
	return out, nil
}

// httpMethods are the methods an allowedPaths rule may name ("" and "*" mean any).
var httpMethods = map[string]bool{
	"": true, "*": true, "GET": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "HEAD": true, "OPTIONS": true,
}

func validPaths(rules []apikey.PathRule) ([]apikey.PathRule, error) {
	out := make([]apikey.PathRule, 0, len(rules))
	for _, p := range rules {
		p.Method = strings.ToUpper(strings.TrimSpace(p.Method))
		if !strings.HasPrefix(p.Path, "/v1/") || strings.ContainsAny(p.Path, "?# \t\r\n") {
			return nil, invalid("allowedPaths", "allowedPaths must be %s; %q is not", rulePaths, p.Path)
		}
		if !httpMethods[p.Method] {
			return nil, invalid("allowedPaths", "allowedPaths method %q is not an HTTP method", p.Method)
		}
		out = append(out, p)
	}
	return out, nil
}
