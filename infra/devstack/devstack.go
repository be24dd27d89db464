// Package devstack starts the whole stipend stack on one machine: AWS's
// DynamoDB Local (installed from infra/package-lock.json on first use),
// moto_server as Secrets Manager, the table, the real proxy and admin
// binaries (functions/proxy, functions/admin) as local servers, and — when no
// OpenAI key is given — a fake OpenAI-compatible upstream with a demo key.
// `make dev` and the end-to-end tests both use it.
package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/secrets"
)

// Options configures Start. Zero values pick the documented defaults.
type Options struct {
	ProxyAddr    string       // default 127.0.0.1:8080
	AdminAddr    string       // default 127.0.0.1:8081
	AdminKey     string       // default: generated
	OpenAIKey    string       // when set, a provider setting "openai" uses it; else a fake upstream and demo key
	DataDir      string       // keeps DynamoDB data across runs; in memory when empty
	DynamoDBPort int          // default: a free port
	UpstreamAddr string       // the fake upstream's address; default a free port
	Table        string       // default "stipend"
	Log          io.Writer    // where the services' own logs go; nil discards them
	Say          func(string) // progress messages; nil discards them
}

// Stack is a running stack. Close stops everything it started.
type Stack struct {
	ProxyURL    string // e.g. http://127.0.0.1:8080
	AdminURL    string
	AdminKey    string
	DemoKey     string       // set when the fake upstream is used
	UpstreamURL string       // the fake upstream's API root, when used
	Exited      <-chan error // receives when the proxy or admin process exits

	closers []func()
}

// Close stops every process and server the stack started, in reverse order.
func (s *Stack) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

func (o *Options) defaults() {
	if o.ProxyAddr == "" {
		o.ProxyAddr = "127.0.0.1:8080"
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:8081"
	}
	if o.Table == "" {
		o.Table = "stipend"
	}
	if o.UpstreamAddr == "" {
		o.UpstreamAddr = "127.0.0.1:0"
	}
	if o.Say == nil {
		o.Say = func(string) {}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.AdminKey == "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		o.AdminKey = "stipend-admin-" + hex.EncodeToString(b[:])
	}
}

