package roster

// POST /api/v1/secret-keys/bulk-update and bulk-revoke.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/storeerr"
	"github.com/stipend/stipend/shared/user"
)

// ---- bulk update and revoke ----

// selector names the keys of a bulk update or revoke: exactly one of its
// fields is set.
type selector struct {
	UserIDs *[]string
	KeyIDs  *[]string
	Tag     *string
}

// bulkUpdateRequest is the body of POST /api/v1/secret-keys/bulk-update.
type bulkUpdateRequest struct {
	UserIDs        *[]string                   `json:"userIds" rule:"a non-empty list of userIds"`
	KeyIDs         *[]string                   `json:"keyIds" rule:"a non-empty list of secret key ids"`
	Tag            *string                     `json:"tag" rule:"a non-empty string"`
	Set            *map[string]json.RawMessage `json:"set" rule:"an object of the secret key fields to change"`
	IncludeRevoked *bool                       `json:"includeRevoked" rule:"true or false"`
}

// bulkRevokeRequest is the body of POST /api/v1/secret-keys/bulk-revoke.
type bulkRevokeRequest struct {
	UserIDs *[]string `json:"userIds" rule:"a non-empty list of userIds"`
	KeyIDs  *[]string `json:"keyIds" rule:"a non-empty list of secret key ids"`
	Tag     *string   `json:"tag" rule:"a non-empty string"`
	Reason  *string   `json:"reason" rule:"a string"`
}

