package roster

// Enrolling a validated roster: a user and a key per student, at most
// bulkConcurrency at a time, and the answer as JSON or CSV.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/admin/audit"
	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/storeerr"
	"github.com/stipend/stipend/shared/user"
)

// ---- roster validation ----

// rosterRow is a validated student: the key and user it gets, without ids.
type rosterRow struct {
	studentInput
	keyTemplate  apikey.Key // the key, without id and hash
	userTemplate user.User  // the user, without its internal id
}

// newKey returns a fresh key for the row and its plaintext.
func (row *rosterRow) newKey() (*apikey.Key, string) {
	k := row.keyTemplate
	id, plaintext := apikey.Generate()
	k.ID, k.Hash, k.Version = id, apikey.Hash(plaintext), 0
	return &k, plaintext
}

// settingsChecker validates lists of provider setting ids, each distinct
// list once.
type settingsChecker struct {
	h    *Handler
	r    *http.Request
	seen map[string]settingsResult
}

type settingsResult struct {
	ids []string
	err error
}

func (c *settingsChecker) check(ids []string) ([]string, error) {
	k := strings.Join(ids, "\x00")
	if res, ok := c.seen[k]; ok {
		return res.ids, res.err
	}
	out, err := form.CheckSettings(c.r.Context(), c.h.cfg.Providers, ids)
	c.seen[k] = settingsResult{out, err}
	return out, err
}

// validateRoster checks every student against the rules of POST
// /api/v1/secret-keys and POST /api/v1/users and builds what each gets. It
// returns every problem; an error is a storage failure.
func (h *Handler) validateRoster(r *http.Request, in *rosterInput, now time.Time) ([]rosterRow, Problems, error) {
	h = h.withSettingPrices(r.Context()) // allowedModels may name models a setting prices
	var ps Problems
	if len(in.students) > MaxStudents {
		ps = append(ps, where{}.Problem("students", fmt.Sprintf("a roster has at most %d students; this one has %d: send it in parts", MaxStudents, len(in.students))))
	}
	sc := &settingsChecker{h: h, r: r, seen: map[string]settingsResult{}}

	// Defaults alone: a bad default is reported once, not once per student.
	// Rules across fields (rateLimitUnit with rateLimitOverTime) wait for
	// the rows, which may supply the other half.
	defaultsOK := !in.defaultsBroken
	var defaultSettings []string
	if in.defaults.ProviderSettingIDs != nil {
		var err error
		if defaultSettings, err = sc.check(*in.defaults.ProviderSettingIDs); err != nil {
			p, err := in.defaultsAt.from(err, "")
			if err != nil {
				return nil, nil, err
			}
			ps, defaultsOK = append(ps, p), false
		}
	}
	if _, err := h.cfg.Rules.RetrievalMethod(&in.defaults); err != nil {
		p, _ := in.defaultsAt.from(err, "")
		ps, defaultsOK = append(ps, p), false
	}
	var scratch apikey.Key
	if err := h.cfg.Rules.ApplyKey(&in.defaults, nil, &scratch, now); err != nil {
		var ae *apierror.Error
		if errors.As(err, &ae) && isSet(in.defaults, ae.Param) {
			p, _ := in.defaultsAt.from(err, "")
			ps, defaultsOK = append(ps, p), false
		}
	}
	var scratchUser user.User
	if err := form.ApplyUser(&in.userDefaults, &scratchUser, now); err != nil {
		var ae *apierror.Error
		if errors.As(err, &ae) && isSet(in.userDefaults, ae.Param) {
			p, _ := in.defaultsAt.from(err, "user.")
			ps, defaultsOK = append(ps, p), false
		}
	}

	rows := make([]rosterRow, 0, len(in.students))
	first := map[string]where{}
	for _, st := range in.students {
		if st.userID != "" {
			if prev, dup := first[st.userID]; dup {
				ps = append(ps, st.at.Problem("userId", fmt.Sprintf("userId %q is already on the roster at %s", st.userID, prev.label)))
			} else {
				first[st.userID] = st.at
			}
		}
		if !defaultsOK {
			continue
		}
		row := rosterRow{studentInput: st}
		rps, err := h.buildRow(&row, in, sc, defaultSettings, now)
		if err != nil {
			return nil, nil, err
		}
		ps = append(ps, rps...)
		rows = append(rows, row)
	}
	for _, id := range in.rotate {
		if _, ok := first[id]; !ok {
			ps = append(ps, in.rotateAt.Problem("", fmt.Sprintf("rotate names userId %q, who is not on the roster", id)))
		}
	}
	rotate := map[string]bool{}
	for _, id := range in.rotate {
		rotate[id] = true
	}
	for i := range rows {
		rows[i].rotate = rows[i].rotate || in.rotateAll || rotate[rows[i].userID]
	}
	return rows, ps, nil
}

