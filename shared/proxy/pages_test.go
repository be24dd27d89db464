package proxy

import (
	"strings"
	"testing"
)

// TestStudentPageServed: GET / is the student's page and /ui/ its files,
// without a key (the page's own calls carry it); unknown paths still want one.
func TestStudentPageServed(t *testing.T) {
	e := newEnv(t, jsonBody(t, "chat.json"))
	for _, tc := range []struct {
		method, path, ctype string
		status              int
	}{
		{"GET", "/", "text/html; charset=utf-8", 200},
		{"GET", "/ui/student.js", "text/javascript; charset=utf-8", 200},
		{"GET", "/ui/missing.js", "text/plain; charset=utf-8", 404},
		{"GET", "/v1/unknown", "application/json", 401},
	} {
		resp := e.do(tc.method, tc.path, "", "")
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.ctype)
		}
		if tc.status != 401 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s %s: CSP %q", tc.method, tc.path, resp.Header.Get("Content-Security-Policy"))
		}
	}
}
