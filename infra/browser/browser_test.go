package browser

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/devstack"
	"github.com/stipend/stipend/infra/localstack"
)

// screenshots are the views pages.mjs photographs; the README shows the
// first three (docs/screenshots/, refreshed with STIPEND_UPDATE_SCREENSHOTS=1).
var screenshots = []string{"overview", "keys", "student", "roster", "key", "providers", "users", "audit"}

// chromium is Debian's browser; playwright's own download is not reachable
// from CI. STIPEND_CHROMIUM names another binary.
func chromium() string {
	if p := os.Getenv("STIPEND_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestPages starts the stack `make dev` starts and runs pages.mjs in
// headless Chromium: sign in, upload a 30-student roster (one named like an
// HTML tag), see 30 keys, send traffic, see the bars and the chart move,
// revoke a key, change a limit, open the student's page with a student's
// key; no request may leave the stack, no dialog fire, no script error or
// CSP violation happen. Screenshots of every view go to infra/browser/out/.
// Chromium missing is a failure, not a skip: .ci/run installs it.
func TestPages(t *testing.T) {
	// The stack's proxy inherits it: a busy test machine is not a stalled store.
	t.Setenv("STIPEND_RESERVE_TIMEOUT", "1m")
	if _, err := os.Stat(chromium()); err != nil {
		t.Fatalf("headless Chromium is needed at %s (apt-get install -y chromium; .ci/run does): %v", chromium(), err)
	}
	root, err := localstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "infra", "node_modules", "playwright-core")); err != nil {
		t.Fatalf("npm playwright-core is missing: run npm ci in infra/ (.ci/run does): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{ProxyAddr: freeAddr(t), AdminAddr: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	out := filepath.Join(root, "infra", "browser", "out")
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "node", filepath.Join(root, "infra", "browser", "pages.mjs"))
	cmd.Dir = filepath.Join(root, "infra")
	cmd.Env = append(cmd.Environ(),
		"STIPEND_ADMIN_URL="+st.AdminURL, "STIPEND_PROXY_URL="+st.ProxyURL, "STIPEND_ADMIN_KEY="+st.AdminKey,
		"STIPEND_SHOTS="+out, "STIPEND_CHROMIUM="+chromium())
	start := time.Now()
	b, err := cmd.CombinedOutput()
	t.Logf("pages.mjs (%s):\n%s", time.Since(start).Round(time.Millisecond), b)
	if err != nil {
		t.Fatalf("pages.mjs: %v", err)
	}
	for _, name := range screenshots {
		if fi, err := os.Stat(filepath.Join(out, name+".png")); err != nil || fi.Size() < 10_000 {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}
	if os.Getenv("STIPEND_UPDATE_SCREENSHOTS") != "" {
		for _, name := range screenshots[:3] {
			if err := copyFile(filepath.Join(out, name+".png"), filepath.Join(root, "docs", "screenshots", name+".png")); err != nil {
				t.Error(err)
			}
		}
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		return fmt.Errorf("update %s: %w", to, err)
	}
	return nil
}
