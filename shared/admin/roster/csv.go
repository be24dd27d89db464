package roster

// Reading a CSV roster and its defaults from the query string.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/money"
)

// csvColumns maps the lower-case names of a roster CSV's columns to their
// canonical names, and those to the types their cells are read as.
func csvColumns() (canon map[string]string, types map[string]reflect.Type) {
	types = map[string]reflect.Type{
		"userId": reflect.TypeFor[string](), "name": reflect.TypeFor[string](),
		"email": reflect.TypeFor[string](), "rotate": reflect.TypeFor[bool](),
	}
	maps.Copy(types, request.FieldTypes(reflect.TypeFor[form.KeyRequest](), rosterKeyRefused))
	for name, t := range request.FieldTypes(reflect.TypeFor[form.UserRequest](), rosterUserRefused) {
		types["user."+name] = t
	}
	canon = make(map[string]string, len(types))
	for name := range types {
		canon[strings.ToLower(name)] = name
	}
	return canon, types
}

// parseRosterCSV reads a CSV roster, with defaults from the query.
func parseRosterCSV(body []byte, q url.Values) (*rosterInput, Problems) {
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
		return in, append(ps, Problem{Line: line, Message: fmt.Sprintf("line %d: the CSV is not UTF-8; save it as \"CSV UTF-8\"", line)})
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
		return in, append(ps, Problem{Message: "the CSV is empty; its first line must name the columns, at least userId,name"})
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
			ps = append(ps, at.Problem(h, fmt.Sprintf("unknown column %q; columns are userId, name, email, rotate, key fields such as costLimitInUsdLifetime, and user fields such as user.costLimitInUsd", h)))
		case colOf[name] > 0:
			cols[i] = skipColumn
			ps = append(ps, at.Problem(name, fmt.Sprintf("column %s appears twice (also column %d)", name, colOf[name])))
		default:
			cols[i] = name
			colOf[name] = i + 1
		}
	}
	for _, need := range []string{"userId", "name"} {
		if colOf[need] == 0 {
			ps = append(ps, Problem{Line: headerLine, Field: need, Message: fmt.Sprintf("line %d: the header has no %s column; the first line must name the columns, at least userId,name", headerLine, need)})
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
		ps = append(ps, Problem{Message: "the CSV has no student rows below its header"})
	}
	return in, ps
}

// skipColumn marks a CSV column whose header was already reported.
const skipColumn = "\x00"

// csvProblem describes a CSV syntax error by line and column.
func csvProblem(err error) Problem {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return Problem{Line: pe.Line, Column: pe.Column, Message: fmt.Sprintf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)}
	}
	return Problem{Message: "the CSV cannot be read: " + err.Error()}
}

// parseCSVRow reads one student row.
func parseCSVRow(rec, cols []string, colOf map[string]int, types map[string]reflect.Type, line int, listSep string) (studentInput, Problems) {
	cell := func(name string) string {
		if c := colOf[name]; c > 0 && c <= len(rec) {
			return strings.TrimSpace(rec[c-1])
		}
		return ""
	}
	st := studentInput{at: where{label: fmt.Sprintf("line %d", line), line: line, columns: colOf}}
	st.at.userID = cell("userId")
	var ps Problems
	if len(rec) != len(cols) {
		ps = append(ps, st.at.Problem("", fmt.Sprintf("the row has %d fields but the header has %d", len(rec), len(cols))))
	}
	for i, c := range rec {
		if i < len(cols) && cols[i] == "" && strings.TrimSpace(c) != "" {
			p := st.at.Problem("", fmt.Sprintf("column %d has a value but no name in the header", i+1))
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
			ps = append(ps, st.at.Problem("rotate", "rotate must be true or false"))
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
	case reflect.TypeFor[request.WholeNumber]():
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
func (in *rosterInput) parseQuery(q url.Values) Problems {
	var ps Problems
	if d := q.Get("defaults"); d != "" {
		if dr, ok := request.Object([]byte(d)); ok {
			ps = append(ps, in.parseDefaults(dr, in.defaultsAt)...)
		} else {
			ps = append(ps, where{label: "query parameter defaults"}.Problem("defaults", "defaults must be a JSON object of key fields"))
		}
	}
	keyTypes := request.FieldTypes(reflect.TypeFor[form.KeyRequest](), rosterKeyRefused)
	userTypes := request.FieldTypes(reflect.TypeFor[form.UserRequest](), rosterUserRefused)
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
				ps = append(ps, at.Problem(name, fmt.Sprintf("%s cannot be given here: %s", name, why)))
			} else {
				ps = append(ps, at.Problem(name, fmt.Sprintf("unknown query parameter %s; defaults are key fields such as costLimitInUsdLifetime and user fields such as user.costLimitInUsd", name)))
			}
			continue
		}
		v := strings.Join(vals, ";")
		if t != reflect.TypeFor[[]string]() && t != reflect.TypeFor[[]apikey.PathRule]() && len(vals) > 1 {
			ps = append(ps, at.Problem(name, fmt.Sprintf("query parameter %s is given %d times", name, len(vals))))
			continue
		}
		if isUser {
			userRaw[u] = cellJSON(t, strings.TrimSpace(v), ",;")
		} else {
			keyRaw[name] = cellJSON(t, strings.TrimSpace(v), ",;")
		}
	}
	var ud form.UserRequest
	var kd form.KeyRequest
	ps = append(ps, decodeFields(userRaw, &ud, rosterUserRefused, at, "user.")...)
	ps = append(ps, decodeFields(keyRaw, &kd, rosterKeyRefused, at, "")...)
	in.userDefaults = overlay(in.userDefaults, ud)
	in.defaults = overlay(in.defaults, kd)
	return ps
}
