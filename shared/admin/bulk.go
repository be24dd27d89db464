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
// DynamoDB transaction as the key (see dynamo.RosterKey), so two identical
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
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/user"
)

// RosterStore is the storage of roster markers, each user's one roster key;
// *dynamo.Store implements it (shared/dynamo/bulk.go).
type RosterStore interface {
	// RosterKeys returns the marker of each of userIDs that has one, with
	// the key it names (Key nil when that key does not exist).
	RosterKeys(ctx context.Context, userIDs []string) (map[string]dynamo.RosterKey, error)
	// CreateRosterKey stores k with its marker; dynamo.ErrExists when the
	// user already has a marker. Nothing is written on failure.
	CreateRosterKey(ctx context.Context, k *apikey.Key) error
	// ReplaceRosterKey stores k and moves the marker from prevKeyID to it,
	// and writes revoke (the previous key, revoked) when not nil;
	// dynamo.ErrConflict when the marker or that key changed first.
	ReplaceRosterKey(ctx context.Context, prevKeyID string, revoke, k *apikey.Key) error
}

var _ RosterStore = (*dynamo.Store)(nil)

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

// ---- problems ----

// problem is one thing wrong with a bulk request.
type problem struct {
	Line   int  `json:"line,omitempty"`   // CSV: the line of the body, from 1
	Column int  `json:"column,omitempty"` // CSV: the column, from 1
	Index  *int `json:"index,omitempty"`  // JSON: the position in students, from 0
	// Field is the field's path: "students[3].costLimitInUsdLifetime",
	// "defaults.ttl", "costLimitInUsdLifetime" (a CSV column or query
	// parameter), "set.user.ttl".
	Field   string `json:"field"`
	UserID  string `json:"userId,omitempty"`
	KeyID   string `json:"keyId,omitempty"`
	Message string `json:"message"` // says where, then what is wrong
}

// row orders problems: 0 for the request as a whole, then by CSV line or
// position in students.
func (p problem) row() int {
	if p.Index != nil {
		return *p.Index + 1
	}
	return p.Line
}

// problems is everything wrong with a bulk request; writeProblems answers
// it with one 400 listing them all.
type problems []problem

func (ps problems) Error() string {
	msgs := make([]string, 0, len(ps))
	for _, p := range ps {
		msgs = append(msgs, p.Message)
	}
	return fmt.Sprintf("%d problems: %s", len(ps), strings.Join(msgs, "; "))
}

// writeProblems answers a problems error with a 400: the error body of every
// route (message quoting the first problems, param naming the first field)
// plus "errors" listing all of them. Any other error is returned as is, for
// Handler.handle.
func writeProblems(w http.ResponseWriter, err error) error {
	var ps problems
	if !errors.As(err, &ps) || len(ps) == 0 {
		return err
	}
	msgs := make([]string, 0, problemsInMessage)
	for _, p := range ps[:min(len(ps), problemsInMessage)] {
		msgs = append(msgs, p.Message)
	}
	msg := fmt.Sprintf("%d problems, nothing was changed: %s", len(ps), strings.Join(msgs, "; "))
	if len(ps) == 1 {
		msg = "nothing was changed: " + msgs[0]
	}
	if len(ps) > problemsInMessage {
		msg += fmt.Sprintf("; and %d more, listed in errors", len(ps)-problemsInMessage)
	}
	e := apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, msg)
	var body struct {
		apierror.Body
		Errors problems `json:"errors"`
	}
	body.Error.Message, body.Error.Type, body.Error.Code = e.Message, e.Type, e.Code
	if param := ps[0].Field; param != "" {
		body.Error.Param = &param
	}
	body.Errors = ps
	return writeJSON(w, http.StatusBadRequest, body)
}

// where locates problems in a bulk request.
type where struct {
	label   string         // "students[3]", "line 5", "defaults", "query parameter", "set"
	prefix  string         // prepended to field names: "students[3].", "defaults.", "set."
	line    int            // CSV line
	index   *int           // position in students
	userID  string         // the student's, when known
	keyID   string         // the key's, for bulk updates
	columns map[string]int // CSV: column of each field, from 1
}

// problem returns the problem msg about field (a path below w: "ttl",
// "user.ttl"); msg should name the field.
func (w where) problem(field, msg string) problem {
	p := problem{Field: w.prefix + field, Line: w.line, Index: w.index, UserID: w.userID, KeyID: w.keyID}
	if field == "" {
		p.Field = strings.TrimSuffix(w.prefix, ".")
	}
	loc := w.label
	if c := w.columns[field]; c > 0 {
		p.Column = c
		loc += fmt.Sprintf(", column %d (%s)", c, field)
	}
	if w.userID != "" {
		loc += fmt.Sprintf(" (userId %q)", w.userID)
	}
	if w.keyID != "" {
		loc += fmt.Sprintf(" (key %s)", w.keyID)
	}
	if loc == "" {
		p.Message = msg
	} else {
		p.Message = loc + ": " + msg
	}
	return p
}

// from turns a validation error (a 400 naming its field) into a problem; the
// field and its mention in the message get sub ("user."). Any other error
// (storage unavailable) is returned.
func (w where) from(err error, sub string) (problem, error) {
	var ae *apierror.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return problem{}, err
	}
	msg := ae.Message
	if sub != "" && ae.Param != "" && strings.HasPrefix(msg, ae.Param) {
		msg = sub + msg
	}
	field := ae.Param
	if field != "" {
		field = sub + field
	}
	return w.problem(field, msg), nil
}

// ---- decoding ----

