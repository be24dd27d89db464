// Package audit is the admin API's audit trail as middleware: around every
// mutating route (and key reads) it records who did what to which items and
// how it ended, as an auditlog.Entry, once the response is complete. It
// records field names, never values, and never a secret.
//
// Every admin request that changes something (POST, PATCH,
// DELETE, PUT, including bulk and LiteLLM routes) and every read of a key's
// plaintext is recorded as one entry, readable through GET /api/v1/audit.
//
// An entry says when, who (the admin, told apart by a prefix of the SHA-256
// of the bearer key used, so rotated keys differ), what (an action such as
// "key.create"), to which items (target ids), with which fields (the NAMES
// of the request body's top-level fields, never their values: a provider's
// apiKey shows up as "apiKey" and nothing more), and how it ended (the
// status code and the X-Stipend-Request-Id sent to the client).
//
// Decisions:
//   - Only authenticated requests are recorded: a 401 has no actor, and
//     recording them would let anyone fill the table.
//   - Failed requests (4xx, 5xx) are recorded too, with their status.
//   - POST /api/v1/reporting/... only reads, so it is not recorded.
//   - The entry is written after the response, before the handler returns
//     (inside the invocation). If it cannot be written, the change stands
//     and the failure is logged at error level with the request id.
//   - Target ids are the route's path ids, ids a handler notes with
//     NoteTargets, and the ids ("id", "keyId", "userId", "user_id",
//     "providerId") of a successful JSON response; never a key's plaintext.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/auditlog"
)

// Writer stores audit entries; *dynamo.Store implements it. PutAudit's
// entry has ID and CreatedAtMs set.
type Writer interface {
	PutAudit(ctx context.Context, e *auditlog.Entry) error
}

// Recorder records the audit entries of requests. Store, Log and Now are
// required.
type Recorder struct {
	Store Writer
	Log   *slog.Logger
	Now   func() time.Time
}

// Bounds of what one audit entry records.
const (
	auditMaxTargets   = 500
	auditMaxFields    = 64
	auditCaptureBytes = 1 << 20 // response bytes kept to find target ids
	auditWriteTimeout = 5 * time.Second
	// ActorHashLen is how many hex digits of the admin key's SHA-256 an
	// entry keeps: enough to tell keys apart, far too few to matter.
	ActorHashLen = 12
	// RequestIDHeader carries the id of an audited request to the client.
	RequestIDHeader = "X-Stipend-Request-Id"
)

// auditAction names the action of a request to route pattern, or "" when
// the request is not audited. body is the request's JSON object (nil when
// it has none), read for "revoked" only.
func auditAction(pattern string, body map[string]json.RawMessage) string {
	revoking := func(base string) string {
		if b, ok := body["revoked"]; ok && string(bytes.TrimSpace(b)) == "true" {
			return base + ".revoke"
		}
		return base + ".update"
	}
	method, path, _ := strings.Cut(pattern, " ")
	switch pattern {
	case "POST /api/v1/providers":
		return "provider.create"
	case "PATCH /api/v1/providers/{id}":
		return "provider.update"
	case "POST /api/v1/secret-keys", "POST /key/generate":
		return "key.create"
	case "POST /api/v1/secret-keys/bulk":
		return "key.bulk_create"
	case "POST /api/v1/secret-keys/bulk-update":
		return "key.bulk_update"
	case "POST /api/v1/secret-keys/bulk-revoke":
		return "key.bulk_revoke"
	case "PATCH /api/v1/secret-keys/{keyId}":
		return revoking("key")
	case "DELETE /api/v1/secret-keys/{keyId}":
		return "key.archive"
	case "GET /api/v1/secret-keys/{keyId}/key":
		return "key.retrieve"
	case "POST /api/v1/users", "POST /user/new":
		return "user.create"
	case "PATCH /api/v1/users/{userId}":
		return revoking("user")
	case "PATCH /api/v1/organization":
		return "org.update"
	}
	switch {
	case path == "" || path == "/" || strings.HasPrefix(path, "/api/v1/reporting/"):
		return ""
	case method == http.MethodPost || method == http.MethodPut:
		return auditResource(path) + ".create"
	case method == http.MethodPatch:
		return auditResource(path) + ".update"
	case method == http.MethodDelete:
		return auditResource(path) + ".delete"
	}
	return ""
}

// auditResource names the resource of a route this file does not know:
// the first path segment after /api/v1/, singular ("widgets" -> "widget").
func auditResource(path string) string {
	seg := strings.TrimPrefix(path, "/api/v1/")
	seg, _, _ = strings.Cut(strings.TrimPrefix(seg, "/"), "/")
	seg = strings.TrimSuffix(strings.TrimSuffix(seg, "-keys"), "s")
	if seg == "secret" {
		seg = "key"
	}
	if seg == "" {
		return "admin"
	}
	return seg
}

// auditNotes collects the target ids a handler names during a request.
type auditNotes struct {
	mu  sync.Mutex
	ids []string
}

type auditNotesKey struct{}

// NoteTargets adds ids (empty ones are skipped) to the audit entry of r, if
// r is audited.
func NoteTargets(r *http.Request, ids ...string) {
	n, _ := r.Context().Value(auditNotesKey{}).(*auditNotes)
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range ids {
		if id != "" {
			n.ids = append(n.ids, id)
		}
	}
}

