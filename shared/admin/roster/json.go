package roster

// Reading a JSON roster (POST /api/v1/secret-keys/bulk): defaults,
// students and rotate, every problem collected.

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/mail"
	"net/url"
	"slices"
	"strings"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/request"
)

// ---- roster input ----

// rosterInput is a parsed roster, before validation.
type rosterInput struct {
	defaults     form.KeyRequest
	userDefaults form.UserRequest
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
	key                 form.KeyRequest
	user                form.UserRequest
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
func parseRosterJSON(body []byte, q url.Values) (*rosterInput, Problems) {
	in := &rosterInput{defaultsAt: where{label: "defaults", prefix: "defaults."}, rotateAt: where{label: "rotate", prefix: "rotate"}}
	var ps Problems
	for name := range q {
		if name != "format" {
			ps = append(ps, where{}.Problem(name,
				fmt.Sprintf("query parameter %s is only read with a CSV body; with JSON, put defaults in \"defaults\" and rotation in \"rotate\"", name)))
		}
	}
	raw, ok := request.Object(body)
	if !ok {
		return nil, append(ps, Problem{Message: "request body must be a JSON object {\"defaults\", \"students\", \"rotate\"}"})
	}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		switch name {
		case "defaults", "students", "rotate":
		default:
			ps = append(ps, where{}.Problem(name, "unknown field "+name+"; a roster has defaults, students and rotate"))
		}
	}
	if d, ok := raw["defaults"]; ok && !request.IsNull(d) {
		dr, ok := request.Object(d)
		dps := Problems{where{}.Problem("defaults", "defaults must be an object of key fields")}
		if ok {
			dps = in.parseDefaults(dr, in.defaultsAt)
		}
		in.defaultsBroken = len(dps) > 0
		ps = append(ps, dps...)
	}
	ps = append(ps, in.parseRotate(raw["rotate"])...)

	var list []json.RawMessage
	if s, ok := raw["students"]; !ok || json.Unmarshal(s, &list) != nil || len(list) == 0 {
		return in, append(ps, where{}.Problem("students", "students is required and must be a non-empty list of {userId, name, ...} objects"))
	}
	for i, s := range list {
		at := where{label: fmt.Sprintf("students[%d]", i), prefix: fmt.Sprintf("students[%d].", i), index: &i}
		obj, ok := request.Object(s)
		if !ok {
			ps = append(ps, at.Problem("", fmt.Sprintf("students[%d] must be an object {userId, name, ...}", i)))
			continue
		}
		st, sps := parseStudent(obj, at)
		ps = append(ps, sps...)
		in.students = append(in.students, st)
	}
	return in, ps
}

// parseDefaults reads a defaults object: key fields and "user".
func (in *rosterInput) parseDefaults(raw map[string]json.RawMessage, at where) Problems {
	var ps Problems
	if u, ok := raw["user"]; ok {
		delete(raw, "user")
		if !request.IsNull(u) {
			ur, ok := request.Object(u)
			if !ok {
				ps = append(ps, at.Problem("user", "user must be an object of user fields"))
			} else {
				ps = append(ps, decodeFields(ur, &in.userDefaults, rosterUserRefused, at, "user.")...)
			}
		}
	}
	return append(ps, decodeFields(raw, &in.defaults, rosterKeyRefused, at, "")...)
}

// parseRotate reads "rotate": true, false or a list of userIds.
func (in *rosterInput) parseRotate(m json.RawMessage) Problems {
	if m == nil || request.IsNull(m) {
		return nil
	}
	if err := json.Unmarshal(m, &in.rotateAll); err == nil {
		return nil
	}
	var ids []userIDValue
	if err := json.Unmarshal(m, &ids); err != nil {
		return Problems{in.rotateAt.Problem("", "rotate must be true, false or a list of userIds")}
	}
	for _, id := range ids {
		in.rotate = append(in.rotate, strings.TrimSpace(string(id)))
	}
	return nil
}

// parseStudent reads one student entry of a JSON roster.
func parseStudent(obj map[string]json.RawMessage, at where) (studentInput, Problems) {
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
	if userRaw != nil && !request.IsNull(userRaw) {
		if ur, ok := request.Object(userRaw); ok {
			ps = append(ps, decodeFields(ur, &st.user, rosterUserRefused, st.at, "user.")...)
		} else {
			ps = append(ps, st.at.Problem("user", "user must be an object of user fields"))
		}
	}
	ps = append(ps, decodeFields(obj, &st.key, rosterKeyRefused, st.at, "")...)
	return st, firstPerField(ps)
}

// firstPerField keeps the first problem of each field: a userId of the wrong
// type is not also reported as missing.
func firstPerField(ps Problems) Problems {
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
func (st *studentInput) fill(id *userIDValue, name, email *string) Problems {
	var ps Problems
	if id == nil || strings.TrimSpace(string(*id)) == "" {
		ps = append(ps, st.at.Problem("userId", "userId is required and must be "+form.RuleUserID))
	} else if st.userID = strings.TrimSpace(string(*id)); !form.ValidUserID(st.userID) {
		ps = append(ps, st.at.Problem("userId", "userId must be "+form.RuleUserID))
	}
	st.at.userID = st.userID
	if err := form.ValidName("name", name); err != nil {
		p, _ := st.at.from(err, "")
		ps = append(ps, p)
	} else {
		st.name = strings.TrimSpace(*name)
	}
	if email != nil && strings.TrimSpace(*email) != "" {
		st.email = strings.TrimSpace(*email)
		if a, err := mail.ParseAddress(st.email); err != nil || a.Address != st.email || a.Name != "" || len(st.email) > 254 {
			ps = append(ps, st.at.Problem("email", "email must be "+ruleEmail))
		}
	}
	return ps
}