// decodeFields decodes the fields of raw named by dst's json tags into dst,
// a pointer to a struct of pointer fields tagged `json` and `rule` (as
// decodeObject: null is absent, a value of the wrong type breaks the field's
// rule), and returns every problem rather than the first: fields listed in
// refused (with the reason) and names dst does not know are problems too.
func decodeFields(raw map[string]json.RawMessage, dst any, refused map[string]string, at where, sub string) problems {
	var ps problems
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	known := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		known[name] = true
		msg, ok := raw[name]
		if !ok || bytes.Equal(bytes.TrimSpace(msg), []byte("null")) {
			continue
		}
		if why, no := refused[name]; no {
			ps = append(ps, at.problem(sub+name, fmt.Sprintf("%s%s cannot be given here: %s", sub, name, why)))
			continue
		}
		p := reflect.New(f.Type.Elem())
		if err := json.Unmarshal(msg, p.Interface()); err != nil {
			ps = append(ps, at.problem(sub+name, fmt.Sprintf("%s%s must be %s", sub, name, f.Tag.Get("rule"))))
			continue
		}
		v.Field(i).Set(p)
	}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		if !known[name] {
			ps = append(ps, at.problem(sub+name, fmt.Sprintf("unknown field %s%s", sub, name)))
		}
	}
	return ps
}

// fieldTypes maps the json names of struct type t's fields (pointers) to the
// types they point to, minus those in refused.
func fieldTypes(t reflect.Type, refused map[string]string) map[string]reflect.Type {
	out := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if _, no := refused[name]; !no {
			out[name] = f.Type.Elem()
		}
	}
	return out
}

// overlay returns base with every field that over sets replacing base's: a
// student's value wins over the default. T is a struct of pointer fields.
func overlay[T any](base, over T) T {
	vb, vo := reflect.ValueOf(&base).Elem(), reflect.ValueOf(over)
	for i := range vb.NumField() {
		if f := vo.Field(i); !f.IsNil() {
			vb.Field(i).Set(f)
		}
	}
	return base
}

// isSet reports whether the field named by json name field is set in req, a
// struct of pointer fields.
func isSet(req any, field string) bool {
	v := reflect.ValueOf(req)
	t := v.Type()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name == field {
			return !v.Field(i).IsNil()
		}
	}
	return false
}

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodeRequestTooLarge,
				fmt.Sprintf("request body is larger than %d bytes", limit))
		}
		return nil, apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest, "could not read the request body")
	}
	return body, nil
}

// rawObject decodes b, which must be a JSON object, into its raw fields.
func rawObject(b []byte) (map[string]json.RawMessage, bool) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, false
	}
	return raw, true
}

// ---- roster input ----

// rosterInput is a parsed roster, before validation.
type rosterInput struct {
	defaults     keyRequest
	userDefaults userRequest
	defaultsAt   where
	// defaultsBroken is set when the defaults could not be read: the rows
	// are then not checked against them, which would repeat one problem per
	// student.
	defaultsBroken bool
	students       []studentInput
	rotateAll      bool
	rotate         []string // userIds to rotate
	rotateAt       where
}

// studentInput is one student as sent: the key and user fields are the
// student's overrides of the defaults.
type studentInput struct {
	at                  where
	userID, name, email string
	rotate              bool
	key                 keyRequest
	user                userRequest
}

// studentRequest is the part of a student entry that is not a key field.
type studentRequest struct {
	UserID *userIDValue `json:"userId" rule:"1 to 128 letters, digits or . _ - @ +"`
	Name   *string      `json:"name" rule:"a non-empty string"`
	Email  *string      `json:"email" rule:"an email address like ada@example.edu"`
	Rotate *bool        `json:"rotate" rule:"true or false"`
}

// userIDValue is a userId in JSON: a string, or a whole number (student
// numbers are often sent as numbers).
type userIDValue string

func (u *userIDValue) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*u = userIDValue(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	if _, err := n.Int64(); err != nil {
		return fmt.Errorf("userId %s is not a whole number", n)
	}
	*u = userIDValue(n.String())
	return nil
}

// studentFields are the names a student entry may use besides key fields.
var studentFields = []string{"userId", "name", "email", "rotate", "user"}

// parseRosterJSON reads a JSON roster.
func parseRosterJSON(body []byte, q url.Values) (*rosterInput, problems) {
	in := &rosterInput{defaultsAt: where{label: "defaults", prefix: "defaults."}, rotateAt: where{label: "rotate", prefix: "rotate"}}
	var ps problems
	for name := range q {
		if name != "format" {
			ps = append(ps, where{}.problem(name,
				fmt.Sprintf("query parameter %s is only read with a CSV body; with JSON, put defaults in \"defaults\" and rotation in \"rotate\"", name)))
		}
	}
	raw, ok := rawObject(body)
	if !ok {
		return nil, append(ps, problem{Message: "request body must be a JSON object {\"defaults\", \"students\", \"rotate\"}"})
	}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		switch name {
		case "defaults", "students", "rotate":
		default:
			ps = append(ps, where{}.problem(name, "unknown field "+name+"; a roster has defaults, students and rotate"))
		}
	}
	if d, ok := raw["defaults"]; ok && !isNull(d) {
		dr, ok := rawObject(d)
		dps := problems{where{}.problem("defaults", "defaults must be an object of key fields")}
		if ok {
			dps = in.parseDefaults(dr, in.defaultsAt)
		}
		in.defaultsBroken = len(dps) > 0
		ps = append(ps, dps...)
	}
	ps = append(ps, in.parseRotate(raw["rotate"])...)

	var list []json.RawMessage
	if s, ok := raw["students"]; !ok || json.Unmarshal(s, &list) != nil || len(list) == 0 {
		return in, append(ps, where{}.problem("students", "students is required and must be a non-empty list of {userId, name, ...} objects"))
	}
	for i, s := range list {
		at := where{label: fmt.Sprintf("students[%d]", i), prefix: fmt.Sprintf("students[%d].", i), index: &i}
		obj, ok := rawObject(s)
		if !ok {
			ps = append(ps, at.problem("", fmt.Sprintf("students[%d] must be an object {userId, name, ...}", i)))
			continue
		}
		st, sps := parseStudent(obj, at)
		ps = append(ps, sps...)
		in.students = append(in.students, st)
	}
	return in, ps
}

func isNull(m json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(m), []byte("null")) }

