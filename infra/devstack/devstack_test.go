package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
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
	store := dynamo.New(ddb.NewAt(localtest.AWSConfig(), st.DynamoDBURL), "stipend", 0)
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

// TestRealProviders checks `make dev` with OPENAI_API_KEY/OPENAI_BASE_URL and
// ANTHROPIC_API_KEY/ANTHROPIC_BASE_URL: two in-test upstreams stand in for
// the providers, each accepting only its own key. The stack starts no fake
// upstream and no demo provider, creates the settings "openai" and
// "anthropic" at the given base URLs, and its demo key reaches each with its
// key. Restarted on the same data directory with a changed OpenAI key and
// no Anthropic base URL, it updates the settings rather than adding any, and
// the next request carries the new key.
func TestRealProviders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	openai := fakeupstream.New(fakeupstream.Options{APIKey: "sk-openai-1", Interval: -1})
	openaiSrv := httptest.NewServer(openai)
	defer openaiSrv.Close()
	anthropic := fakeupstream.New(fakeupstream.Options{APIKey: "sk-ant-1", Interval: -1})
	anthropicSrv := httptest.NewServer(anthropic)
	defer anthropicSrv.Close()

	dir := t.TempDir()
	opts := Options{ProxyAddr: freeAddr(t), AdminAddr: freeAddr(t), DataDir: dir, BinDir: binDir,
		OpenAIKey: "sk-openai-1", OpenAIBaseURL: openaiSrv.URL + "/v1",
		// As the Anthropic SDK takes it: the root, without /v1.
		AnthropicKey: "sk-ant-1", AnthropicBaseURL: anthropicSrv.URL}
	st, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { st.Close() }()
	if st.UpstreamURL != "" {
		t.Errorf("a fake upstream was started at %s", st.UpstreamURL)
	}
	want := []providerView{
		{Name: "openai", Provider: "openai", BaseURL: openaiSrv.URL + "/v1"},
		{Name: "anthropic", Provider: "anthropic", BaseURL: anthropicSrv.URL + "/v1"},
	}
	checkProviders(t, ctx, st, want)
	if st.ProviderID != st.Providers[0].ID || st.Providers[0].Name != "openai" {
		t.Errorf("ProviderID %q, Providers %+v", st.ProviderID, st.Providers)
	}
	if st.DemoKey == "" {
		t.Fatal("no demo key on the given providers")
	}
	// The demo key uses both settings. Until the proxy routes by model
	// (issue 9 item 3) it spreads a key's requests over all its settings,
	// so each upstream is checked through a key on its setting alone.
	settings := demoSettings(t, ctx, st)
	ids := []string{st.Providers[0].ID, st.Providers[1].ID}
	slices.Sort(ids)
	if !slices.Equal(settings, ids) {
		t.Errorf("demo key's settings %v, want %v", settings, ids)
	}
	chat(t, ctx, st, keyOn(t, ctx, st, st.Providers[0].ID))
	messages(t, ctx, st, keyOn(t, ctx, st, st.Providers[1].ID))
	lastAuth(t, openai, "/v1/chat/completions", "Authorization", "Bearer sk-openai-1")
	lastAuth(t, anthropic, "/v1/messages", "X-Api-Key", "sk-ant-1")
	firstKey := st.DemoKey
	st.Close()

	// Restart: a new OpenAI key, the Anthropic base URL unset (its default).
	openai2 := fakeupstream.New(fakeupstream.Options{APIKey: "sk-openai-2", Interval: -1})
	openaiSrv2 := httptest.NewServer(openai2)
	defer openaiSrv2.Close()
	opts.OpenAIKey, opts.OpenAIBaseURL, opts.AnthropicBaseURL = "sk-openai-2", openaiSrv2.URL+"/v1", ""
	if st, err = Start(ctx, opts); err != nil {
		t.Fatal(err)
	}
	want[0].BaseURL, want[1].BaseURL = openaiSrv2.URL+"/v1", ""
	checkProviders(t, ctx, st, want)
	if st.DemoKey != firstKey {
		t.Errorf("demo key after a restart = %q, want the first run's %q", st.DemoKey, firstKey)
	}
	var keys []struct{ Name string }
	if err := adminDo(ctx, st, http.MethodGet, "/api/v1/secret-keys", nil, &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Errorf("keys after a restart: %+v, want the demo key and the two test keys", keys)
	}
	chat(t, ctx, st, keyOn(t, ctx, st, st.Providers[0].ID))
	lastAuth(t, openai2, "/v1/chat/completions", "Authorization", "Bearer sk-openai-2")
	st.Close()

	// Restart without provider keys: the fake upstream is back, and the
	// same demo key now uses the demo provider alone.
	opts.OpenAIKey, opts.AnthropicKey = "", ""
	if st, err = Start(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if st.UpstreamURL == "" || len(st.Providers) != 1 || st.Providers[0].Name != demoProviderName {
		t.Fatalf("without provider keys: upstream %q, providers %+v", st.UpstreamURL, st.Providers)
	}
	if got := demoSettings(t, ctx, st); !slices.Equal(got, []string{st.ProviderID}) || st.DemoKey != firstKey {
		t.Errorf("demo key on %v (the first run's: %v), want the first run's on the demo provider %s", got, st.DemoKey == firstKey, st.ProviderID)
	}
	chat(t, ctx, st, st.DemoKey)
}

