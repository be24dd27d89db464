package admin

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/user"
)

// userView is a user as the API shows it: the seed's shape plus expiresAt.
type userView struct {
	ID                     string      `json:"id"`
	UserID                 string      `json:"userId"`
	Name                   string      `json:"name"`
	CreatedAt              int64       `json:"createdAt"`
	UpdatedAt              int64       `json:"updatedAt"`
	Tags                   []string    `json:"tags"`
	Revoked                bool        `json:"revoked"`
	RevokedReason          string      `json:"revokedReason"`
	CostLimitInUsd         money.Nanos `json:"costLimitInUsd"` // lifetime
	CostLimitInUsdOverTime money.Nanos `json:"costLimitInUsdOverTime"`
	CostLimitInUsdUnit     string      `json:"costLimitInUsdUnit"`
	RateLimitOverTime      int64       `json:"rateLimitOverTime"`
	RateLimitUnit          string      `json:"rateLimitUnit"`
	TTL                    string      `json:"ttl"`
	ExpiresAt              int64       `json:"expiresAt"` // 0: never
}

func userViewOf(u *user.User) userView {
	return userView{
		ID: u.ID, UserID: u.UserID, Name: u.Name, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		Tags: response.NonEmpty(u.Tags), Revoked: u.Revoked, RevokedReason: u.RevokedReason,
		CostLimitInUsd: u.CostLimitLifetime, CostLimitInUsdOverTime: u.CostLimitOverTime, CostLimitInUsdUnit: u.CostLimitUnit,
		RateLimitOverTime: u.RateLimitOverTime, RateLimitUnit: u.RateLimitUnit, TTL: u.TTL, ExpiresAt: u.ExpiresAt,
	}
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	list, err := h.users.ListUsers(r.Context())
	if err != nil {
		return response.StoreError(err, "users")
	}
	out := make([]userView, 0, len(list))
	for _, u := range list {
		out = append(out, userViewOf(u))
	}
	return response.JSON(w, http.StatusOK, out)
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("userId")
	u, err := h.users.GetUser(r.Context(), id)
	if err != nil {
		return response.StoreError(err, "user "+id)
	}
	return response.JSON(w, http.StatusOK, userViewOf(u))
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) error {
	var req form.UserRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	// userId is optional: absent or "" gets a random one.
	userID := ""
	if req.UserID != nil {
		userID = strings.TrimSpace(*req.UserID)
		if userID != "" && !form.ValidUserID(userID) {
			return mustBe("userId", form.RuleUserID)
		}
	}
	if userID == "" {
		userID = apikey.NewID()
	}
	if err := form.ValidName("name", req.Name); err != nil {
		return err
	}
	if req.TTL == nil {
		return invalid("ttl", "ttl is required and must be %s", form.RuleUserTTL)
	}
	now := h.cfg.Now()
	u := &user.User{ID: apikey.NewID(), UserID: userID, Tags: []string{}, CreatedAt: now.Unix(), UpdatedAt: now.Unix()}
	if err := form.ApplyUser(&req, u, now); err != nil {
		return err
	}
	if err := h.users.CreateUser(r.Context(), u); err != nil {
		return response.StoreError(err, "user "+userID)
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "user created", slog.String("user", u.ID))
	return response.JSON(w, http.StatusOK, userViewOf(u))
}

func (h *Handler) updateUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("userId")
	var req form.UserRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	if req.UserID != nil && strings.TrimSpace(*req.UserID) != id {
		return invalid("userId", "userId cannot be changed; it is %q", id)
	}
	if req.Name != nil {
		if err := form.ValidName("name", req.Name); err != nil {
			return err
		}
	}
	u, err := response.Update(r.Context(), "user "+id,
		func(ctx context.Context) (*user.User, error) { return h.users.GetUser(ctx, id) },
		func(u *user.User) error {
			now := h.cfg.Now()
			if err := form.ApplyUser(&req, u, now); err != nil {
				return err
			}
			form.SetRevoked(req.Revoked, req.RevokedReason, &u.Revoked, &u.RevokedReason)
			u.UpdatedAt = now.Unix()
			return nil
		},
		h.users.UpdateUser)
	if err != nil {
		return err
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "user updated",
		slog.String("user", u.ID), slog.Bool("revoked", u.Revoked))
	return h.writeUser(w, r, u)
}

// ---- organisation ----