// parseDefaults reads a defaults object: key fields and "user".
func (in *rosterInput) parseDefaults(raw map[string]json.RawMessage, at where) problems {
	var ps problems
	if u, ok := raw["user"]; ok {
		delete(raw, "user")
		if !isNull(u) {
			ur, ok := rawObject(u)
			if !ok {
				ps = append(ps, at.problem("user", "user must be an object of user fields"))
			} else {
				ps = append(ps, decodeFields(ur, &in.userDefaults, rosterUserRefused, at, "user.")...)
			}
		}
	}
	return append(ps, decodeFields(raw, &in.defaults, rosterKeyRefused, at, "")...)
}

// parseRotate reads "rotate": true, false or a list of userIds.
func (in *rosterInput) parseRotate(m json.RawMessage) problems {
	if m == nil || isNull(m) {
		return nil
	}
	if err := json.Unmarshal(m, &in.rotateAll); err == nil {
		return nil
	}
	var ids []userIDValue
	if err := json.Unmarshal(m, &ids); err != nil {
		return problems{in.rotateAt.problem("", "rotate must be true, false or a list of userIds")}
	}
	for _, id := range ids {
		in.rotate = append(in.rotate, strings.TrimSpace(string(id)))
	}
	return nil
}

// parseStudent reads one student entry of a JSON roster.
func parseStudent(obj map[string]json.RawMessage, at where) (studentInput, problems) {
	st := studentInput{at: at}
	var sr studentRequest
	own := make(map[string]json.RawMessage, len(studentFields))
	for _, name := range studentFields {
		if v, ok := obj[name]; ok {
			own[name] = v
			delete(obj, name)
		}
	}
	var userRaw json.RawMessage
	if u, ok := own["user"]; ok {
		userRaw = u
		delete(own, "user")
	}
	if id, ok := own["userId"]; ok {
		var u userIDValue
		if json.Unmarshal(id, &u) == nil {
			st.at.userID = strings.TrimSpace(string(u))
		}
	}
	ps := decodeFields(own, &sr, nil, st.at, "")
	ps = append(ps, st.fill(sr.UserID, sr.Name, sr.Email)...)
	if sr.Rotate != nil {
		st.rotate = *sr.Rotate
	}
	if userRaw != nil && !isNull(userRaw) {
		if ur, ok := rawObject(userRaw); ok {
			ps = append(ps, decodeFields(ur, &st.user, rosterUserRefused, st.at, "user.")...)
		} else {
			ps = append(ps, st.at.problem("user", "user must be an object of user fields"))
		}
	}
	ps = append(ps, decodeFields(obj, &st.key, rosterKeyRefused, st.at, "")...)
	return st, firstPerField(ps)
}

// firstPerField keeps the first problem of each field: a userId of the wrong
// type is not also reported as missing.
func firstPerField(ps problems) problems {
	seen := map[string]bool{}
	out := ps[:0]
	for _, p := range ps {
		if !seen[p.Field] {
			seen[p.Field] = true
			out = append(out, p)
		}
	}
	return out
}

// fill checks and sets the student's userId, name and email.
func (st *studentInput) fill(id *userIDValue, name, email *string) problems {
	var ps problems
	if id == nil || strings.TrimSpace(string(*id)) == "" {
		ps = append(ps, st.at.problem("userId", "userId is required and must be "+ruleUserID))
	} else if st.userID = strings.TrimSpace(string(*id)); !validUserID(st.userID) {
		ps = append(ps, st.at.problem("userId", "userId must be "+ruleUserID))
	}
	st.at.userID = st.userID
	if err := validName("name", name); err != nil {
		p, _ := st.at.from(err, "")
		ps = append(ps, p)
	} else {
		st.name = strings.TrimSpace(*name)
	}
	if email != nil && strings.TrimSpace(*email) != "" {
		st.email = strings.TrimSpace(*email)
		if a, err := mail.ParseAddress(st.email); err != nil || a.Address != st.email || a.Name != "" || len(st.email) > 254 {
			ps = append(ps, st.at.problem("email", "email must be "+ruleEmail))
		}
	}
	return ps
}

// csvColumns maps the lower-case names of a roster CSV's columns to their
// canonical names, and those to the types their cells are read as.
func csvColumns() (canon map[string]string, types map[string]reflect.Type) {
	types = map[string]reflect.Type{
		"userId": reflect.TypeFor[string](), "name": reflect.TypeFor[string](),
		"email": reflect.TypeFor[string](), "rotate": reflect.TypeFor[bool](),
	}
	maps.Copy(types, fieldTypes(reflect.TypeFor[keyRequest](), rosterKeyRefused))
	for name, t := range fieldTypes(reflect.TypeFor[userRequest](), rosterUserRefused) {
		types["user."+name] = t
	}
	canon = make(map[string]string, len(types))
	for name := range types {
		canon[strings.ToLower(name)] = name
	}
	return canon, types
}

