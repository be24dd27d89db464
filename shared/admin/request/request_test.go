package request

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apierror"
)

type sample struct {
	Name  *string      `json:"name" rule:"a string"`
	Count *WholeNumber `json:"count" rule:"an integer"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		body, wantParam, wantMsg string
		status                   int
	}{
		{body: `{"name":"a","count":2}`},
		{body: `{"name":null}`},
		{body: `{"count":1e3}`},
		{body: `[1]`, status: 400, wantMsg: "must be a JSON object"},
		{body: `{"nmae":"a","zz":1}`, status: 400, wantParam: "nmae", wantMsg: `unknown fields "nmae", "zz"`},
		{body: `{"count":"2"}`, status: 400, wantParam: "count", wantMsg: "count must be an integer"},
		{body: `{"count":1.5,"oops":1}`, status: 400, wantParam: "oops", wantMsg: `unknown field "oops"`},
		{body: `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, status: 413, wantMsg: "larger than"},
	} {
		t.Run(tc.body[:min(len(tc.body), 30)], func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			var dst sample
			err := Decode(httptest.NewRecorder(), r, &dst)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("Decode = %v", err)
				}
				return
			}
			var ae *apierror.Error
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Param != tc.wantParam || !strings.Contains(ae.Message, tc.wantMsg) {
				t.Fatalf("Decode = %#v, want %d param %q message containing %q", err, tc.status, tc.wantParam, tc.wantMsg)
			}
		})
	}
}

func TestFields(t *testing.T) {
	raw := map[string]json.RawMessage{"name": json.RawMessage(`"a"`), "count": json.RawMessage(`"x"`), "b": nil, "a": nil}
	var dst sample
	bad, unknown := Fields(raw, &dst, map[string]string{"name": "no names here"})
	want := []FieldError{{Name: "name", Refused: "no names here"}, {Name: "count", Rule: "an integer"}}
	if !slices.Equal(bad, want) || !slices.Equal(unknown, []string{"a", "b"}) {
		t.Fatalf("Fields = %v, %v; want %v, [a b]", bad, unknown, want)
	}
	if dst.Name != nil || dst.Count != nil {
		t.Fatalf("refused or mistyped fields were set: %+v", dst)
	}
}