// buildRow builds the key and user of one student from the defaults and the
// student's own fields, with the rules of the single-item routes.
func (h *Handler) buildRow(row *rosterRow, in *rosterInput, sc *settingsChecker, defaultSettings []string, now time.Time) (Problems, error) {
	at := row.at
	var ps Problems
	add := func(err error, sub string) error {
		p, err := at.from(err, sub)
		if err == nil {
			ps = append(ps, p)
		}
		return err
	}
	req := overlay(in.defaults, row.key)
	req.Name, req.UserID = &row.name, &row.userID
	settings := defaultSettings
	switch {
	case row.key.ProviderSettingIDs != nil:
		var err error
		if settings, err = sc.check(*row.key.ProviderSettingIDs); err != nil {
			if err := add(err, ""); err != nil {
				return nil, err
			}
		}
	case in.defaults.ProviderSettingIDs == nil:
		ps = append(ps, at.Problem("providerSettingIds", "providerSettingIds is required: give it in the defaults or for this student"))
	}
	method, err := h.cfg.Rules.RetrievalMethod(&req)
	if err != nil {
		_ = add(err, "")
	}
	row.keyTemplate = apikey.Key{Tags: []string{}, CreatedAt: now.Unix(), UpdatedAt: now.Unix(), KeyRetrievalMethod: method}
	if err := h.cfg.Rules.ApplyKey(&req, settings, &row.keyTemplate, now); err != nil {
		_ = add(err, "")
	}
	row.keyTemplate.Tags = withTag(row.keyTemplate.Tags, Tag)
	if row.email != "" {
		row.keyTemplate.Metadata = maps.Clone(row.keyTemplate.Metadata)
		if row.keyTemplate.Metadata == nil {
			row.keyTemplate.Metadata = map[string]any{}
		}
		row.keyTemplate.Metadata["email"] = row.email
	}

	ureq := overlay(in.userDefaults, row.user)
	ureq.Name = &row.name
	if ureq.TTL == nil {
		never := "never"
		ureq.TTL = &never
	}
	row.userTemplate = user.User{UserID: row.userID, Tags: []string{}, CreatedAt: now.Unix(), UpdatedAt: now.Unix()}
	if err := form.ApplyUser(&ureq, &row.userTemplate, now); err != nil {
		_ = add(err, "user.")
	}
	row.userTemplate.Tags = withTag(row.userTemplate.Tags, Tag)
	return ps, nil
}

// copyKey returns a copy of k that shares nothing apply changes in place.
func copyKey(k *apikey.Key) *apikey.Key {
	c := *k
	c.Tags = slices.Clone(k.Tags)
	c.SettingIDs = slices.Clone(k.SettingIDs)
	c.AllowedModels = slices.Clone(k.AllowedModels)
	c.AllowedPaths = slices.Clone(k.AllowedPaths)
	c.ModelLimits = maps.Clone(k.ModelLimits)
	c.Metadata = maps.Clone(k.Metadata)
	return &c
}

// withTag returns a copy of tags that includes tag.
func withTag(tags []string, tag string) []string {
	out := slices.Clone(tags)
	if !slices.Contains(out, tag) {
		out = append(out, tag)
	}
	return out
}

// ---- roster ----

// Entry is one student in a roster's answer.
type Entry struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
	Email  string `json:"email,omitempty"`
	KeyID  string `json:"keyId,omitempty"`
	// Key is the plaintext of a created or rotated key, shown this once.
	Key string `json:"key,omitempty"`
	// RevokedKeyID is the key a rotation revoked.
	RevokedKeyID string `json:"revokedKeyId,omitempty"`
	// PreviousKeyID is the revoked or expired roster key a created one replaces.
	PreviousKeyID string `json:"previousKeyId,omitempty"`
	UserCreated   bool   `json:"userCreated,omitempty"`
	Error         string `json:"error,omitempty"`
	status        string
}

// Summary counts a roster's outcome.
type Summary struct {
	Students     int `json:"students"`
	Created      int `json:"created"`
	Existing     int `json:"existing"`
	Rotated      int `json:"rotated"`
	Failed       int `json:"failed"`
	UsersCreated int `json:"usersCreated"`
}

// Response is the JSON answer to a roster, each list in roster order.
type Response struct {
	Summary  Summary `json:"summary"`
	Created  []Entry `json:"created"`
	Existing []Entry `json:"existing"`
	Rotated  []Entry `json:"rotated"`
	Failed   []Entry `json:"failed"`
}