// parseRosterCSV reads a CSV roster, with defaults from the query.
func parseRosterCSV(body []byte, q url.Values) (*rosterInput, problems) {
	in := &rosterInput{defaultsAt: where{label: "defaults in the query"}, rotateAt: where{label: "query parameter rotate", prefix: "rotate"}}
	ps := in.parseQuery(q)
	in.defaultsBroken = len(ps) > 0

	body = bytes.TrimPrefix(body, []byte("\ufeff"))
	if !utf8.Valid(body) {
		bad := 0
		for bad < len(body) {
			r, size := utf8.DecodeRune(body[bad:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			bad += size
		}
		line := 1 + bytes.Count(body[:bad], []byte("\n"))
		return in, append(ps, problem{Line: line, Message: fmt.Sprintf("line %d: the CSV is not UTF-8; save it as \"CSV UTF-8\"", line)})
	}
	firstLine, _, _ := bytes.Cut(bytes.TrimLeft(body, "\r\n"), []byte("\n"))
	comma, listSep := ',', ";"
	if !bytes.ContainsRune(firstLine, ',') {
		switch {
		case bytes.ContainsRune(firstLine, ';'):
			comma, listSep = ';', ","
		case bytes.ContainsRune(firstLine, '\t'):
			comma = '\t'
		}
	}
	rd := csv.NewReader(bytes.NewReader(body))
	rd.Comma = comma
	rd.FieldsPerRecord = -1
	header, err := rd.Read()
	if err == io.EOF {
		return in, append(ps, problem{Message: "the CSV is empty; its first line must name the columns, at least userId,name"})
	}
	if err != nil {
		return in, append(ps, csvProblem(err))
	}
	headerLine, _ := rd.FieldPos(0)
	canon, types := csvColumns()
	// cols holds the canonical name of each column: "" for a column without
	// a name (it must stay empty), skipColumn for one already reported.
	cols := make([]string, len(header))
	colOf := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		name, ok := canon[strings.ToLower(h)]
		at := where{label: fmt.Sprintf("line %d", headerLine), line: headerLine, columns: map[string]int{h: i + 1, name: i + 1}}
		switch {
		case !ok:
			cols[i] = skipColumn
			ps = append(ps, at.problem(h, fmt.Sprintf("unknown column %q; columns are userId, name, email, rotate, key fields such as costLimitInUsdLifetime, and user fields such as user.costLimitInUsd", h)))
		case colOf[name] > 0:
			cols[i] = skipColumn
			ps = append(ps, at.problem(name, fmt.Sprintf("column %s appears twice (also column %d)", name, colOf[name])))
		default:
			cols[i] = name
			colOf[name] = i + 1
		}
	}
	for _, need := range []string{"userId", "name"} {
		if colOf[need] == 0 {
			ps = append(ps, problem{Line: headerLine, Field: need, Message: fmt.Sprintf("line %d: the header has no %s column; the first line must name the columns, at least userId,name", headerLine, need)})
		}
	}
	if colOf["userId"] == 0 || colOf["name"] == 0 {
		return in, ps
	}
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return in, append(ps, csvProblem(err))
		}
		line, _ := rd.FieldPos(0)
		if !slices.ContainsFunc(rec, func(c string) bool { return strings.TrimSpace(c) != "" }) {
			continue // a blank row (",,,")
		}
		st, sps := parseCSVRow(rec, cols, colOf, types, line, listSep)
		ps = append(ps, sps...)
		in.students = append(in.students, st)
	}
	if len(in.students) == 0 {
		ps = append(ps, problem{Message: "the CSV has no student rows below its header"})
	}
	return in, ps
}

// skipColumn marks a CSV column whose header was already reported.
const skipColumn = "\x00"

// csvProblem describes a CSV syntax error by line and column.
func csvProblem(err error) problem {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return problem{Line: pe.Line, Column: pe.Column, Message: fmt.Sprintf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)}
	}
	return problem{Message: "the CSV cannot be read: " + err.Error()}
}

// parseCSVRow reads one student row.
func parseCSVRow(rec, cols []string, colOf map[string]int, types map[string]reflect.Type, line int, listSep string) (studentInput, problems) {
	cell := func(name string) string {
		if c := colOf[name]; c > 0 && c <= len(rec) {
			return strings.TrimSpace(rec[c-1])
		}
		return ""
	}
	st := studentInput{at: where{label: fmt.Sprintf("line %d", line), line: line, columns: colOf}}
	st.at.userID = cell("userId")
	var ps problems
	if len(rec) != len(cols) {
		ps = append(ps, st.at.problem("", fmt.Sprintf("the row has %d fields but the header has %d", len(rec), len(cols))))
	}
	for i, c := range rec {
		if i < len(cols) && cols[i] == "" && strings.TrimSpace(c) != "" {
			p := st.at.problem("", fmt.Sprintf("column %d has a value but no name in the header", i+1))
			p.Column = i + 1
			ps = append(ps, p)
		}
	}
	var id *userIDValue
	if v := cell("userId"); v != "" {
		u := userIDValue(v)
		id = &u
	}
	name, email := cell("name"), cell("email")
	ps = append(ps, st.fill(id, &name, &email)...)
	if v := cell("rotate"); v != "" {
		if err := json.Unmarshal(cellJSON(types["rotate"], v, listSep), &st.rotate); err != nil {
			ps = append(ps, st.at.problem("rotate", "rotate must be true or false"))
		}
	}
	keyRaw, userRaw := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	for i, name := range cols {
		if name == "" || name == skipColumn || i >= len(rec) || slices.Contains([]string{"userId", "name", "email", "rotate"}, name) {
			continue
		}
		v := strings.TrimSpace(rec[i])
		if v == "" {
			continue
		}
		if u, ok := strings.CutPrefix(name, "user."); ok {
			userRaw[u] = cellJSON(types[name], v, listSep)
		} else {
			keyRaw[name] = cellJSON(types[name], v, listSep)
		}
	}
	ps = append(ps, decodeFields(userRaw, &st.user, rosterUserRefused, st.at, "user.")...)
	ps = append(ps, decodeFields(keyRaw, &st.key, rosterKeyRefused, st.at, "")...)
	return st, ps
}

// cellJSON writes a CSV cell or query value as the JSON a field of type t
// reads: lists are split on listSep, booleans may also be yes/no/1/0, and
// objects are JSON text. A value that cannot fit is passed on as a string,
// so that decoding it breaks the field's rule.
func cellJSON(t reflect.Type, v, listSep string) json.RawMessage {
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	switch t {
	case reflect.TypeFor[string](), reflect.TypeFor[money.Nanos]():
		return str(v)
	case reflect.TypeFor[[]string]():
		b, _ := json.Marshal(splitList(v, listSep))
		return b
	case reflect.TypeFor[bool]():
		switch strings.ToLower(v) {
		case "true", "yes", "y", "1":
			return json.RawMessage("true")
		case "false", "no", "n", "0":
			return json.RawMessage("false")
		}
		return str(v)
	case reflect.TypeFor[wholeNumber]():
		if _, err := strconv.ParseFloat(v, 64); err == nil && json.Valid([]byte(v)) {
			return json.RawMessage(v)
		}
		return str(v)
	case reflect.TypeFor[[]apikey.PathRule]():
		if strings.HasPrefix(v, "[") {
			return json.RawMessage(v)
		}
		var rules []apikey.PathRule
		for _, item := range splitList(v, listSep) {
			switch f := strings.Fields(item); len(f) {
			case 1:
				rules = append(rules, apikey.PathRule{Path: f[0]})
			case 2:
				rules = append(rules, apikey.PathRule{Method: f[0], Path: f[1]})
			default:
				return str(v)
			}
		}
		b, _ := json.Marshal(rules)
		return b
	}
	if json.Valid([]byte(v)) {
		return json.RawMessage(v)
	}
	return str(v)
}

