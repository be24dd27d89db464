package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// binDir holds the functions, built once for all tests (see TestMain).
var binDir string

func TestMain(m *testing.M) {
	// The proxies these tests start inherit it: a test machine busy with
	// other packages is not a stalled store, so give the reserve time.
	os.Setenv("STIPEND_RESERVE_TIMEOUT", "1m")
	dir, err := os.MkdirTemp("", "devstack-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err = Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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

// TestOfficialSDK starts the stack `make dev` starts and drives the proxy with
// the official OpenAI Node SDK (pinned in infra/package-lock.json), unchanged
// but for baseURL and apiKey.
func TestOfficialSDK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{ProxyAddr: freeAddr(t), AdminAddr: freeAddr(t), BinDir: binDir})
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

// TestRestartsAndDataDir checks what keeps `make dev` behaving as deployed:
// the stale-reservation sweep runs on its own; a proxy process that dies is
// started again and serves the same data; and a stack restarted on the same
// data directory still serves the demo key of the first run (its provider
// secret and the key-encryption secret survive moto_server's restart)
// without creating another demo provider or key.
func TestRestartsAndDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var said syncLines
	start := func() *Stack {
		t.Helper()
		t0 := time.Now()
		defer func() { t.Logf("stack started in %v", time.Since(t0).Round(time.Millisecond)) }()
		st, err := Start(ctx, Options{ProxyAddr: freeAddr(t), AdminAddr: freeAddr(t), DataDir: dir, BinDir: binDir,
			SweepEvery: 500 * time.Millisecond, WatchEvery: 200 * time.Millisecond, Say: said.add})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := start()
	defer func() { st.Close() }()
	chat(t, ctx, st, st.DemoKey)

	// A reservation whose invocation died is settled by the scheduled sweep.
	store := dynamo.New(dynamo.NewClientAt(localtest.AWSConfig(), st.DynamoDBURL), "stipend", 0)
	past := time.Now().Add(-time.Hour)
	req := budget.Request{KeyID: "dead-key", Key: budget.Limits{PerMonth: money.Dollar}, Cost: money.Cent, Now: past}
	if err := store.Reserve(ctx, &budget.Reservation{ID: "abandoned", KeyID: "dead-key", Charges: budget.Plan(req), Cost: money.Cent,
		Deadline: past.Add(time.Minute), Event: ledger.Event{ID: "abandoned", KeyID: "dead-key", Model: "gpt-4o-mini", Status: 200, CreatedAt: past.UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	waitFor(t, ctx, "the sweep to settle the abandoned reservation", func() bool {
		left, err := store.StaleReservations(ctx, time.Now())
		return err == nil && len(left) == 0
	})

	t.Logf("sweep settled it after %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	// Kill the proxy: it comes back on the same address with the same data.
	old := st.procs["proxy"].Pid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the proxy to be restarted", func() bool {
		pid := st.procs["proxy"].Pid()
		return pid != 0 && pid != old && get(st.ProxyURL+"/readyz") == http.StatusOK
	})
	t.Logf("proxy back after %v", time.Since(t0).Round(time.Millisecond))
	chat(t, ctx, st, st.DemoKey)
	if !said.contains("proxy exited") {
		t.Errorf("no line said the proxy exited: %q", said.all())
	}
	select {
	case err := <-st.Exited:
		t.Fatalf("the stack gave up: %v", err)
	default:
	}
	firstKey := st.DemoKey
	t0 = time.Now()
	st.Close()
	t.Logf("stack stopped in %v", time.Since(t0).Round(time.Millisecond))

	// The same data directory: the old demo key still works, and nothing
	// demo was created twice.
	st = start()
	t.Logf("said: %q", said.all())
	if st.DemoKey != firstKey {
		t.Errorf("demo key after a restart = %q, want the first run's %q", st.DemoKey, firstKey)
	}
	chat(t, ctx, st, firstKey)
	var providers, keys []struct{ Name string }
	if err := adminDo(ctx, st, http.MethodGet, "/api/v1/providers", nil, &providers); err != nil {
		t.Fatal(err)
	}
	if err := adminDo(ctx, st, http.MethodGet, "/api/v1/secret-keys", nil, &keys); err != nil {
		t.Fatal(err)
	}
	if len(providers) != 1 || len(keys) != 1 {
		t.Errorf("after a restart: providers %+v, keys %+v; want one demo provider and one demo key", providers, keys)
	}
}

// chat sends one chat completion with key and fails t unless it is served.
func chat(t *testing.T, ctx context.Context, st *Stack, key string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.ProxyURL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat completion: %d %s", resp.StatusCode, body)
	}
}

func get(url string) int {
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncLines collects Say's lines.
type syncLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *syncLines) add(l string) {
	s.mu.Lock()
	s.lines = append(s.lines, time.Now().Format("15:04:05.000 ")+l)
	s.mu.Unlock()
}
func (s *syncLines) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}
func (s *syncLines) contains(sub string) bool {
	for _, l := range s.all() {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
