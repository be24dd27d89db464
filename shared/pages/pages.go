// Package pages serves stipend's two web pages from files embedded in the
// binary: the teacher's dashboard (on the admin function's URL) and the
// student's page (on the proxy's), with their scripts, styles and images.
// Nothing is loaded from another origin and every response carries headers
// that forbid inline script and style, framing and MIME sniffing.
//
// The pages hold no data: they are static files whose scripts call the admin
// API (with the admin key the teacher types, kept in the tab's
// sessionStorage) or the proxy's GET /v1/key/info and /v1/models (with the
// student's own key).
package pages

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed assets
var files embed.FS

// AssetPrefix is the path under which Assets serves the pages' scripts,
// styles and images; the pages refer to them by it.
const AssetPrefix = "/ui/"

// ContentSecurityPolicy is sent with every response: scripts, styles, images
// and API calls from the page's own origin only, no inline code, no plugins,
// no forms posting elsewhere, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes maps the extensions the assets use to their types; set here
// rather than read from the system's MIME tables, which vary.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// file is one embedded file, ready to serve.
type file struct {
	name, contentType string
	body              []byte
	// etag is the content's hash, computed when the file is first served:
	// a function's start does not hash files most invocations never serve.
	etag func() string
}

func load(name string) file {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("pages: missing embedded file " + name) // the build embeds it; a typo is a bug
	}
	return file{name: name, contentType: contentTypes[path.Ext(name)], body: b, etag: sync.OnceValue(func() string {
		sum := sha256.Sum256(b)
		return `"` + hex.EncodeToString(sum[:12]) + `"`
	})}
}

// Dashboard serves the teacher's dashboard page; mount it at GET / of the
// admin API, and Assets under AssetPrefix.
func Dashboard() http.Handler { return page(load("assets/dashboard.html")) }

// Student serves the student's page; mount it at GET / of the proxy, and
// Assets under AssetPrefix.
func Student() http.Handler { return page(load("assets/student.html")) }

func page(f file) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, r, f) })
}

// Assets serves the files under AssetPrefix (scripts, styles, images); any
// other path under it is a 404.
func Assets() http.Handler {
	byPath := map[string]file{}
	_ = fs.WalkDir(files, "assets/ui", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			byPath[AssetPrefix+strings.TrimPrefix(name, "assets/ui/")] = load(name)
		}
		return err
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := byPath[r.URL.Path]
		if !ok {
			secure(w.Header())
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		serve(w, r, f)
	})
}

// secure sets the headers every response of this package carries.
func secure(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// serve writes f. The files change only with a deploy and their names carry
// no version, so browsers revalidate every time (no-cache) and the ETag,
// the content's hash, answers an unchanged file with 304.
func serve(w http.ResponseWriter, r *http.Request, f file) {
	h := w.Header()
	secure(h)
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag())
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