// splitList splits v on any of the characters of seps, trimming and
// dropping empty items.
func splitList(v, seps string) []string {
	out := []string{}
	for _, s := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseQuery reads a CSV roster's defaults and rotation from the query.
func (in *rosterInput) parseQuery(q url.Values) problems {
	var ps problems
	if d := q.Get("defaults"); d != "" {
		if dr, ok := rawObject([]byte(d)); ok {
			ps = append(ps, in.parseDefaults(dr, in.defaultsAt)...)
		} else {
			ps = append(ps, where{label: "query parameter defaults"}.problem("defaults", "defaults must be a JSON object of key fields"))
		}
	}
	keyTypes := fieldTypes(reflect.TypeFor[keyRequest](), rosterKeyRefused)
	userTypes := fieldTypes(reflect.TypeFor[userRequest](), rosterUserRefused)
	keyRaw, userRaw := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	at := where{label: "query parameter"}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vals := q[name]
		switch name {
		case "format", "defaults":
			continue
		case "rotate":
			v := strings.Join(vals, ",")
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "true", "all", "yes", "1":
				in.rotateAll = true
			case "false", "no", "0", "":
			default:
				in.rotate = append(in.rotate, splitList(v, ",;")...)
			}
			continue
		}
		u, isUser := strings.CutPrefix(name, "user.")
		t, ok := keyTypes[name]
		if isUser {
			t, ok = userTypes[u]
		}
		if !ok {
			why, refused := rosterKeyRefused[name]
			if isUser {
				why, refused = rosterUserRefused[u]
			}
			if refused {
				ps = append(ps, at.problem(name, fmt.Sprintf("%s cannot be given here: %s", name, why)))
			} else {
				ps = append(ps, at.problem(name, fmt.Sprintf("unknown query parameter %s; defaults are key fields such as costLimitInUsdLifetime and user fields such as user.costLimitInUsd", name)))
			}
			continue
		}
		v := strings.Join(vals, ";")
		if t != reflect.TypeFor[[]string]() && t != reflect.TypeFor[[]apikey.PathRule]() && len(vals) > 1 {
			ps = append(ps, at.problem(name, fmt.Sprintf("query parameter %s is given %d times", name, len(vals))))
			continue
		}
		if isUser {
			userRaw[u] = cellJSON(t, strings.TrimSpace(v), ",;")
		} else {
			keyRaw[name] = cellJSON(t, strings.TrimSpace(v), ",;")
		}
	}
	var ud userRequest
	var kd keyRequest
	ps = append(ps, decodeFields(userRaw, &ud, rosterUserRefused, at, "user.")...)
	ps = append(ps, decodeFields(keyRaw, &kd, rosterKeyRefused, at, "")...)
	in.userDefaults = overlay(in.userDefaults, ud)
	in.defaults = overlay(in.defaults, kd)
	return ps
}

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
	out, err := c.h.validSettings(c.r, ids)
	c.seen[k] = settingsResult{out, err}
	return out, err
}

