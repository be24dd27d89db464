package admin

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/storeerr"
	"github.com/stipend/stipend/shared/user"
)

// Rules of the users' fields ("<field> must be <rule>").
const (
	ruleUserID  = "1 to 128 letters, digits or . _ - @ +"
	ruleUserTTL = `one of "never", "24h", "168h", "720h", or a positive integer followed by s, m, h or d`
)

const maxUserIDLen = 128

// userRequest is the body of POST and PATCH /api/v1/users. Every field is a
// pointer: nil means "absent", so an update changes only what it names.
type userRequest struct {
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
		Tags: nonEmpty(u.Tags), Revoked: u.Revoked, RevokedReason: u.RevokedReason,
		CostLimitInUsd: u.CostLimitLifetime, CostLimitInUsdOverTime: u.CostLimitOverTime, CostLimitInUsdUnit: u.CostLimitUnit,
		RateLimitOverTime: u.RateLimitOverTime, RateLimitUnit: u.RateLimitUnit, TTL: u.TTL, ExpiresAt: u.ExpiresAt,
	}
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	list, err := h.cfg.Store.ListUsers(r.Context())
	if err != nil {
		return storeError(err, "users")
	}
	out := make([]userView, 0, len(list))
	for _, u := range list {
		out = append(out, userViewOf(u))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("userId")
	u, err := h.cfg.Store.GetUser(r.Context(), id)
	if err != nil {
		return storeError(err, "user "+id)
	}
	return writeJSON(w, http.StatusOK, userViewOf(u))
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) error {
	var req userRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	// userId is optional: absent or "" gets a random one.
	userID := ""
	if req.UserID != nil {
		userID = strings.TrimSpace(*req.UserID)
		if userID != "" && !validUserID(userID) {
			return mustBe("userId", ruleUserID)
		}
	}
	if userID == "" {
		userID = apikey.NewID()
	}
	if err := validName("name", req.Name); err != nil {
		return err
	}
	if req.TTL == nil {
		return invalid("ttl", "ttl is required and must be %s", ruleUserTTL)
	}
	now := h.cfg.Now()
	u := &user.User{ID: apikey.NewID(), UserID: userID, Tags: []string{}, CreatedAt: now.Unix(), UpdatedAt: now.Unix()}
	if err := applyUser(&req, u, now); err != nil {
		return err
	}
	if err := h.cfg.Store.CreateUser(r.Context(), u); err != nil {
		return storeError(err, "user "+userID)
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "user created", slog.String("user", u.ID))
	return writeJSON(w, http.StatusOK, userViewOf(u))
}

func (h *Handler) updateUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("userId")
	var req userRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	if req.UserID != nil && strings.TrimSpace(*req.UserID) != id {
		return invalid("userId", "userId cannot be changed; it is %q", id)
	}
	if req.Name != nil {
		if err := validName("name", req.Name); err != nil {
			return err
		}
	}
	u, err := update(r.Context(), "user "+id,
		func(ctx context.Context) (*user.User, error) { return h.cfg.Store.GetUser(ctx, id) },
		func(u *user.User) error {
			now := h.cfg.Now()
			if err := applyUser(&req, u, now); err != nil {
				return err
			}
			setRevoked(req.Revoked, req.RevokedReason, &u.Revoked, &u.RevokedReason)
			u.UpdatedAt = now.Unix()
			return nil
		},
		h.cfg.Store.UpdateUser)
	if err != nil {
		return err
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "user updated",
		slog.String("user", u.ID), slog.Bool("revoked", u.Revoked))
	return h.writeUser(w, r, u)
}