// captureWriter records the status and a bounded copy of the body.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if room := auditCaptureBytes - c.body.Len(); room > 0 {
		c.body.Write(p[:min(len(p), room)])
	}
	return c.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Begin prepares the audit entry of an authenticated request. It returns
// the writer and request the route must use, and a function to call once
// the response is complete, which records the entry. Requests that are not
// audited come back unchanged with a no-op.
func (rec *Recorder) Begin(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, func()) {
	if auditAction(r.Pattern, nil) == "" {
		return w, r, func() {}
	}
	body, fields := peekFields(r)
	action := auditAction(r.Pattern, body)
	start := rec.Now()
	reqID := apikey.NewID()
	w.Header().Set(RequestIDHeader, reqID)
	notes := &auditNotes{}
	r = r.WithContext(context.WithValue(r.Context(), auditNotesKey{}, notes))
	cw := &captureWriter{ResponseWriter: w}
	return cw, r, func() {
		status := cw.status
		if status == 0 {
			status = http.StatusOK
		}
		var targets []string
		for _, name := range []string{"keyId", "id", "userId"} {
			targets = append(targets, r.PathValue(name))
		}
		notes.mu.Lock()
		targets = append(targets, notes.ids...)
		notes.mu.Unlock()
		if status >= 200 && status < 300 {
			targets = append(targets, responseIDs(cw.body.Bytes())...)
		}
		targets, truncated := cleanTargets(targets)
		e := &auditlog.Entry{
			ID: reqID, CreatedAt: start.Unix(), CreatedAtMs: max(start.UnixMilli(), 1),
			Actor: "admin", ActorKeyHash: actorHash(r), Action: action,
			Method: r.Method, Path: apierror.Redact(r.URL.Path), TargetIDs: targets, TargetsTruncated: truncated,
			Fields: fields, Status: status, RequestID: reqID,
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditWriteTimeout)
		defer cancel()
		if err := rec.Store.PutAudit(ctx, e); err != nil {
			rec.Log.LogAttrs(ctx, slog.LevelError, "audit entry not recorded",
				slog.String("requestId", reqID), slog.String("action", action),
				slog.Int("status", status), slog.String("cause", err.Error()))
		}
	}
}

// actorHash is the first ActorHashLen hex digits of the SHA-256 of the
// bearer key r was authenticated with.
func actorHash(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) <= 7 {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(a[7:])))
	return hex.EncodeToString(sum[:])[:ActorHashLen]
}

// validFieldName reports whether s may be recorded as a field name (what
// `^[A-Za-z0-9_.-]{1,64}$` matches); anything else is left out rather than
// stored. Written out: compiling the bounded repetitions of a regexp at
// package init cost the admin's cold start about 2.5 ms.
func validFieldName(s string) bool { return asciiWord(s, 64, "_.-") }

// validTargetID reports whether s may be recorded as a target id (what
// `^[A-Za-z0-9._@+-]{1,128}$` matches).
func validTargetID(s string) bool { return asciiWord(s, 128, "._@+-") }

// asciiWord reports whether s is 1 to max bytes, each an ASCII letter, a
// digit or one of punct.
func asciiWord(s string, max int, punct string) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(punct, c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// peekFields reads r's body (leaving it readable again for the route) and
// returns it as a JSON object, with its top-level field names, sorted. A
// body that is not a JSON object gives nil, nil.
func peekFields(r *http.Request) (map[string]json.RawMessage, []string) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, []string{}
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, request.MaxBodyBytes+1))
	// The route reads what was peeked, then the rest, and meets its own
	// size limit and read errors there.
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	if err != nil {
		return nil, []string{}
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(buf, &obj) != nil {
		return nil, []string{}
	}
	fields := make([]string, 0, len(obj))
	for name := range obj {
		if validFieldName(name) && !strings.HasPrefix(name, apikey.Prefix) {
			fields = append(fields, name)
		}
	}
	slices.Sort(fields)
	return obj, fields[:min(len(fields), auditMaxFields)]
}

// isIDField reports whether a response's JSON field holds a target id.
func isIDField(name string) bool {
	switch name {
	case "id", "keyId", "userId", "user_id", "providerId":
		return true
	}
	return false
}

// responseIDs returns the ids in a JSON response: those of the top-level
// object, of the objects in a top-level array, and of the objects in the
// top-level object's arrays (a bulk answer), in order.
func responseIDs(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var out []string
	pick := func(v any) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if s, ok := obj[k].(string); ok && isIDField(k) {
				out = append(out, s)
			}
		}
	}
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			pick(e)
		}
	case map[string]any:
		pick(v)
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if list, ok := v[k].([]any); ok {
				for _, e := range list {
					pick(e)
				}
			}
		}
	}
	return out
}

// cleanTargets drops empty, malformed and duplicate ids (and anything that
// looks like a proxy key), keeping the first auditMaxTargets.
func cleanTargets(ids []string) ([]string, bool) {
	out := make([]string, 0, len(ids))
	seen := map[string]bool{}
	truncated := false
	for _, id := range ids {
		if seen[id] || !validTargetID(id) || strings.HasPrefix(id, apikey.Prefix) {
			continue
		}
		if len(out) == auditMaxTargets {
			truncated = true
			break
		}
		seen[id] = true
		out = append(out, id)
	}
	return out, truncated
}
