package pages

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHeaders(t *testing.T) {
	assets := Assets()
	for _, tc := range []struct {
		name    string
		h       http.Handler
		path    string
		status  int
		ctype   string
		contain string
	}{
		{"dashboard", Dashboard(), "/", 200, "text/html; charset=utf-8", `src="/ui/dashboard.js"`},
		{"student", Student(), "/", 200, "text/html; charset=utf-8", `src="/ui/student.js"`},
		{"script", assets, "/ui/dashboard.js", 200, "text/javascript; charset=utf-8", "sessionStorage"},
		{"module", assets, "/ui/dom.js", 200, "text/javascript; charset=utf-8", "textContent"},
		{"style", assets, "/ui/app.css", 200, "text/css; charset=utf-8", ":root"},
		{"image", assets, "/ui/icon.svg", 200, "image/svg+xml", "<svg"},
		{"unknown", assets, "/ui/nothing.js", 404, "text/plain; charset=utf-8", "not found"},
		{"no listing", assets, "/ui/", 404, "text/plain; charset=utf-8", "not found"},
		{"no escape", assets, "/ui/../dashboard.html", 404, "text/plain; charset=utf-8", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			h := rec.Header()
			if rec.Code != tc.status || h.Get("Content-Type") != tc.ctype || !strings.Contains(rec.Body.String(), tc.contain) {
				t.Fatalf("%d %q, want %d %q containing %q", rec.Code, h.Get("Content-Type"), tc.status, tc.ctype, tc.contain)
			}
			for k, want := range map[string]string{
				"Content-Security-Policy": ContentSecurityPolicy, "X-Content-Type-Options": "nosniff",
				"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if tc.status == 200 && (h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "") {
				t.Errorf("Cache-Control %q, ETag %q", h.Get("Cache-Control"), h.Get("ETag"))
			}
		})
	}
}

// TestPolicyIsStrict keeps the policy free of what would let injected
// markup run: inline code, eval, other origins.
func TestPolicyIsStrict(t *testing.T) {
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:", "blob:"} {
		if strings.Contains(ContentSecurityPolicy, bad) {
			t.Errorf("policy allows %q", bad)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("policy lacks %q", want)
		}
	}
}

func TestNotModified(t *testing.T) {
	for path, h := range map[string]http.Handler{"/": Dashboard(), "/ui/app.css": Assets()} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
		again := httptest.NewRecorder()
		h.ServeHTTP(again, req)
		if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Fatalf("%s with its ETag: %d, %d bytes", path, again.Code, again.Body.Len())
		}
	}
}

// TestNoInlineCodeOrHTMLInjection reads every embedded file: the pages load
// scripts and styles only from files (the policy would block inline ones
// anyway), and the scripts never parse strings as HTML, so text from users
// (key names, roster entries, prompts) can only ever be text.
func TestNoInlineCodeOrHTMLInjection(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	rules := []struct {
		ext string
		bad *regexp.Regexp
	}{
		{".html", regexp.MustCompile(`<style|\sstyle=|\son[a-z]+=|javascript:`)},
		{".html", inlineScript},
		{".html", regexp.MustCompile(`(?:src|href)="(?:https?:)?//`)},
		{".js", regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|localStorage|document\.cookie|https?://[a-z]`)},
		{".css", regexp.MustCompile(`@import|url\(`)},
	}
	n := 0
	err := fs.WalkDir(files, "assets", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		n++
		b = []byte(strings.ReplaceAll(string(b), `"http://www.w3.org/2000/svg"`, "")) // the SVG namespace, not a request
		for _, r := range rules {
			if strings.HasSuffix(name, r.ext) {
				if loc := r.bad.FindIndex(b); loc != nil {
					t.Errorf("%s: %q is not allowed", name, b[loc[0]:loc[1]])
				}
			}
		}
		return nil
	})
	if err != nil || n < 6 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}