// demoSettings returns the demo key's provider setting ids, sorted.
func demoSettings(t *testing.T, ctx context.Context, st *Stack) []string {
	t.Helper()
	var keys []struct {
		Name     string
		Settings []string `json:"settingIds"`
	}
	if err := adminDo(ctx, st, http.MethodGet, "/api/v1/secret-keys", nil, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Name == demoKeyName {
			slices.Sort(k.Settings)
			return k.Settings
		}
	}
	t.Fatalf("no demo key in %+v", keys)
	return nil
}

// keyOn creates a key on the provider setting id alone and returns it.
func keyOn(t *testing.T, ctx context.Context, st *Stack, id string) string {
	t.Helper()
	created, err := adminPost(ctx, st, "/api/v1/secret-keys", map[string]any{"name": "on-" + id, "providerSettingIds": []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return created["key"].(string)
}

// providerView is what the admin API lists of a provider setting.
type providerView struct {
	Name, Provider string
	BaseURL        string `json:"baseUrl"`
}

// checkProviders fails t unless the admin API lists exactly want.
func checkProviders(t *testing.T, ctx context.Context, st *Stack, want []providerView) {
	t.Helper()
	var got []providerView
	if err := adminDo(ctx, st, http.MethodGet, "/api/v1/providers", nil, &got); err != nil {
		t.Fatal(err)
	}
	byName := func(a, b providerView) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(got, byName)
	want = slices.Clone(want)
	slices.SortFunc(want, byName)
	if !slices.Equal(got, want) {
		t.Errorf("provider settings %+v, want %+v", got, want)
	}
}

// messages sends one Anthropic /v1/messages request with key (as the
// Anthropic SDK does, x-api-key) and fails t unless it is served.
func messages(t *testing.T, ctx context.Context, st *Stack, key string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.ProxyURL+"/v1/messages",
		strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-api-key", key)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("messages: %d %s", resp.StatusCode, body)
	}
}

// lastAuth fails t unless up's last request was to path with header = want.
func lastAuth(t *testing.T, up *fakeupstream.Server, path, header, want string) {
	t.Helper()
	reqs := up.Requests()
	if len(reqs) == 0 {
		t.Fatalf("no request reached the upstream for %s", path)
	}
	last := reqs[len(reqs)-1]
	if last.Path != path || last.Header.Get(header) != want {
		t.Errorf("upstream got %s %s with %s %q, want %s with %q", last.Method, last.Path, header, last.Header.Get(header), path, want)
	}
}