// Enrol serves POST /api/v1/secret-keys/bulk.
func (h *Handler) Enrol(w http.ResponseWriter, r *http.Request) error {
	return writeProblems(w, h.roster(w, r))
}

func (h *Handler) roster(w http.ResponseWriter, r *http.Request) error {
	asCSV, err := wantCSV(r)
	if err != nil {
		return err
	}
	body, err := request.Read(w, r, MaxBytes)
	if err != nil {
		return err
	}
	isCSV, err := csvBody(r, body)
	if err != nil {
		return err
	}
	var in *rosterInput
	var ps Problems
	if isCSV {
		in, ps = parseRosterCSV(body, r.URL.Query())
	} else {
		in, ps = parseRosterJSON(body, r.URL.Query())
	}
	if in == nil {
		return ps
	}
	now := h.cfg.Now()
	rows, vps, err := h.validateRoster(r, in, now)
	if err != nil {
		return err
	}
	if ps = append(ps, vps...); len(ps) > 0 {
		// Problems of the request as a whole first, then row by row.
		slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.row(), b.row()) })
		return ps
	}

	ctx := r.Context()
	start := time.Now()
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].userID
	}
	markers, err := h.cfg.Enrolment.RosterKeys(ctx, ids)
	if err != nil {
		return response.StoreError(err, "roster keys")
	}
	entries := make([]Entry, len(rows))
	forEach(len(rows), bulkConcurrency, func(i int) {
		rk, found := markers[rows[i].userID]
		entries[i] = h.enrol(r, &rows[i], rk, found, now)
	})

	res := Response{Created: []Entry{}, Existing: []Entry{}, Rotated: []Entry{}, Failed: []Entry{}}
	res.Summary.Students = len(entries)
	for _, e := range entries {
		if e.UserCreated {
			res.Summary.UsersCreated++
		}
		switch e.status {
		case StatusCreated:
			res.Created = append(res.Created, e)
		case StatusExisting:
			res.Existing = append(res.Existing, e)
		case StatusRotated:
			res.Rotated = append(res.Rotated, e)
		default:
			res.Failed = append(res.Failed, e)
		}
	}
	res.Summary.Created, res.Summary.Existing = len(res.Created), len(res.Existing)
	res.Summary.Rotated, res.Summary.Failed = len(res.Rotated), len(res.Failed)
	h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "roster applied",
		slog.Int("students", len(entries)), slog.Int("created", res.Summary.Created),
		slog.Int("existing", res.Summary.Existing), slog.Int("rotated", res.Summary.Rotated),
		slog.Int("failed", res.Summary.Failed), slog.Int("usersCreated", res.Summary.UsersCreated),
		slog.Duration("took", time.Since(start)))

	status := http.StatusOK
	if len(res.Failed) > 0 {
		if len(res.Failed) == len(entries) {
			return apierror.New(http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
				"storage is unavailable, no student was enrolled; try again later")
		}
		status = http.StatusMultiStatus
	}
	w.Header().Set("Cache-Control", "no-store")
	if asCSV {
		// The audit trail finds target ids in JSON answers only.
		for _, e := range entries {
			audit.NoteTargets(r, e.UserID, e.KeyID, e.RevokedKeyID, e.PreviousKeyID)
		}
		return writeRosterCSV(w, status, entries)
	}
	return response.JSON(w, status, res)
}