// applyUser validates the limits, ttl and tags present in req and writes them
// to u; create (u fresh) and update (u as stored) share it. Name is written
// too, once the caller has checked it; userId and revocation are the
// callers'. now sets expiresAt when a ttl is given.
func applyUser(req *userRequest, u *user.User, now time.Time) error {
	if req.Name != nil {
		u.Name = strings.TrimSpace(*req.Name)
	}
	// "never" and "" mean no expiry, shown as "" (as BricksAI does).
	for _, err := range []error{
		setTTL(req.TTL, ruleUserTTL, true, now, &u.TTL, &u.ExpiresAt),
		setRate(req.RateLimitOverTime, req.RateLimitUnit, &u.RateLimitOverTime, &u.RateLimitUnit),
		setDollars("costLimitInUsd", req.CostLimitLifetime, &u.CostLimitLifetime),
		setDollars("costLimitInUsdOverTime", req.CostLimitOverTime, &u.CostLimitOverTime),
		setCostUnit(req.CostLimitUnit, &u.CostLimitUnit),
	} {
		if err != nil {
			return err
		}
	}
	if req.Tags != nil {
		u.Tags = nonEmpty(*req.Tags)
	}
	// Rules across fields, checked on the result so an update that sets only
	// one of a pair is judged with the other as stored.
	if u.RateLimitOverTime > 0 && u.RateLimitUnit == "" {
		return invalid("rateLimitUnit", "rateLimitUnit is required when rateLimitOverTime is greater than 0; it must be %s", ruleRateUnit)
	}
	if u.CostLimitOverTime > 0 && u.CostLimitUnit == "" {
		return invalid("costLimitInUsdUnit", "costLimitInUsdUnit is required when costLimitInUsdOverTime is greater than 0; it must be %s", ruleCostUnit)
	}
	return nil
}

// validUserID reports whether id is a usable userId: it appears in URL paths
// and storage keys, so it is kept to a safe alphabet.
func validUserID(id string) bool {
	if id == "" || len(id) > maxUserIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-@+", c) >= 0) {
			return false
		}
	}
	return true
}

// validUser checks the userId of a key request: absent or "" (no user) is
// fine, anything else must name an existing user.
func (h *Handler) validUser(r *http.Request, userID *string) error {
	if userID == nil || strings.TrimSpace(*userID) == "" {
		return nil
	}
	id := strings.TrimSpace(*userID)
	if _, err := h.cfg.Store.GetUser(r.Context(), id); err != nil {
		if storeerr.IsNotFound(err) {
			return invalid("userId", "user %q does not exist; create it with POST /api/v1/users first", id)
		}
		return storeError(err, "user "+id)
	}
	return nil
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
	o, err := h.cfg.Store.GetOrg(r.Context())
	if err != nil {
		return storeError(err, "organization")
	}
	return writeJSON(w, http.StatusOK, o)
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
			return mustBe(c.field, ruleDollars)
		}
	}
	if req.CostLimitLifetime == nil && req.CostLimitPerMonth == nil {
		o, err := h.cfg.Store.GetOrg(r.Context())
		if err != nil {
			return storeError(err, "organization")
		}
		return h.writeOrg(w, r, o)
	}
	o, err := update(r.Context(), "organization", h.cfg.Store.GetOrg,
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
		h.cfg.Store.PutOrg)
	if err != nil {
		return err
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "organization limits updated",
		slog.String("costLimitInUsd", o.CostLimitLifetime.String()),
		slog.String("costLimitInUsdPerMonth", o.CostLimitPerMonth.String()))
	return h.writeOrg(w, r, o)
}

// spent is what an owner (a user, the organisation) has spent, settled:
// counted always, limits or not, so a limit set now is checked against it.
type spent struct {
	SpendInUsd          money.Nanos `json:"spendInUsd"`          // lifetime
	SpendThisMonthInUsd money.Nanos `json:"spendThisMonthInUsd"` // calendar month (UTC)
}

// spendOf reads what owner ("USER#<id>", "ORG") has spent.
func (h *Handler) spendOf(ctx context.Context, owner string) (spent, error) {
	life, err := h.cfg.Store.OwnerTotals(ctx, owner, budget.LifetimeCounter)
	if err != nil {
		return spent{}, storeError(err, "spend")
	}
	month, err := h.cfg.Store.OwnerTotals(ctx, owner, budget.MonthCounter(h.cfg.Now()))
	if err != nil {
		return spent{}, storeError(err, "spend")
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
	return writeJSON(w, http.StatusOK, struct {
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
	return writeJSON(w, http.StatusOK, struct {
		*user.Org
		spent
	}{o, sp})
}
