package roster

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
)

// FuzzRosterCSV: parseRosterCSV never panics; every problem has a message
// and points inside the body; and a roster it accepts, written out again as
// CSV (any column order, the list separator it allows), reads back as the
// same students with the same key and user fields.
func FuzzRosterCSV(f *testing.F) {
	for _, s := range []struct{ body, query string }{
		{"userId,name\ns1,Ada\n", ""},
		{"\ufeffuserId,name,email,rotate\r\ns1,Ada,ada@example.edu,yes\r\n", ""},
		{"UserID;Name;tags;costLimitInUsdLifetime\ns1;\"Ada; L\";a,b;1.5\n", ""},
		{"userId\tname\tallowedModels\ns1\tAda\tgpt-4o-mini;gpt-4o\n", "providerSettingIds=p1"},
		{"userId,name,metadata,modelLimits,allowedPaths\ns1,Ada,\"{\"\"k\"\":1}\",\"{\"\"gpt-4o\"\":{\"\"rpm\"\":2}}\",POST /v1/chat/completions\n", ""},
		{"userId,name,user.costLimitInUsd,user.tags,rateLimitOverTime,rateLimitUnit\n42,Bo,5,x;y,10,m\n,,,,,\n", "user.costLimitInUsd=1&rotate=42"},
		{"userId,name,,\ns1,Ada,x,\n", ""},
		{"userId,name\n\"s1,Ada\n", ""},
		{"userId,name,userId\ns1,Ada,s2\n", ""},
		{"userid,NAME,lowerMaxTokens,shouldLogRequest,moderation\ns1,Ada,1,no,true\n", "defaults=%7B%22ttl%22%3A%221h%22%7D"},
		{"userId,name\ns1,Ada\xff\n", ""},
		{"", ""},
		{"userId,name,costLimitInUsdPerMonth\ns1,Ada,1e-3\ns2,=cmd(),-0\n", ""},
	} {
		f.Add([]byte(s.body), s.query)
	}
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			q = url.Values{}
		}
		in, ps := parseRosterCSV(body, q)
		lines := 1 + bytes.Count(body, []byte("\n"))
		for _, p := range ps {
			if p.Message == "" {
				t.Fatalf("Problem without a message: %+v", p)
			}
			if p.Line < 0 || p.Line > lines {
				t.Fatalf("Problem on line %d of a %d-line body: %+v", p.Line, lines, p)
			}
		}
		if len(ps) > 0 || in == nil || len(in.students) == 0 {
			return
		}
		again, ps := parseRosterCSV(reencodeRoster(t, in.students), q)
		if len(ps) > 0 {
			t.Fatalf("the re-encoded roster is refused: %+v\noriginal: %q", ps, body)
		}
		if len(again.students) != len(in.students) {
			t.Fatalf("%d students, re-read as %d", len(in.students), len(again.students))
		}
		for i, a := range in.students {
			b := again.students[i]
			ak, _ := json.Marshal(a.key)
			bk, _ := json.Marshal(b.key)
			au, _ := json.Marshal(a.user)
			bu, _ := json.Marshal(b.user)
			if a.userID != b.userID || a.name != b.name || a.email != b.email || a.rotate != b.rotate ||
				string(ak) != string(bk) || string(au) != string(bu) {
				t.Fatalf("student %d: %q %q %q %v %s %s\nre-read as %q %q %q %v %s %s",
					i, a.userID, a.name, a.email, a.rotate, ak, au, b.userID, b.name, b.email, b.rotate, bk, bu)
			}
		}
	})
}

// reencodeRoster writes students as a roster CSV: ',' between columns and
// ';' between list items, or the other way round when an item holds a ';'.
func reencodeRoster(t *testing.T, students []studentInput) []byte {
	t.Helper()
	comma, listSep := ',', ";"
	header := []string{"userId", "name", "email", "rotate"}
	seen := map[string]bool{}
	type cellFn func(st *studentInput) (string, bool)
	var cells []cellFn
	for _, st := range students {
		for prefix, v := range map[string]reflect.Value{"": reflect.ValueOf(st.key), "user.": reflect.ValueOf(st.user)} {
			for i := range v.NumField() {
				if v.Field(i).IsNil() {
					continue
				}
				if s, ok := v.Field(i).Elem().Interface().([]string); ok && strings.Contains(strings.Join(s, ""), ";") {
					comma, listSep = ';', ","
				}
				name := prefix + strings.Split(v.Type().Field(i).Tag.Get("json"), ",")[0]
				if seen[name] {
					continue
				}
				seen[name] = true
				header = append(header, name)
				user, idx := prefix != "", i
				cells = append(cells, func(st *studentInput) (string, bool) {
					fv := reflect.ValueOf(st.key)
					if user {
						fv = reflect.ValueOf(st.user)
					}
					if fv.Field(idx).IsNil() {
						return "", true
					}
					return cellText(fv.Field(idx).Elem().Interface(), listSep)
				})
			}
		}
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Comma = comma
	_ = w.Write(header)
	for i := range students {
		st := &students[i]
		row := []string{st.userID, st.name, st.email, strconv.FormatBool(st.rotate)}
		for _, c := range cells {
			v, ok := c(st)
			if !ok {
				t.Skipf("a value that a CSV cell cannot hold: %#v", st)
			}
			row = append(row, v)
		}
		_ = w.Write(row)
	}
	w.Flush()
	return buf.Bytes()
}

// cellText writes one field's value as a roster CSV cell.
func cellText(v any, listSep string) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case []string:
		return strings.Join(x, listSep), true
	case money.Nanos:
		return x.String(), true
	case request.WholeNumber:
		return strconv.FormatInt(int64(x), 10), true
	case []apikey.PathRule:
		if len(x) == 0 {
			return "[]", true
		}
	}
	b, err := json.Marshal(v)
	return string(b), err == nil
}