// KeyResult is one key in a bulk update's or revoke's answer.
type KeyResult struct {
	KeyID  string `json:"keyId"`
	UserID string `json:"userId,omitempty"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// UserResult is one user in a bulk update's answer.
type UserResult struct {
	UserID string `json:"userId"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// UpdateResponse answers POST /api/v1/secret-keys/bulk-update.
type UpdateResponse struct {
	Matched      int          `json:"matched"`
	Updated      int          `json:"updated"`
	Skipped      int          `json:"skipped"`
	Failed       int          `json:"failed"`
	Keys         []KeyResult  `json:"keys"`
	UsersUpdated int          `json:"usersUpdated"`
	UsersFailed  int          `json:"usersFailed"`
	Users        []UserResult `json:"users"`
}

// RevokeResponse answers POST /api/v1/secret-keys/bulk-revoke.
type RevokeResponse struct {
	Matched        int         `json:"matched"`
	Revoked        int         `json:"revoked"`
	AlreadyRevoked int         `json:"alreadyRevoked"`
	Failed         int         `json:"failed"`
	Keys           []KeyResult `json:"keys"`
}

// target is a resolved selector.
type target struct {
	keys    []*apikey.Key
	userIDs []string              // the selector's userIds, when it had them
	users   map[string]*user.User // every user, when userIds were checked
}

// resolve returns the keys sel names, checking that named users and keys
// exist.
func (h *Handler) resolve(ctx context.Context, sel selector) (*target, Problems, error) {
	at := where{}
	n := 0
	for _, set := range []bool{sel.UserIDs != nil, sel.KeyIDs != nil, sel.Tag != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, Problems{at.Problem("userIds", "give exactly one of userIds, keyIds or tag to select the keys")}, nil
	}
	t := &target{}
	var ps Problems
	switch {
	case sel.Tag != nil:
		tag := strings.TrimSpace(*sel.Tag)
		if tag == "" {
			return nil, Problems{at.Problem("tag", "tag must be a non-empty string")}, nil
		}
		all, err := h.cfg.Keys.ListKeys(ctx)
		if err != nil {
			return nil, nil, response.StoreError(err, "secret keys")
		}
		for _, k := range all {
			if slices.Contains(k.Tags, tag) {
				t.keys = append(t.keys, k)
			}
		}
	case sel.KeyIDs != nil:
		ids := dedupe(*sel.KeyIDs)
		if len(ids) == 0 {
			return nil, Problems{at.Problem("keyIds", "keyIds must be a non-empty list of secret key ids")}, nil
		}
		keys := make([]*apikey.Key, len(ids))
		errs := make([]error, len(ids))
		forEach(len(ids), bulkConcurrency, func(i int) { keys[i], errs[i] = h.cfg.Keys.GetKey(ctx, ids[i]) })
		for i, err := range errs {
			switch {
			case err == nil:
				t.keys = append(t.keys, keys[i])
			case storeerr.IsNotFound(err):
				ps = append(ps, where{label: fmt.Sprintf("keyIds[%d]", i), prefix: fmt.Sprintf("keyIds[%d]", i), keyID: ids[i]}.Problem("", fmt.Sprintf("secret key %q does not exist", ids[i])))
			default:
				return nil, nil, response.StoreError(err, "secret key "+ids[i])
			}
		}
	default:
		t.userIDs = dedupe(*sel.UserIDs)
		if len(t.userIDs) == 0 {
			return nil, Problems{at.Problem("userIds", "userIds must be a non-empty list of userIds")}, nil
		}
		users, err := h.cfg.Users.ListUsers(ctx)
		if err != nil {
			return nil, nil, response.StoreError(err, "users")
		}
		t.users = make(map[string]*user.User, len(users))
		for _, u := range users {
			t.users[u.UserID] = u
		}
		want := make(map[string]bool, len(t.userIDs))
		for i, id := range t.userIDs {
			want[id] = true
			if t.users[id] == nil {
				ps = append(ps, where{label: fmt.Sprintf("userIds[%d]", i), prefix: fmt.Sprintf("userIds[%d]", i), userID: id}.Problem("", fmt.Sprintf("user %q does not exist", id)))
			}
		}
		all, err := h.cfg.Keys.ListKeys(ctx)
		if err != nil {
			return nil, nil, response.StoreError(err, "secret keys")
		}
		for _, k := range all {
			if want[k.UserID] {
				t.keys = append(t.keys, k)
			}
		}
	}
	return t, ps, nil
}

// dedupe returns ids trimmed, without empty ones and repeats, in order.
func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id = strings.TrimSpace(id); id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Update serves POST /api/v1/secret-keys/bulk-update.
func (h *Handler) Update(w http.ResponseWriter, r *http.Request) error {
	return writeProblems(w, h.doBulkUpdate(w, r))
}

func (h *Handler) doBulkUpdate(w http.ResponseWriter, r *http.Request) error {
	h = h.withSettingPrices(r.Context()) // allowedModels may name models a setting prices
	ctx := r.Context()
	body, err := request.Read(w, r, request.MaxBodyBytes)
	if err != nil {
		return err
	}
	raw, ok := request.Object(body)
	if !ok {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body must be a JSON object {userIds|keyIds|tag, set}")
	}
	var req bulkUpdateRequest
	ps := decodeFields(raw, &req, nil, where{}, "")
	setAt := where{label: "set", prefix: "set."}
	var kreq form.KeyRequest
	var ureq form.UserRequest
	if req.Set == nil {
		if _, given := raw["set"]; !given || request.IsNull(raw["set"]) {
			ps = append(ps, where{}.Problem("set", "set is required: an object of the secret key fields to change"))
		}
	} else {
		set := maps.Clone(*req.Set)
		if u, ok := set["user"]; ok {
			delete(set, "user")
			if ur, ok := request.Object(u); ok {
				ps = append(ps, decodeFields(ur, &ureq, updateUserRefused, setAt, "user.")...)
			} else if !request.IsNull(u) {
				ps = append(ps, setAt.Problem("user", "user must be an object of user fields"))
			}
		}
		ps = append(ps, decodeFields(set, &kreq, updateKeyRefused, setAt, "")...)
		if len(ps) == 0 && reflect.ValueOf(kreq).IsZero() && reflect.ValueOf(ureq).IsZero() {
			ps = append(ps, where{}.Problem("set", "set names no field to change"))
		}
	}
	var settings []string
	if kreq.ProviderSettingIDs != nil {
		if settings, err = form.CheckSettings(r.Context(), h.cfg.Providers, *kreq.ProviderSettingIDs); err != nil {
			p, err := setAt.from(err, "")
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
	}
	// The set alone, so that a bad value is reported once, not once per
	// key; rules across fields wait for the keys, which may hold the other half.
	now := h.cfg.Now()
	var scratch apikey.Key
	if err := h.cfg.Rules.ApplyKey(&kreq, nil, &scratch, now); err != nil {
		if ae := (*apierror.Error)(nil); errors.As(err, &ae) && isSet(kreq, ae.Param) {
			p, _ := setAt.from(err, "")
			ps = append(ps, p)
		}
	}
	var scratchUser user.User
	if err := form.ApplyUser(&ureq, &scratchUser, now); err != nil {
		if ae := (*apierror.Error)(nil); errors.As(err, &ae) && isSet(ureq, ae.Param) {
			p, _ := setAt.from(err, "user.")
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return ps
	}
	t, tps, err := h.resolve(ctx, selector{UserIDs: req.UserIDs, KeyIDs: req.KeyIDs, Tag: req.Tag})
	if err != nil || len(tps) > 0 {
		return cmpErr(err, tps)
	}
	includeRevoked := req.IncludeRevoked != nil && *req.IncludeRevoked
	keyChange := !reflect.ValueOf(kreq).IsZero()

	// Check every key (and user) first: nothing is written if any breaks a rule.
	for _, k := range t.keys {
		if !keyChange || (k.Revoked && !includeRevoked) {
			continue
		}
		c := copyKey(k)
		if err := h.cfg.Rules.ApplyKey(&kreq, settings, c, now); err != nil {
			p, _ := where{label: "secret key " + k.ID, prefix: "set.", keyID: k.ID, userID: k.UserID}.from(err, "")
			ps = append(ps, p)
		}
	}
	var users []*user.User
	if !reflect.ValueOf(ureq).IsZero() {
		if users, err = h.targetUsers(ctx, t); err != nil {
			return err
		}
		for _, u := range users {
			c := *u
			if err := form.ApplyUser(&ureq, &c, now); err != nil {
				p, _ := where{label: "user " + u.UserID, prefix: "set.", userID: u.UserID}.from(err, "user.")
				ps = append(ps, p)
			}
		}
	}
	if len(ps) > 0 {
		return ps
	}

	res := UpdateResponse{Matched: len(t.keys), Keys: make([]KeyResult, len(t.keys)), Users: make([]UserResult, len(users))}
	forEach(len(t.keys), bulkConcurrency, func(i int) {
		k := t.keys[i]
		if !keyChange {
			res.Keys[i] = KeyResult{KeyID: k.ID, UserID: k.UserID, Name: k.Name, Status: StatusSkipped}
			return
		}
		res.Keys[i] = h.updateOne(ctx, k, func(k *apikey.Key) (string, error) {
			if k.Revoked && !includeRevoked {
				return StatusSkipped, nil
			}
			if err := h.cfg.Rules.ApplyKey(&kreq, settings, k, now); err != nil {
				return "", err
			}
			return StatusUpdated, nil
		})
	})
	forEach(len(users), bulkConcurrency, func(i int) { res.Users[i] = h.updateUserOne(ctx, users[i], &ureq, now) })
	for _, k := range res.Keys {
		switch k.Status {
		case StatusUpdated:
			res.Updated++
		case StatusSkipped:
			res.Skipped++
		default:
			res.Failed++
		}
	}
	for _, u := range res.Users {
		if u.Status == StatusUpdated {
			res.UsersUpdated++
		} else {
			res.UsersFailed++
		}
	}
	h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "secret keys updated in bulk",
		slog.Int("matched", res.Matched), slog.Int("updated", res.Updated), slog.Int("skipped", res.Skipped),
		slog.Int("failed", res.Failed), slog.Int("usersUpdated", res.UsersUpdated), slog.Int("usersFailed", res.UsersFailed))
	failed, done := res.Failed+res.UsersFailed, res.Updated+res.Skipped+res.UsersUpdated
	return writeBulk(w, failed, done, res)
}

// cmpErr returns err, or ps when err is nil and ps is not empty.
func cmpErr(err error, ps Problems) error {
	if err != nil {
		return err
	}
	if len(ps) > 0 {
		return ps
	}
	return nil
}

// targetUsers returns the users a bulk update's "set.user" changes: the
// selector's userIds, or else the users of the selected keys.
func (h *Handler) targetUsers(ctx context.Context, t *target) ([]*user.User, error) {
	ids := t.userIDs
	if ids == nil {
		var all []string
		for _, k := range t.keys {
			if k.UserID != "" {
				all = append(all, k.UserID)
			}
		}
		ids = dedupe(all)
	}
	if t.users == nil {
		list, err := h.cfg.Users.ListUsers(ctx)
		if err != nil {
			return nil, response.StoreError(err, "users")
		}
		t.users = make(map[string]*user.User, len(list))
		for _, u := range list {
			t.users[u.UserID] = u
		}
	}
	out := make([]*user.User, 0, len(ids))
	for _, id := range ids {
		if u := t.users[id]; u != nil {
			out = append(out, u)
		}
	}
	return out, nil
}

// updateOne changes key k with change (which returns the key's status, or a
// 400 for a key the change no longer fits) and stores it, reading it again
// and retrying when another writer changed it first, as PATCH does.
func (h *Handler) updateOne(ctx context.Context, k *apikey.Key, change func(*apikey.Key) (string, error)) KeyResult {
	res := KeyResult{KeyID: k.ID, UserID: k.UserID, Name: k.Name}
	first := true
	get := func(ctx context.Context) (*apikey.Key, error) {
		if first { // the key as listed; a retry reads it again
			first = false
			return copyKey(k), nil
		}
		return h.cfg.Keys.GetKey(ctx, k.ID)
	}
	var status string
	cur, err := response.Update(ctx, "secret key "+k.ID, get, func(cur *apikey.Key) error {
		var err error
		if status, err = change(cur); err != nil {
			return err
		}
		if status != StatusUpdated && status != StatusRevoked {
			return response.ErrNoWrite
		}
		cur.UpdatedAt = h.cfg.Now().Unix()
		return nil
	}, h.cfg.Keys.UpdateKey)
	if err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "bulk key update failed", slog.String("key", k.ID), slog.String("cause", err.Error()))
		res.Status, res.Error = StatusFailed, apierror.Message(err)
		return res
	}
	res.Status = status
	if status == StatusUpdated || status == StatusRevoked {
		h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "secret key updated",
			slog.String("key", cur.ID), slog.Bool("revoked", cur.Revoked), slog.Bool("bulk", true))
	}
	return res
}

