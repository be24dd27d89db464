// Command dev is `make dev`: the whole stipend stack on one machine, in the
// foreground, until Ctrl-C.
//
// It starts AWS's DynamoDB Local (installed from infra/package-lock.json on
// first use) and moto_server as the Secrets Manager endpoint, each on a free
// port; creates the table; builds and runs the real proxy and admin binaries
// (functions/proxy, functions/admin) as local servers; and, when no
// OPENAI_API_KEY is set, a fake OpenAI-compatible upstream with a demo key, so
// a streaming request works offline. It prints the admin key and a curl line.
//
// Environment (all optional): STIPEND_PROXY_ADDR (127.0.0.1:8080),
// STIPEND_ADMIN_ADDR (127.0.0.1:8081), STIPEND_ADMIN_KEY (generated when
// unset), OPENAI_API_KEY (creates the provider setting "openai"),
// STIPEND_DEV_DATA (a directory to keep DynamoDB data across runs; in memory
// when unset), STIPEND_DEV_UPSTREAM_ADDR (the fake upstream, default a free
// port), STIPEND_DYNAMODB_PORT (default a free port; moto_server always
// takes a free port).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envPort(name string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("%s=%q is not a port", name, v)
	}
	return p, nil
}

func run(ctx context.Context) error {
	root, err := localstack.RepoRoot()
	if err != nil {
		return err
	}
	proxyAddr := env("STIPEND_PROXY_ADDR", "127.0.0.1:8080")
	adminAddr := env("STIPEND_ADMIN_ADDR", "127.0.0.1:8081")
	for _, a := range []string{proxyAddr, adminAddr} {
		if err := checkFree(a); err != nil {
			return err
		}
	}
	say("building the proxy and admin binaries")
	bin := filepath.Join(root, ".dev", "bin")
	for _, fn := range []string{"proxy", "admin", "reset"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, fn), "./functions/"+fn)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build functions/%s: %w", fn, err)
		}
	}

	say("starting DynamoDB Local (the first run installs it with npm ci)")
	dbPort, err := envPort("STIPEND_DYNAMODB_PORT")
	if err != nil {
		return err
	}
	opts := localstack.Options{InMemory: true, Port: dbPort, Root: root}
	if dir := os.Getenv("STIPEND_DEV_DATA"); dir != "" {
		opts = localstack.Options{DBPath: dir, Port: dbPort, Root: root}
	}
	ddb, err := localstack.StartDynamoDB(ctx, opts)
	if err != nil {
		return err
	}
	defer ddb.Close()
	say("starting moto_server as Secrets Manager")
	sm, err := localstack.StartSecretsManager(ctx, nil)
	if err != nil {
		return err
	}
	defer sm.Close()

	adminKey := os.Getenv("STIPEND_ADMIN_KEY")
	if adminKey == "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		adminKey = "stipend-admin-" + hex.EncodeToString(b[:])
	}
	table := env("STIPEND_TABLE", "stipend")
	childEnv := append(os.Environ(),
		"AWS_REGION="+localstack.Region,
		"AWS_ACCESS_KEY_ID="+localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+localstack.SecretAccessKey,
		"AWS_ENDPOINT_URL_DYNAMODB="+ddb.Endpoint,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER="+sm.Endpoint,
		"STIPEND_TABLE="+table,
		"STIPEND_ADMIN_KEY="+adminKey,
		"STIPEND_PROXY_ADDR="+proxyAddr,
		"STIPEND_ADMIN_ADDR="+adminAddr,
		"AWS_LAMBDA_RUNTIME_API=", // never Lambda mode here
	)
	if err := createTable(ctx, childEnv); err != nil {
		return err
	}

	var upstreamURL string
	if os.Getenv("OPENAI_API_KEY") == "" {
		ln, err := net.Listen("tcp", env("STIPEND_DEV_UPSTREAM_ADDR", "127.0.0.1:0"))
		if err != nil {
			return fmt.Errorf("fake upstream: %w", err)
		}
		srv := &http.Server{Handler: fakeupstream.New(fakeupstream.Options{APIKey: "sk-fake-upstream"}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		upstreamURL = "http://" + ln.Addr().String() + "/v1"
		say("no OPENAI_API_KEY: serving a fake OpenAI-compatible upstream on " + upstreamURL)
	}

	procs := []*exec.Cmd{}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
	}()
	for _, fn := range []string{"proxy", "admin"} {
		cmd := exec.Command(filepath.Join(bin, fn))
		cmd.Env, cmd.Stdout, cmd.Stderr = childEnv, os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", fn, err)
		}
		procs = append(procs, cmd)
	}
	for _, a := range []string{proxyAddr, adminAddr} {
		if err := waitHealthy(ctx, "http://"+a+"/healthz"); err != nil {
			return err
		}
	}

	admin := "http://" + adminAddr
	var demoKey string
	if upstreamURL != "" {
		pid, err := adminCall(ctx, admin, adminKey, "/api/v1/providers", map[string]any{
			"name": "fake-openai", "provider": "openai-compatible", "baseUrl": upstreamURL, "apiKey": "sk-fake-upstream",
		})
		if err != nil {
			return err
		}
		created, err := adminCall(ctx, admin, adminKey, "/api/v1/secret-keys", map[string]any{
			"name": "demo", "providerSettingIds": []string{pid["id"].(string)}, "costLimitInUsdLifetime": 1,
		})
		if err != nil {
			return err
		}
		demoKey, _ = created["key"].(string)
	} else {
		if _, err := adminCall(ctx, admin, adminKey, "/api/v1/providers", map[string]any{
			"name": "openai", "provider": "openai", "apiKey": os.Getenv("OPENAI_API_KEY"),
		}); err != nil {
			return err
		}
	}

	fmt.Printf(`
stipend is running.
  proxy:  http://%s/v1   (OpenAI-compatible; point base_url here)
  admin:  http://%s/api/v1
  admin key: %s
`, proxyAddr, adminAddr, adminKey)
	if demoKey != "" {
		fmt.Printf(`  demo key (fake upstream, $1 budget): %s

Try a streamed chat completion:
  curl -N http://%s/v1/chat/completions -H "Authorization: Bearer %s" -H "Content-Type: application/json" -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'
`, demoKey, proxyAddr, demoKey)
	} else {
		fmt.Printf(`
Create a key for a student:
  curl -s http://%s/api/v1/secret-keys -H "Authorization: Bearer %s" -d '{"name":"student-1","providerSettingIds":["<id from GET /api/v1/providers>"],"costLimitInUsdLifetime":1}'
`, adminAddr, adminKey)
	}
	fmt.Println("\nCtrl-C stops everything.")

	exited := make(chan error, len(procs))
	for _, p := range procs {
		go func(p *exec.Cmd) { exited <- fmt.Errorf("%s exited: %w", filepath.Base(p.Path), p.Wait()) }(p)
	}
	select {
	case <-ctx.Done():
		say("stopping")
		return nil
	case err := <-exited:
		procs = nil // already reaped one; the deferred cleanup would block on it
		return err
	}
}

func say(s string) { slog.Info(s) }

// createTable creates the table through the storage package, with the
// same environment the functions get.
func createTable(ctx context.Context, childEnv []string) error {
	for _, kv := range childEnv {
		if k, v, ok := strings.Cut(kv, "="); ok && (strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "STIPEND_")) {
			os.Setenv(k, v)
		}
	}
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return err
	}
	return dynamo.New(dynamo.NewClient(cfg), os.Getenv("STIPEND_TABLE"), 0).CreateTable(ctx)
}

func checkFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is busy (%v): set STIPEND_PROXY_ADDR / STIPEND_ADMIN_ADDR to free addresses", addr, err)
	}
	return ln.Close()
}

func waitHealthy(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become healthy in 30 s", url)
}

func adminCall(ctx context.Context, base, key, path string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	return out, nil
}
