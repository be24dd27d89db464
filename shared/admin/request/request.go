// Package request reads admin API request bodies: the one body reader with
// its size limit, and the one decoder that turns a JSON object into a struct
// of pointer fields, refusing unknown and mistyped fields by name.
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/stipend/stipend/shared/apierror"
)

// MaxBodyBytes bounds request bodies; DynamoDB items are at most 400 KB.
const MaxBodyBytes = 256 << 10

// MaxUnixTime is the latest time a request may give, in seconds since the
// epoch: 9999-12-31T23:59:59Z.
const MaxUnixTime = 253402300799

// Read reads r's body, of at most limit bytes: a larger one is a 413, a
// failed read a 400.
func Read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
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

// Invalid is a 400 naming the offending field.
func Invalid(param, format string, args ...any) error {
	return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, fmt.Sprintf(format, args...)).WithParam(param)
}

// MustBe is the 400 for a field that breaks its rule: "<field> must be <rule>".
func MustBe(field, rule string) error { return Invalid(field, "%s must be %s", field, rule) }

// Object decodes b, which must be a JSON object, into its raw fields.
func Object(b []byte) (map[string]json.RawMessage, bool) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, false
	}
	return raw, true
}

// IsNull reports whether m is JSON null.
func IsNull(m json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(m), []byte("null")) }

// Decode reads the request body (at most MaxBodyBytes), a JSON object, into
// dst: a pointer to a struct whose fields are all pointers tagged
// `json:"<name>"` and `rule:"<what the value must be>"`. A field absent from
// the body (or null) stays nil, so an update can tell "absent" from "zero";
// a value of the wrong type is a 400 naming the field and its rule. A field
// dst does not know is a 400 naming it: a typo (costLimitInUsdLifetme) must
// never pass silently and leave a key without the limit its author meant.
func Decode(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := Read(w, r, MaxBodyBytes)
	if err != nil {
		return err
	}
	return DecodeBytes(body, dst)
}

// DecodeOptional is Decode for a body that may be absent: an empty body
// leaves dst as it is.
func DecodeOptional(w http.ResponseWriter, r *http.Request, dst any) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	body, err := Read(w, r, MaxBodyBytes)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return DecodeBytes(body, dst)
}

// DecodeBytes is Decode of a body already read.
func DecodeBytes(body []byte, dst any) error {
	raw, ok := Object(body)
	if !ok {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body must be a JSON object")
	}
	bad, unknown := Fields(raw, dst, nil)
	if len(unknown) > 0 {
		return unknownFields(unknown)
	}
	if len(bad) > 0 {
		return MustBe(bad[0].Name, bad[0].Rule)
	}
	return nil
}

// A FieldError is a field of a body that dst cannot take: its value has the
// wrong type (Rule says what it must be), or it is refused (Refused says why).
type FieldError struct {
	Name    string
	Rule    string
	Refused string
}

// Fields decodes the fields of raw named by dst's json tags into dst, a
// pointer to a struct of pointer fields tagged `json` and `rule` (as Decode:
// null is absent). It returns every field it could not take, in dst's field
// order: those listed in refused (name to the reason) and values of the
// wrong type; and the names of raw that dst does not know, sorted.
func Fields(raw map[string]json.RawMessage, dst any, refused map[string]string) (bad []FieldError, unknown []string) {
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	known := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		known[name] = true
		msg, ok := raw[name]
		if !ok || IsNull(msg) {
			continue
		}
		if why, no := refused[name]; no {
			bad = append(bad, FieldError{Name: name, Refused: why})
			continue
		}
		p := reflect.New(f.Type.Elem())
		if err := json.Unmarshal(msg, p.Interface()); err != nil {
			bad = append(bad, FieldError{Name: name, Rule: f.Tag.Get("rule")})
			continue
		}
		v.Field(i).Set(p)
	}
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	return bad, unknown
}

// unknownFields is the 400 for names (sorted), naming every one and pointing
// param at the first.
func unknownFields(names []string) error {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	what := "unknown field " + quoted[0]
	if len(names) > 1 {
		what = "unknown fields " + strings.Join(quoted, ", ")
	}
	return Invalid(names[0], "%s: this route does not take it (check the spelling; the README lists each route's fields)", what)
}

// FieldTypes maps the json names of struct type t's fields (pointers) to
// the types they point to, minus those in refused.
func FieldTypes(t reflect.Type, refused map[string]string) map[string]reflect.Type {
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

// WholeNumber is a JSON integer; integral values written as floats (10.0,
// 1e3) are accepted, since some clients send every number as a float.
type WholeNumber int64

// UnmarshalJSON reads a whole number, refusing strings and fractions.
func (n *WholeNumber) UnmarshalJSON(b []byte) error {
	var num json.Number
	if len(b) > 0 && b[0] == '"' {
		return errors.New("a string is not an integer")
	}
	if err := json.Unmarshal(b, &num); err != nil {
		return err
	}
	if i, err := num.Int64(); err == nil {
		*n = WholeNumber(i)
		return nil
	}
	f, err := num.Float64()
	if err != nil || f > 1<<53 || f < -(1<<53) || f != float64(int64(f)) {
		return fmt.Errorf("%s is not an integer", num)
	}
	*n = WholeNumber(int64(f))
	return nil
}