// updateUserOne applies req to user u and stores it, retrying on conflicts.
func (h *Handler) updateUserOne(ctx context.Context, u *user.User, req *form.UserRequest, now time.Time) UserResult {
	res := UserResult{UserID: u.UserID}
	first := true
	get := func(ctx context.Context) (*user.User, error) {
		if first { // the user as listed; a retry reads it again
			first = false
			cur := *u
			return &cur, nil
		}
		return h.cfg.Users.GetUser(ctx, u.UserID)
	}
	_, err := response.Update(ctx, "user "+u.UserID, get, func(cur *user.User) error {
		if err := form.ApplyUser(req, cur, now); err != nil {
			return err
		}
		cur.UpdatedAt = h.cfg.Now().Unix()
		return nil
	}, h.cfg.Users.UpdateUser)
	if err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "bulk user update failed", slog.String("user", u.UserID), slog.String("cause", err.Error()))
		res.Status, res.Error = StatusFailed, apierror.Message(err)
		return res
	}
	res.Status = StatusUpdated
	return res
}

// Revoke serves POST /api/v1/secret-keys/bulk-revoke.
func (h *Handler) Revoke(w http.ResponseWriter, r *http.Request) error {
	return writeProblems(w, h.doBulkRevoke(w, r))
}

func (h *Handler) doBulkRevoke(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	body, err := request.Read(w, r, request.MaxBodyBytes)
	if err != nil {
		return err
	}
	raw, ok := request.Object(body)
	if !ok {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body must be a JSON object {userIds|keyIds|tag, reason}")
	}
	var req bulkRevokeRequest
	if ps := decodeFields(raw, &req, nil, where{}, ""); len(ps) > 0 {
		return ps
	}
	reason := ""
	if req.Reason != nil {
		if reason = strings.TrimSpace(*req.Reason); len(reason) > 256 {
			return Problems{where{}.Problem("reason", "reason must be at most 256 characters")}
		}
	}
	t, ps, err := h.resolve(ctx, selector{UserIDs: req.UserIDs, KeyIDs: req.KeyIDs, Tag: req.Tag})
	if err != nil || len(ps) > 0 {
		return cmpErr(err, ps)
	}
	res := RevokeResponse{Matched: len(t.keys), Keys: make([]KeyResult, len(t.keys))}
	forEach(len(t.keys), bulkConcurrency, func(i int) {
		res.Keys[i] = h.updateOne(ctx, t.keys[i], func(k *apikey.Key) (string, error) {
			if k.Revoked {
				return StatusAlreadyRevoked, nil
			}
			k.Revoked, k.RevokedReason = true, reason
			return StatusRevoked, nil
		})
	})
	for _, k := range res.Keys {
		switch k.Status {
		case StatusRevoked:
			res.Revoked++
		case StatusAlreadyRevoked:
			res.AlreadyRevoked++
		default:
			res.Failed++
		}
	}
	h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "secret keys revoked in bulk",
		slog.Int("matched", res.Matched), slog.Int("revoked", res.Revoked),
		slog.Int("alreadyRevoked", res.AlreadyRevoked), slog.Int("failed", res.Failed))
	return writeBulk(w, res.Failed, res.Revoked+res.AlreadyRevoked, res)
}

// writeBulk answers a bulk update or revoke: 200, 207 when some items
// failed, or 503 when all of them did.
func writeBulk(w http.ResponseWriter, failed, done int, v any) error {
	switch {
	case failed == 0:
		return response.JSON(w, http.StatusOK, v)
	case done == 0:
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"no key could be changed (storage unavailable, or keys changed concurrently); nothing was changed, try again later")
	default:
		return response.JSON(w, http.StatusMultiStatus, v)
	}
}