// orgRequest is the body of PATCH /api/v1/organization.
type orgRequest struct {
	CostLimitLifetime *money.Nanos `json:"costLimitInUsd" rule:"a non-negative number of US dollars"`
	CostLimitPerMonth *money.Nanos `json:"costLimitInUsdPerMonth" rule:"a non-negative number of US dollars"`
}

// getOrg answers GET /api/v1/organization with the organisation-wide limits
// (user.Org's JSON: costLimitInUsd, costLimitInUsdPerMonth, updatedAt).
func (h *Handler) getOrg(w http.ResponseWriter, r *http.Request) error {
	o, err := h.users.GetOrg(r.Context())
	if err != nil {
		return response.StoreError(err, "organization")
	}
	return response.JSON(w, http.StatusOK, o)
}

// updateOrg sets the fields present; 0 removes a limit. A body naming
// neither changes nothing.
func (h *Handler) updateOrg(w http.ResponseWriter, r *http.Request) error {
	var req orgRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	for _, c := range []struct {
		field string
		v     *money.Nanos
	}{{"costLimitInUsd", req.CostLimitLifetime}, {"costLimitInUsdPerMonth", req.CostLimitPerMonth}} {
		if c.v != nil && *c.v < 0 {
			return mustBe(c.field, form.RuleDollars)
		}
	}
	if req.CostLimitLifetime == nil && req.CostLimitPerMonth == nil {
		o, err := h.users.GetOrg(r.Context())
		if err != nil {
			return response.StoreError(err, "organization")
		}
		return h.writeOrg(w, r, o)
	}
	o, err := response.Update(r.Context(), "organization", h.users.GetOrg,
		func(o *user.Org) error {
			if req.CostLimitLifetime != nil {
				o.CostLimitLifetime = *req.CostLimitLifetime
			}
			if req.CostLimitPerMonth != nil {
				o.CostLimitPerMonth = *req.CostLimitPerMonth
			}
			o.UpdatedAt = h.cfg.Now().Unix()
			return nil
		},
		h.users.PutOrg)
	if err != nil {
		return err
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "organization limits updated",
		slog.String("costLimitInUsd", o.CostLimitLifetime.String()),
		slog.String("costLimitInUsdPerMonth", o.CostLimitPerMonth.String()))
	return h.writeOrg(w, r, o)
}

// SpendReader reads what a user or the organisation has spent (users.go);
// reporting.Statements has it too.
type SpendReader interface {
	// OwnerTotals returns the settled figures of one of an owner's counters.
	OwnerTotals(ctx context.Context, owner, counter string) (ledger.Totals, error)
}

// spent is what an owner (a user, the organisation) has spent, settled:
// counted always, limits or not, so a limit set now is checked against it.
type spent struct {
	SpendInUsd          money.Nanos `json:"spendInUsd"`          // lifetime
	SpendThisMonthInUsd money.Nanos `json:"spendThisMonthInUsd"` // calendar month (UTC)
}

// spendOf reads what owner ("USER#<id>", "ORG") has spent.
func (h *Handler) spendOf(ctx context.Context, owner string) (spent, error) {
	life, err := h.spend.OwnerTotals(ctx, owner, budget.LifetimeCounter)
	if err != nil {
		return spent{}, response.StoreError(err, "spend")
	}
	month, err := h.spend.OwnerTotals(ctx, owner, budget.MonthCounter(h.cfg.Now()))
	if err != nil {
		return spent{}, response.StoreError(err, "spend")
	}
	return spent{SpendInUsd: life.Cost, SpendThisMonthInUsd: month.Cost}, nil
}

// writeUser answers PATCH /api/v1/users/{id} with the user and its spend,
// so the response that sets a limit says how much is spent already.
func (h *Handler) writeUser(w http.ResponseWriter, r *http.Request, u *user.User) error {
	sp, err := h.spendOf(r.Context(), "USER#"+u.UserID)
	if err != nil {
		return err
	}
	return response.JSON(w, http.StatusOK, struct {
		userView
		spent
	}{userViewOf(u), sp})
}

// writeOrg answers PATCH /api/v1/organization with the settings and the
// organisation's spend, so the response that sets a limit says how much is
// spent already.
func (h *Handler) writeOrg(w http.ResponseWriter, r *http.Request, o *user.Org) error {
	sp, err := h.spendOf(r.Context(), "ORG")
	if err != nil {
		return err
	}
	return response.JSON(w, http.StatusOK, struct {
		*user.Org
		spent
	}{o, sp})
}