// enrol gives one student a roster key unless they have an active one (and
// are not rotated). rk is the student's marker as read before, if found.
// Losing a race to another roster call is not an error: the student is then
// "existing" with the key the other call made.
func (h *Handler) enrol(r *http.Request, row *rosterRow, rk apikey.RosterKey, found bool, now time.Time) Entry {
	ctx := r.Context()
	e := Entry{UserID: row.userID, Name: row.name, Email: row.email}
	rotate, userReady := row.rotate, false
	var err error
	for range response.UpdateAttempts {
		active := found && rk.Key != nil && !rk.Key.Revoked && !rk.Key.Expired(now)
		if active && !rotate {
			e.status, e.KeyID = StatusExisting, rk.KeyID
			return e
		}
		if !userReady {
			if e.UserCreated, err = h.ensureRosterUser(ctx, row); err != nil {
				break
			}
			userReady = true
		}
		k, plaintext := row.newKey()
		if err = h.cfg.Rules.Seal(r.Context(), k, plaintext); err != nil {
			break
		}
		switch {
		case !found:
			err = h.cfg.Enrolment.CreateRosterKey(ctx, k)
		case active: // rotate
			old := *rk.Key
			old.Revoked, old.RevokedReason, old.UpdatedAt = true, RevokedRotated, now.Unix()
			err = h.cfg.Enrolment.ReplaceRosterKey(ctx, rk.KeyID, &old, k)
		default: // the roster key was revoked, expired or lost: reissue
			err = h.cfg.Enrolment.ReplaceRosterKey(ctx, rk.KeyID, nil, k)
		}
		if err == nil {
			e.KeyID, e.Key, e.status = k.ID, plaintext, StatusCreated
			if active {
				e.status, e.RevokedKeyID = StatusRotated, rk.KeyID
			} else if found {
				e.PreviousKeyID = rk.KeyID
			}
			h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "secret key created",
				slog.String("key", k.ID), slog.String("user", row.userID), slog.String("roster", e.status))
			return e
		}
		if !errors.Is(err, storeerr.ErrExists) && !errors.Is(err, storeerr.ErrConflict) {
			break
		}
		// Someone changed the marker (or the key to revoke) first: read it
		// again. When the marker moved, another roster call handled this
		// student, and its key stands: no second rotation.
		prev, wasFound := rk.KeyID, found
		var m map[string]apikey.RosterKey
		if m, err = h.cfg.Enrolment.RosterKeys(ctx, []string{row.userID}); err != nil {
			break
		}
		rk, found = m[row.userID]
		if found != wasFound || rk.KeyID != prev {
			rotate = false
		}
	}
	h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "roster student failed",
		slog.String("user", row.userID), slog.String("cause", apierror.Redact(fmt.Sprint(err))))
	e.status, e.KeyID, e.Key = StatusFailed, "", ""
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		ae = apierror.From(response.StoreError(err, "roster key of user "+row.userID))
	}
	e.Error = apierror.Message(ae)
	return e
}

// ensureRosterUser creates the row's user unless that userId exists; it reports
// whether it created it. An existing user is left as it is.
func (h *Handler) ensureRosterUser(ctx context.Context, row *rosterRow) (bool, error) {
	u := row.userTemplate
	u.ID = apikey.NewID()
	u.Tags = slices.Clone(row.userTemplate.Tags)
	err := h.cfg.Enrolment.CreateUser(ctx, &u)
	if errors.Is(err, storeerr.ErrExists) {
		return false, nil
	}
	return err == nil, err
}

// forEach calls fn(i) for every i in [0, n), at most limit at a time, and
// returns when all have returned.
func forEach(n, limit int, fn func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// wantCSV reports whether the answer should be CSV: ?format=csv, or an
// Accept header that names text/csv before application/json.
func wantCSV(r *http.Request) (bool, error) {
	switch f := strings.ToLower(r.URL.Query().Get("format")); f {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, request.MustBe("format", "csv or json")
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "text/csv":
			return true, nil
		case "application/json":
			return false, nil
		}
	}
	return false, nil
}

// csvBody reports whether body is a CSV roster, by its Content-Type; without
// a JSON or CSV type, a body starting with '{' is JSON and anything else CSV.
func csvBody(r *http.Request, body []byte) (bool, error) {
	ct := r.Header.Get("Content-Type")
	mt := ""
	if ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return false, apierror.New(http.StatusUnsupportedMediaType, apierror.CodeInvalidRequest,
				fmt.Sprintf("Content-Type %q cannot be read; send application/json or text/csv", ct))
		}
	}
	switch mt {
	case "application/json":
		return false, nil
	case "text/csv", "application/csv", "text/comma-separated-values", "text/tab-separated-values":
		return true, nil
	case "", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream":
		trimmed := bytes.TrimLeft(bytes.TrimPrefix(body, []byte("\ufeff")), " \t\r\n")
		return !bytes.HasPrefix(trimmed, []byte("{")), nil
	}
	return false, apierror.New(http.StatusUnsupportedMediaType, apierror.CodeInvalidRequest,
		fmt.Sprintf("Content-Type %s is not supported; send a roster as application/json or text/csv", mt))
}

// writeRosterCSV writes the roster's answer as CSV for a mail merge.
func writeRosterCSV(w http.ResponseWriter, status int, entries []Entry) error {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	_ = cw.Write([]string{"userId", "name", "email", "keyId", "key", "status"})
	for _, e := range entries {
		_ = cw.Write([]string{noFormula(e.UserID), noFormula(e.Name), noFormula(e.Email), e.KeyID, e.Key, e.status})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("encode roster csv: %w", err)
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="roster-keys.csv"`)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// noFormula keeps a spreadsheet from running a cell as a formula (CSV
// injection) by prefixing cells that start like one with "'".
func noFormula(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