// Start brings the stack up and returns once the proxy and admin answer
// /healthz. On error everything already started is stopped.
func Start(ctx context.Context, o Options) (st *Stack, err error) {
	o.defaults()
	st = &Stack{AdminKey: o.AdminKey, ProxyURL: "http://" + o.ProxyAddr, AdminURL: "http://" + o.AdminAddr}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	root, err := localstack.RepoRoot()
	if err != nil {
		return nil, err
	}
	for _, a := range []string{o.ProxyAddr, o.AdminAddr} {
		if err := checkFree(a); err != nil {
			return nil, err
		}
	}
	o.Say("building the proxy and admin binaries")
	bin, err := os.MkdirTemp("", "stipend-dev-bin-")
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() { os.RemoveAll(bin) })
	for _, fn := range []string{"proxy", "admin"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, fn), "./functions/"+fn)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build functions/%s: %w\n%s", fn, err, out)
		}
	}

	o.Say("starting DynamoDB Local (the first run installs it with npm ci)")
	dopts := localstack.Options{InMemory: true, Port: o.DynamoDBPort, Root: root, Log: o.Log}
	if o.DataDir != "" {
		dopts.InMemory, dopts.DBPath = false, o.DataDir
	}
	ddb, err := localstack.StartDynamoDB(ctx, dopts)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() { ddb.Close() })
	o.Say("starting moto_server as Secrets Manager")
	sm, err := localstack.StartSecretsManager(ctx, o.Log)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() { sm.Close() })

	childEnv := append(os.Environ(),
		"AWS_REGION="+localstack.Region,
		"AWS_ACCESS_KEY_ID="+localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+localstack.SecretAccessKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_ENDPOINT_URL_DYNAMODB="+ddb.Endpoint,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER="+sm.Endpoint,
		"STIPEND_TABLE="+o.Table,
		"STIPEND_ADMIN_KEY="+o.AdminKey,
		"STIPEND_ADMIN_KEY_SECRET=",
		"STIPEND_PROXY_ADDR="+o.ProxyAddr,
		"STIPEND_ADMIN_ADDR="+o.AdminAddr,
		"AWS_LAMBDA_RUNTIME_API=", // never Lambda mode here
	)
	if err := createTable(ctx, ddb.Endpoint, o.Table); err != nil {
		return nil, err
	}
	// The key-encryption secret behind keyRetrievalMethod ANYTIME_BY_VIEWER,
	// as template.yaml generates it at deploy.
	encID, err := createEncryptionSecret(ctx, sm.Endpoint)
	if err != nil {
		return nil, err
	}
	childEnv = append(childEnv, "STIPEND_KEY_ENCRYPTION_SECRET="+encID)

	if o.OpenAIKey == "" {
		ln, err := net.Listen("tcp", o.UpstreamAddr)
		if err != nil {
			return nil, fmt.Errorf("fake upstream: %w", err)
		}
		srv := &http.Server{Handler: fakeupstream.New(fakeupstream.Options{APIKey: fakeUpstreamKey}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		st.closers = append(st.closers, func() { srv.Close() })
		st.UpstreamURL = "http://" + ln.Addr().String() + "/v1"
		o.Say("no OpenAI key: serving a fake OpenAI-compatible upstream on " + st.UpstreamURL)
	}

	exited := make(chan error, 2)
	st.Exited = exited
	for _, fn := range []string{"proxy", "admin"} {
		cmd := exec.Command(filepath.Join(bin, fn))
		cmd.Env, cmd.Stdout, cmd.Stderr = childEnv, o.Log, o.Log
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", fn, err)
		}
		done := make(chan struct{})
		go func() {
			err := cmd.Wait()
			close(done)
			exited <- fmt.Errorf("%s exited: %v", fn, err)
		}()
		st.closers = append(st.closers, func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	for _, u := range []string{st.ProxyURL, st.AdminURL} {
		if err := waitHealthy(ctx, u+"/healthz", exited); err != nil {
			return nil, err
		}
	}

	if st.UpstreamURL != "" {
		p, err := adminPost(ctx, st, "/api/v1/providers", map[string]any{
			"name": "fake-openai", "provider": "openai-compatible", "baseUrl": st.UpstreamURL, "apiKey": fakeUpstreamKey,
		})
		if err != nil {
			return nil, err
		}
		k, err := adminPost(ctx, st, "/api/v1/secret-keys", map[string]any{
			"name": "demo", "providerSettingIds": []any{p["id"]}, "costLimitInUsdLifetime": 1,
		})
		if err != nil {
			return nil, err
		}
		st.DemoKey, _ = k["key"].(string)
	} else if _, err := adminPost(ctx, st, "/api/v1/providers", map[string]any{
		"name": "openai", "provider": "openai", "apiKey": o.OpenAIKey,
	}); err != nil {
		return nil, err
	}
	return st, nil
}

// fakeUpstreamKey is the fake upstream's own API key: not a secret.
const fakeUpstreamKey = "sk-fake-upstream"

// createEncryptionSecret stores a random key-encryption secret in the local
// Secrets Manager and returns its id.
func createEncryptionSecret(ctx context.Context, endpoint string) (string, error) {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return "", err
	}
	cfg.BaseEndpoint = &endpoint
	var b [32]byte
	_, _ = rand.Read(b[:])
	id, err := secrets.NewManager(secretsmanager.NewFromConfig(cfg)).Put(ctx, "stipend/dev/key-encryption", hex.EncodeToString(b[:]))
	if err != nil {
		return "", fmt.Errorf("create the key-encryption secret: %w", err)
	}
	return id, nil
}

// createTable creates the table through the storage package.
func createTable(ctx context.Context, endpoint, table string) error {
	for k, v := range map[string]string{"AWS_REGION": localstack.Region, "AWS_ACCESS_KEY_ID": localstack.AccessKeyID, "AWS_SECRET_ACCESS_KEY": localstack.SecretAccessKey} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return err
	}
	cfg.BaseEndpoint = &endpoint
	return dynamo.New(dynamo.NewClient(cfg), table, 0).CreateTable(ctx)
}

func checkFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is busy (%v): set STIPEND_PROXY_ADDR / STIPEND_ADMIN_ADDR to free addresses", addr, err)
	}
	return ln.Close()
}

func waitHealthy(ctx context.Context, url string, exited <-chan error) error {
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
		case err := <-exited:
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become healthy in 30 s", url)
}

func adminPost(ctx context.Context, st *Stack, path string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.AdminURL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+st.AdminKey)
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
	if out == nil {
		return nil, errors.New("POST " + path + ": empty answer")
	}
	return out, nil
}
