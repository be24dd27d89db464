package admin

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDashboardServed: GET / is the dashboard, without the admin key (its
// API calls carry it); the rest of the API still wants the key.
func TestDashboardServed(t *testing.T) {
	h := New(Config{Store: newFakeStore(), AdminKey: func(context.Context) (string, error) { return "k", nil }})
	for _, tc := range []struct {
		method, path, ctype string
		status              int
	}{
		{"GET", "/", "text/html; charset=utf-8", 200},
		{"GET", "/ui/dashboard.js", "text/javascript; charset=utf-8", 200},
		{"POST", "/", "application/json", 401},
		{"GET", "/api/v1/secret-keys", "application/json", 401},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.ctype) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, rec.Code, rec.Header().Get("Content-Type"), tc.status, tc.ctype)
		}
		if tc.status == 200 && rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s %s: no Content-Security-Policy", tc.method, tc.path)
		}
	}
}