// validateRoster checks every student against the rules of POST
// /api/v1/secret-keys and POST /api/v1/users and builds what each gets. It
// returns every problem; an error is a storage failure.
func (h *Handler) validateRoster(r *http.Request, in *rosterInput, now time.Time) ([]rosterRow, problems, error) {
	var ps problems
	if len(in.students) > maxRosterStudents {
		ps = append(ps, where{}.problem("students", fmt.Sprintf("a roster has at most %d students; this one has %d: send it in parts", maxRosterStudents, len(in.students))))
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
	if _, err := h.retrievalMethodSealed(&in.defaults); err != nil {
		p, _ := in.defaultsAt.from(err, "")
		ps, defaultsOK = append(ps, p), false
	}
	var scratch apikey.Key
	if err := h.apply(&in.defaults, nil, &scratch, now); err != nil {
		var ae *apierror.Error
		if errors.As(err, &ae) && isSet(in.defaults, ae.Param) {
			p, _ := in.defaultsAt.from(err, "")
			ps, defaultsOK = append(ps, p), false
		}
	}
	var scratchUser user.User
	if err := applyUser(&in.userDefaults, &scratchUser, now); err != nil {
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
				ps = append(ps, st.at.problem("userId", fmt.Sprintf("userId %q is already on the roster at %s", st.userID, prev.label)))
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
			ps = append(ps, in.rotateAt.problem("", fmt.Sprintf("rotate names userId %q, who is not on the roster", id)))
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
func (h *Handler) buildRow(row *rosterRow, in *rosterInput, sc *settingsChecker, defaultSettings []string, now time.Time) (problems, error) {
	at := row.at
	var ps problems
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
		ps = append(ps, at.problem("providerSettingIds", "providerSettingIds is required: give it in the defaults or for this student"))
	}
	method, err := h.retrievalMethodSealed(&req)
	if err != nil {
		_ = add(err, "")
	}
	row.keyTemplate = apikey.Key{Tags: []string{}, CreatedAt: now.Unix(), UpdatedAt: now.Unix(), KeyRetrievalMethod: method}
	if err := h.apply(&req, settings, &row.keyTemplate, now); err != nil {
		_ = add(err, "")
	}
	row.keyTemplate.Tags = withTag(row.keyTemplate.Tags, RosterTag)
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
	if err := applyUser(&ureq, &row.userTemplate, now); err != nil {
		_ = add(err, "user.")
	}
	row.userTemplate.Tags = withTag(row.userTemplate.Tags, RosterTag)
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

// rosterEntry is one student in a roster's answer.
type rosterEntry struct {
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

// rosterSummary counts a roster's outcome.
type rosterSummary struct {
	Students     int `json:"students"`
	Created      int `json:"created"`
	Existing     int `json:"existing"`
	Rotated      int `json:"rotated"`
	Failed       int `json:"failed"`
	UsersCreated int `json:"usersCreated"`
}

// rosterResponse is the JSON answer to a roster, each list in roster order.
type rosterResponse struct {
	Summary  rosterSummary `json:"summary"`
	Created  []rosterEntry `json:"created"`
	Existing []rosterEntry `json:"existing"`
	Rotated  []rosterEntry `json:"rotated"`
	Failed   []rosterEntry `json:"failed"`
}

// createRoster serves POST /api/v1/secret-keys/bulk.
func (h *Handler) createRoster(w http.ResponseWriter, r *http.Request) error {
	return writeProblems(w, h.roster(w, r))
}

func (h *Handler) roster(w http.ResponseWriter, r *http.Request) error {
	asCSV, err := wantCSV(r)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, maxRosterBytes)
	if err != nil {
		return err
	}
	isCSV, err := csvBody(r, body)
	if err != nil {
		return err
	}
	var in *rosterInput
	var ps problems
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
		slices.SortStableFunc(ps, func(a, b problem) int { return cmp.Compare(a.row(), b.row()) })
		return ps
	}

	ctx := r.Context()
	start := time.Now()
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].userID
	}
	markers, err := h.cfg.Store.RosterKeys(ctx, ids)
	if err != nil {
		return storeError(err, "roster keys")
	}
	entries := make([]rosterEntry, len(rows))
	forEach(len(rows), bulkConcurrency, func(i int) {
		rk, found := markers[rows[i].userID]
		entries[i] = h.enrol(r, &rows[i], rk, found, now)
	})

	res := rosterResponse{Created: []rosterEntry{}, Existing: []rosterEntry{}, Rotated: []rosterEntry{}, Failed: []rosterEntry{}}
	res.Summary.Students = len(entries)
	for _, e := range entries {
		if e.UserCreated {
			res.Summary.UsersCreated++
		}
		switch e.status {
		case statusCreated:
			res.Created = append(res.Created, e)
		case statusExisting:
			res.Existing = append(res.Existing, e)
		case statusRotated:
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
			noteTargets(r, e.UserID, e.KeyID, e.RevokedKeyID, e.PreviousKeyID)
		}
		return writeRosterCSV(w, status, entries)
	}
	return writeJSON(w, status, res)
}

// enrol gives one student a roster key unless they have an active one (and
// are not rotated). rk is the student's marker as read before, if found.
// Losing a race to another roster call is not an error: the student is then
// "existing" with the key the other call made.
func (h *Handler) enrol(r *http.Request, row *rosterRow, rk dynamo.RosterKey, found bool, now time.Time) rosterEntry {
	ctx := r.Context()
	e := rosterEntry{UserID: row.userID, Name: row.name, Email: row.email}
	rotate, userReady := row.rotate, false
	var err error
	for range updateAttempts {
		active := found && rk.Key != nil && !rk.Key.Revoked && !rk.Key.Expired(now)
		if active && !rotate {
			e.status, e.KeyID = statusExisting, rk.KeyID
			return e
		}
		if !userReady {
			if e.UserCreated, err = h.ensureRosterUser(ctx, row); err != nil {
				break
			}
			userReady = true
		}
		k, plaintext := row.newKey()
		if err = h.sealKey(r, k, plaintext); err != nil {
			break
		}
		switch {
		case !found:
			err = h.cfg.Store.CreateRosterKey(ctx, k)
		case active: // rotate
			old := *rk.Key
			old.Revoked, old.RevokedReason, old.UpdatedAt = true, revokedRotated, now.Unix()
			err = h.cfg.Store.ReplaceRosterKey(ctx, rk.KeyID, &old, k)
		default: // the roster key was revoked, expired or lost: reissue
			err = h.cfg.Store.ReplaceRosterKey(ctx, rk.KeyID, nil, k)
		}
		if err == nil {
			e.KeyID, e.Key, e.status = k.ID, plaintext, statusCreated
			if active {
				e.status, e.RevokedKeyID = statusRotated, rk.KeyID
			} else if found {
				e.PreviousKeyID = rk.KeyID
			}
			h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "secret key created",
				slog.String("key", k.ID), slog.String("user", row.userID), slog.String("roster", e.status))
			return e
		}
		if !errors.Is(err, dynamo.ErrExists) && !errors.Is(err, dynamo.ErrConflict) {
			break
		}
		// Someone changed the marker (or the key to revoke) first: read it
		// again. When the marker moved, another roster call handled this
		// student, and its key stands: no second rotation.
		prev, wasFound := rk.KeyID, found
		var m map[string]dynamo.RosterKey
		if m, err = h.cfg.Store.RosterKeys(ctx, []string{row.userID}); err != nil {
			break
		}
		rk, found = m[row.userID]
		if found != wasFound || rk.KeyID != prev {
			rotate = false
		}
	}
	h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "roster student failed",
		slog.String("user", row.userID), slog.String("cause", fmt.Sprint(err)))
	e.status, e.KeyID, e.Key = statusFailed, "", ""
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		ae = apierror.From(storeError(err, "roster key of user "+row.userID))
	}
	e.Error = ae.Message
	return e
}

