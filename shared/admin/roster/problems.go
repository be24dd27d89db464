package roster

// The problems of a bulk request: each located (students[3], CSV line and
// column, key id) so one 400 can list them all.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
)

// ---- problems ----

// Problem is one thing wrong with a bulk request.
type Problem struct {
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
func (p Problem) row() int {
	if p.Index != nil {
		return *p.Index + 1
	}
	return p.Line
}

// Problems is everything wrong with a bulk request; writeProblems answers
// it with one 400 listing them all.
type Problems []Problem

func (ps Problems) Error() string {
	msgs := make([]string, 0, len(ps))
	for _, p := range ps {
		msgs = append(msgs, p.Message)
	}
	return fmt.Sprintf("%d Problems: %s", len(ps), strings.Join(msgs, "; "))
}

// writeProblems answers a Problems error with a 400: the error body of every
// route (message quoting the first problems, param naming the first field)
// plus "errors" listing all of them. Any other error is returned as is, for
// admin.Handler.handle.
func writeProblems(w http.ResponseWriter, err error) error {
	var ps Problems
	if !errors.As(err, &ps) || len(ps) == 0 {
		return err
	}
	msgs := make([]string, 0, problemsInMessage)
	for _, p := range ps[:min(len(ps), problemsInMessage)] {
		msgs = append(msgs, p.Message)
	}
	msg := fmt.Sprintf("%d Problems, nothing was changed: %s", len(ps), strings.Join(msgs, "; "))
	if len(ps) == 1 {
		msg = "nothing was changed: " + msgs[0]
	}
	if len(ps) > problemsInMessage {
		msg += fmt.Sprintf("; and %d more, listed in errors", len(ps)-problemsInMessage)
	}
	e := apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, msg)
	var body struct {
		apierror.Body
		Errors Problems `json:"errors"`
	}
	body.Error.Message, body.Error.Type, body.Error.Code = e.Message, e.Type, e.Code
	if param := ps[0].Field; param != "" {
		body.Error.Param = &param
	}
	body.Errors = ps
	return response.JSON(w, http.StatusBadRequest, body)
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
func (w where) Problem(field, msg string) Problem {
	p := Problem{Field: w.prefix + field, Line: w.line, Index: w.index, UserID: w.userID, KeyID: w.keyID}
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
func (w where) from(err error, sub string) (Problem, error) {
	var ae *apierror.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return Problem{}, err
	}
	msg := ae.Message
	if sub != "" && ae.Param != "" && strings.HasPrefix(msg, ae.Param) {
		msg = sub + msg
	}
	field := ae.Param
	if field != "" {
		field = sub + field
	}
	return w.Problem(field, msg), nil
}

// ---- decoding ----

// decodeFields decodes raw into dst with request.Fields and returns every
// field it could not take as a problem at at: refused fields (with the
// reason), values of the wrong type (with the field's rule) and unknown
// names. sub prefixes the field names ("user.").
func decodeFields(raw map[string]json.RawMessage, dst any, refused map[string]string, at where, sub string) Problems {
	var ps Problems
	bad, unknown := request.Fields(raw, dst, refused)
	for _, f := range bad {
		if f.Refused != "" {
			ps = append(ps, at.Problem(sub+f.Name, fmt.Sprintf("%s%s cannot be given here: %s", sub, f.Name, f.Refused)))
		} else {
			ps = append(ps, at.Problem(sub+f.Name, fmt.Sprintf("%s%s must be %s", sub, f.Name, f.Rule)))
		}
	}
	for _, name := range unknown {
		ps = append(ps, at.Problem(sub+name, fmt.Sprintf("unknown field %s%s", sub, name)))
	}
	return ps
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
