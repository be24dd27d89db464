package admin

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/reporting"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
)

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
	Metrics                *reporting.Metrics           `json:"metrics,omitempty"`

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
		return response.StoreError(err, "moderation strikes of secret key "+v.KeyID)
	}
	v.ModerationStrikes, v.FlaggedEventIDs = &st.Count, response.NonEmpty(st.EventIDs)
	return nil
}

func viewOf(k *apikey.Key) keyView {
	v := keyView{
		Name: k.Name, KeyID: k.ID, Tags: response.NonEmpty(k.Tags), CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
		Revoked: k.Revoked, RevokedReason: k.RevokedReason,
		CostLimitInUsd: k.CostLimitLifetime, CostLimitInUsdPerMonth: k.CostLimitPerMonth,
		CostLimitInUsdOverTime: k.CostLimitOverTime, CostLimitInUsdUnit: k.CostLimitUnit,
		RateLimitOverTime: k.RateLimitOverTime, RateLimitUnit: k.RateLimitUnit,
		TTL: k.TTL, ExpiresAt: k.ExpiresAt, SettingIDs: response.NonEmpty(k.SettingIDs),
		ShouldLogRequest: k.ShouldLogRequest, ShouldLogResponse: k.ShouldLogResponse, Moderation: k.Moderation,
		LowerMaxTokens: k.MayLowerMaxTokens(),
		AllowedModels:  response.NonEmpty(k.AllowedModels), AllowedPaths: response.NonEmpty(k.AllowedPaths),
		ModelLimits: k.ModelLimits, UserID: k.UserID, KeyRetrievalMethod: k.KeyRetrievalMethod,
		Metadata: k.Metadata, Aliases: k.Aliases, Archived: k.Archived, ArchivedAt: k.ArchivedAt,
		ModerationStrikeLimit: k.StrikeLimit(), Suspended: k.Suspended, SuspendedAt: k.SuspendedAt,
		SuspendedReason: k.SuspendedReason, SuspendedEventIDs: response.NonEmpty(k.SuspendedEventIDs),
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
		v.KeyRetrievalMethod = form.RetrieveOnce
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
	var req form.KeyRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	if err := form.ValidName("name", req.Name); err != nil {
		return err
	}
	if req.ProviderSettingIDs == nil {
		return invalid("providerSettingIds", "providerSettingIds is required and must be a non-empty list of provider setting ids")
	}
	if req.Suspended != nil {
		return invalid("suspended", "suspended cannot be set on a new key; a key is suspended by its moderation strikes")
	}
	method, err := h.rules.RetrievalMethod(&req)
	if err != nil {
		return err
	}

	settings, err := form.CheckSettings(r.Context(), h.providers, *req.ProviderSettingIDs)
	if err != nil {
		return err
	}
	if err := form.CheckUser(r.Context(), h.users, req.UserID); err != nil {
		return err
	}

	now := h.cfg.Now()
	id, plaintext := apikey.Generate()
	k := &apikey.Key{
		ID: id, Hash: apikey.Hash(plaintext), Tags: []string{},
		CreatedAt: now.Unix(), UpdatedAt: now.Unix(), KeyRetrievalMethod: method,
	}
	if err := h.rules.WithSettingPrices(r.Context(), h.providers).ApplyKey(&req, settings, k, now); err != nil {
		return err
	}
	if err := h.rules.Seal(r.Context(), k, plaintext); err != nil {
		return err
	}
	if err := h.keys.CreateKey(r.Context(), k); err != nil {
		return response.StoreError(err, "secret key "+k.ID)
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "secret key created", slog.String("key", k.ID))
	return response.JSON(w, http.StatusOK, createdKey{ID: k.ID, Key: plaintext, keyView: viewOf(k)})
}

func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("keyId")
	var req form.KeyRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	if req.Name != nil {
		if err := form.ValidName("name", req.Name); err != nil {
			return err
		}
	}
	var settings []string
	if req.ProviderSettingIDs != nil {
		var err error
		if settings, err = form.CheckSettings(r.Context(), h.providers, *req.ProviderSettingIDs); err != nil {
			return err
		}
	}
	if err := form.CheckUser(r.Context(), h.users, req.UserID); err != nil {
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
				return response.StoreError(err, "moderation strikes of secret key "+id)
			}
		}
	}
	k, err := response.Update(r.Context(), "secret key "+id,
		func(ctx context.Context) (*apikey.Key, error) { return h.keys.GetKey(ctx, id) },
		func(k *apikey.Key) error {
			if req.KeyRetrievalMethod != nil && *req.KeyRetrievalMethod != k.KeyRetrievalMethod &&
				!(*req.KeyRetrievalMethod == form.RetrieveOnce && k.KeyRetrievalMethod == "") {
				return invalid("keyRetrievalMethod", "keyRetrievalMethod cannot be changed after the key is created")
			}
			if k.Archived && req.Revoked != nil && !*req.Revoked {
				return invalid("revoked", "secret key %s is archived and cannot be reinstated; create a new key", id)
			}
			now := h.cfg.Now()
			if err := h.rules.WithSettingPrices(r.Context(), h.providers).ApplyKey(&req, settings, k, now); err != nil {
				return err
			}
			form.SetRevoked(req.Revoked, req.RevokedReason, &k.Revoked, &k.RevokedReason)
			if req.Suspended != nil && k.Suspended {
				k.Suspended, k.SuspendedAt, k.SuspendedReason, k.SuspendedEventIDs = false, 0, "", nil
			}
			k.UpdatedAt = now.Unix()
			return nil
		},
		h.keys.UpdateKey)
	if err != nil {
		return err
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "secret key updated",
		slog.String("key", k.ID), slog.Bool("revoked", k.Revoked), slog.Bool("suspended", k.Suspended))
	return response.JSON(w, http.StatusOK, viewOf(k))
}