// ensureRosterUser creates the row's user unless that userId exists; it reports
// whether it created it. An existing user is left as it is.
func (h *Handler) ensureRosterUser(ctx context.Context, row *rosterRow) (bool, error) {
	u := row.userTemplate
	u.ID = apikey.NewID()
	u.Tags = slices.Clone(row.userTemplate.Tags)
	err := h.cfg.Store.CreateUser(ctx, &u)
	if errors.Is(err, dynamo.ErrExists) {
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
		return false, mustBe("format", "csv or json")
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
func writeRosterCSV(w http.ResponseWriter, status int, entries []rosterEntry) error {
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

// keyResult is one key in a bulk update's or revoke's answer.
type keyResult struct {
	KeyID  string `json:"keyId"`
	UserID string `json:"userId,omitempty"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// userResult is one user in a bulk update's answer.
type userResult struct {
	UserID string `json:"userId"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// bulkUpdateResponse answers POST /api/v1/secret-keys/bulk-update.
type bulkUpdateResponse struct {
	Matched      int          `json:"matched"`
	Updated      int          `json:"updated"`
	Skipped      int          `json:"skipped"`
	Failed       int          `json:"failed"`
	Keys         []keyResult  `json:"keys"`
	UsersUpdated int          `json:"usersUpdated"`
	UsersFailed  int          `json:"usersFailed"`
	Users        []userResult `json:"users"`
}

// bulkRevokeResponse answers POST /api/v1/secret-keys/bulk-revoke.
type bulkRevokeResponse struct {
	Matched        int         `json:"matched"`
	Revoked        int         `json:"revoked"`
	AlreadyRevoked int         `json:"alreadyRevoked"`
	Failed         int         `json:"failed"`
	Keys           []keyResult `json:"keys"`
}

// target is a resolved selector.
type target struct {
	keys    []*apikey.Key
	userIDs []string              // the selector's userIds, when it had them
	users   map[string]*user.User // every user, when userIds were checked
}

// resolve returns the keys sel names, checking that named users and keys
// exist.
func (h *Handler) resolve(ctx context.Context, sel selector) (*target, problems, error) {
	at := where{}
	n := 0
	for _, set := range []bool{sel.UserIDs != nil, sel.KeyIDs != nil, sel.Tag != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, problems{at.problem("userIds", "give exactly one of userIds, keyIds or tag to select the keys")}, nil
	}
	t := &target{}
	var ps problems
	switch {
	case sel.Tag != nil:
		tag := strings.TrimSpace(*sel.Tag)
		if tag == "" {
			return nil, problems{at.problem("tag", "tag must be a non-empty string")}, nil
		}
		all, err := h.cfg.Store.ListKeys(ctx)
		if err != nil {
			return nil, nil, storeError(err, "secret keys")
		}
		for _, k := range all {
			if slices.Contains(k.Tags, tag) {
				t.keys = append(t.keys, k)
			}
		}
	case sel.KeyIDs != nil:
		ids := dedupe(*sel.KeyIDs)
		if len(ids) == 0 {
			return nil, problems{at.problem("keyIds", "keyIds must be a non-empty list of secret key ids")}, nil
		}
		keys := make([]*apikey.Key, len(ids))
		errs := make([]error, len(ids))
		forEach(len(ids), bulkConcurrency, func(i int) { keys[i], errs[i] = h.cfg.Store.GetKey(ctx, ids[i]) })
		for i, err := range errs {
			var nf interface{ NotFound() bool }
			switch {
			case err == nil:
				t.keys = append(t.keys, keys[i])
			case errors.As(err, &nf) && nf.NotFound():
				ps = append(ps, where{label: fmt.Sprintf("keyIds[%d]", i), prefix: fmt.Sprintf("keyIds[%d]", i), keyID: ids[i]}.problem("", fmt.Sprintf("secret key %q does not exist", ids[i])))
			default:
				return nil, nil, storeError(err, "secret key "+ids[i])
			}
		}
	default:
		t.userIDs = dedupe(*sel.UserIDs)
		if len(t.userIDs) == 0 {
			return nil, problems{at.problem("userIds", "userIds must be a non-empty list of userIds")}, nil
		}
		users, err := h.cfg.Store.ListUsers(ctx)
		if err != nil {
			return nil, nil, storeError(err, "users")
		}
		t.users = make(map[string]*user.User, len(users))
		for _, u := range users {
			t.users[u.UserID] = u
		}
		want := make(map[string]bool, len(t.userIDs))
		for i, id := range t.userIDs {
			want[id] = true
			if t.users[id] == nil {
				ps = append(ps, where{label: fmt.Sprintf("userIds[%d]", i), prefix: fmt.Sprintf("userIds[%d]", i), userID: id}.problem("", fmt.Sprintf("user %q does not exist", id)))
			}
		}
		all, err := h.cfg.Store.ListKeys(ctx)
		if err != nil {
			return nil, nil, storeError(err, "secret keys")
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

// bulkUpdate serves POST /api/v1/secret-keys/bulk-update.
func (h *Handler) bulkUpdate(w http.ResponseWriter, r *http.Request) error {
	return writeProblems(w, h.doBulkUpdate(w, r))
}

func (h *Handler) doBulkUpdate(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	raw, ok := rawObject(body)
	if !ok {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body must be a JSON object {userIds|keyIds|tag, set}")
	}
	var req bulkUpdateRequest
	ps := decodeFields(raw, &req, nil, where{}, "")
	setAt := where{label: "set", prefix: "set."}
	var kreq keyRequest
	var ureq userRequest
	if req.Set == nil {
		if _, given := raw["set"]; !given || isNull(raw["set"]) {
			ps = append(ps, where{}.problem("set", "set is required: an object of the secret key fields to change"))
		}
	} else {
		set := maps.Clone(*req.Set)
		if u, ok := set["user"]; ok {
			delete(set, "user")
			if ur, ok := rawObject(u); ok {
				ps = append(ps, decodeFields(ur, &ureq, updateUserRefused, setAt, "user.")...)
			} else if !isNull(u) {
				ps = append(ps, setAt.problem("user", "user must be an object of user fields"))
			}
		}
		ps = append(ps, decodeFields(set, &kreq, updateKeyRefused, setAt, "")...)
		if len(ps) == 0 && reflect.ValueOf(kreq).IsZero() && reflect.ValueOf(ureq).IsZero() {
			ps = append(ps, where{}.problem("set", "set names no field to change"))
		}
	}
	var settings []string
	if kreq.ProviderSettingIDs != nil {
		if settings, err = h.validSettings(r, *kreq.ProviderSettingIDs); err != nil {
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
	if err := h.apply(&kreq, nil, &scratch, now); err != nil {
		if ae := (*apierror.Error)(nil); errors.As(err, &ae) && isSet(kreq, ae.Param) {
			p, _ := setAt.from(err, "")
			ps = append(ps, p)
		}
	}
	var scratchUser user.User
	if err := applyUser(&ureq, &scratchUser, now); err != nil {
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
		if err := h.apply(&kreq, settings, c, now); err != nil {
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
			if err := applyUser(&ureq, &c, now); err != nil {
				p, _ := where{label: "user " + u.UserID, prefix: "set.", userID: u.UserID}.from(err, "user.")
				ps = append(ps, p)
			}
		}
	}
	if len(ps) > 0 {
		return ps
	}

	res := bulkUpdateResponse{Matched: len(t.keys), Keys: make([]keyResult, len(t.keys)), Users: make([]userResult, len(users))}
	forEach(len(t.keys), bulkConcurrency, func(i int) {
		k := t.keys[i]
		if !keyChange {
			res.Keys[i] = keyResult{KeyID: k.ID, UserID: k.UserID, Name: k.Name, Status: statusSkipped}
			return
		}
		res.Keys[i] = h.updateOne(ctx, k, func(k *apikey.Key) (string, error) {
			if k.Revoked && !includeRevoked {
				return statusSkipped, nil
			}
			if err := h.apply(&kreq, settings, k, now); err != nil {
				return "", err
			}
			return statusUpdated, nil
		})
	})
	forEach(len(users), bulkConcurrency, func(i int) { res.Users[i] = h.updateUserOne(ctx, users[i], &ureq, now) })
	for _, k := range res.Keys {
		switch k.Status {
		case statusUpdated:
			res.Updated++
		case statusSkipped:
			res.Skipped++
		default:
			res.Failed++
		}
	}
	for _, u := range res.Users {
		if u.Status == statusUpdated {
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
func cmpErr(err error, ps problems) error {
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
		list, err := h.cfg.Store.ListUsers(ctx)
		if err != nil {
			return nil, storeError(err, "users")
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
func (h *Handler) updateOne(ctx context.Context, k *apikey.Key, change func(*apikey.Key) (string, error)) keyResult {
	res := keyResult{KeyID: k.ID, UserID: k.UserID, Name: k.Name}
	first := true
	get := func(ctx context.Context) (*apikey.Key, error) {
		if first { // the key as listed; a retry reads it again
			first = false
			return copyKey(k), nil
		}
		return h.cfg.Store.GetKey(ctx, k.ID)
	}
	var status string
	cur, err := update(ctx, "secret key "+k.ID, get, func(cur *apikey.Key) error {
		var err error
		if status, err = change(cur); err != nil {
			return err
		}
		if status != statusUpdated && status != statusRevoked {
			return errNoWrite
		}
		cur.UpdatedAt = h.cfg.Now().Unix()
		return nil
	}, h.cfg.Store.UpdateKey)
	if err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "bulk key update failed", slog.String("key", k.ID), slog.String("cause", err.Error()))
		res.Status, res.Error = statusFailed, apierror.From(err).Message
		return res
	}
	res.Status = status
	if status == statusUpdated || status == statusRevoked {
		h.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "secret key updated",
			slog.String("key", cur.ID), slog.Bool("revoked", cur.Revoked), slog.Bool("bulk", true))
	}
	return res
}

// updateUserOne applies req to user u and stores it, retrying on conflicts.
func (h *Handler) updateUserOne(ctx context.Context, u *user.User, req *userRequest, now time.Time) userResult {
	res := userResult{UserID: u.UserID}
	first := true
	get := func(ctx context.Context) (*user.User, error) {
		if first { // the user as listed; a retry reads it again
			first = false
			cur := *u
			return &cur, nil
		}
		return h.cfg.Store.GetUser(ctx, u.UserID)
	}
	_, err := update(ctx, "user "+u.UserID, get, func(cur *user.User) error {
		if err := applyUser(req, cur, now); err != nil {
			return err
		}
		cur.UpdatedAt = h.cfg.Now().Unix()
		return nil
	}, h.cfg.Store.UpdateUser)
	if err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "bulk user update failed", slog.String("user", u.UserID), slog.String("cause", err.Error()))
		res.Status, res.Error = statusFailed, apierror.From(err).Message
		return res
	}
	res.Status = statusUpdated
	return res
}

// bulkRevoke serves POST /api/v1/secret-keys/bulk-revoke.
func (h *Handler) bulkRevoke(w http.ResponseWriter, r *http.Request) error {
	return writeProblems(w, h.doBulkRevoke(w, r))
}

func (h *Handler) doBulkRevoke(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return err
	}
	raw, ok := rawObject(body)
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
			return problems{where{}.problem("reason", "reason must be at most 256 characters")}
		}
	}
	t, ps, err := h.resolve(ctx, selector{UserIDs: req.UserIDs, KeyIDs: req.KeyIDs, Tag: req.Tag})
	if err != nil || len(ps) > 0 {
		return cmpErr(err, ps)
	}
	res := bulkRevokeResponse{Matched: len(t.keys), Keys: make([]keyResult, len(t.keys))}
	forEach(len(t.keys), bulkConcurrency, func(i int) {
		res.Keys[i] = h.updateOne(ctx, t.keys[i], func(k *apikey.Key) (string, error) {
			if k.Revoked {
				return statusAlreadyRevoked, nil
			}
			k.Revoked, k.RevokedReason = true, reason
			return statusRevoked, nil
		})
	})
	for _, k := range res.Keys {
		switch k.Status {
		case statusRevoked:
			res.Revoked++
		case statusAlreadyRevoked:
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
		return writeJSON(w, http.StatusOK, v)
	case done == 0:
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"no key could be changed (storage unavailable, or keys changed concurrently); nothing was changed, try again later")
	default:
		return writeJSON(w, http.StatusMultiStatus, v)
	}
}
