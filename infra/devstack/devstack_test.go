package devstack

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestOfficialSDK starts the stack `make dev` starts and drives the proxy with
// the official OpenAI Node SDK (pinned in infra/package-lock.json), unchanged
// but for baseURL and apiKey.
func TestOfficialSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{ProxyAddr: freeAddr(t), AdminAddr: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.DemoKey == "" {
		t.Fatal("no demo key")
	}
	root, err := localstack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "node", filepath.Join(root, "infra", "sdk-check.mjs"))
	cmd.Dir = filepath.Join(root, "infra")
	cmd.Env = append(cmd.Environ(), "STIPEND_BASE_URL="+st.ProxyURL+"/v1", "STIPEND_KEY="+st.DemoKey)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sdk-check: %v\n%s", err, out)
	}
	var got struct {
		StreamChunks    int
		StreamText      string
		StreamUsageSeen bool
		AskedUsage      *struct{ Prompt_tokens, Completion_tokens int }
		CompletionText  string
		CompletionUsage *struct{ Prompt_tokens, Completion_tokens int }
		Models          []string
		EmbeddingLength int
		BadKey          struct {
			Status      int
			Code        string
			IsAuthError bool
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("sdk-check output %q: %v", out, err)
	}
	switch {
	case got.StreamChunks < 3 || !strings.Contains(got.StreamText, "word"):
		t.Fatalf("stream: %d chunks, text %q", got.StreamChunks, got.StreamText)
	case got.StreamUsageSeen:
		t.Fatal("usage chunk reached a client that did not ask for it")
	case got.AskedUsage == nil || got.AskedUsage.Completion_tokens == 0:
		t.Fatalf("usage missing for a client that asked: %+v", got.AskedUsage)
	case got.CompletionText == "" || got.CompletionUsage == nil:
		t.Fatalf("completion: %q %+v", got.CompletionText, got.CompletionUsage)
	case !slices.Contains(got.Models, "gpt-4o-mini"):
		t.Fatalf("models: %v", got.Models)
	case got.EmbeddingLength == 0:
		t.Fatal("no embedding")
	case got.BadKey.Status != 401 || got.BadKey.Code != "invalid_api_key" || !got.BadKey.IsAuthError:
		t.Fatalf("bad key: %+v", got.BadKey)
	}

	// A key the admin may read back (ANYTIME_BY_VIEWER) works on make dev's stack.
	providers, err := http.NewRequestWithContext(ctx, "GET", st.AdminURL+"/api/v1/providers", nil)
	if err != nil {
		t.Fatal(err)
	}
	providers.Header.Set("Authorization", "Bearer "+st.AdminKey)
	resp, err := http.DefaultClient.Do(providers)
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 1 {
		t.Fatalf("providers: %+v", list)
	}
	created, err := adminPost(ctx, st, "/api/v1/secret-keys", map[string]any{
		"name": "retrievable", "providerSettingIds": []string{list[0].ID}, "keyRetrievalMethod": "ANYTIME_BY_VIEWER",
	})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", st.AdminURL+"/api/v1/secret-keys/"+created["id"].(string)+"/key", nil)
	req.Header.Set("Authorization", "Bearer "+st.AdminKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var back struct{ Key string }
	json.NewDecoder(resp.Body).Decode(&back)
	if resp.StatusCode != 200 || back.Key != created["key"] {
		t.Fatalf("read back: %d %q, want %q", resp.StatusCode, back.Key, created["key"])
	}
}
