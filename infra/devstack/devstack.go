// Package devstack starts the whole stipend stack on one machine: AWS's
// DynamoDB Local (installed from infra/package-lock.json on first use),
// moto_server as Secrets Manager, the table, the real proxy and admin
// binaries (functions/proxy, functions/admin) as local servers, the
// scheduled reset (functions/reset) on template.yaml's schedule, the
// provider settings and a demo key. Given an OpenAI and/or an Anthropic API
// key (with an optional base URL each, as the providers' SDKs take them), it
// creates the provider settings "openai" and/or "anthropic" on them and a
// demo key that uses them; given neither, it serves a fake upstream
// (infra/fakeupstream: OpenAI, Anthropic /v1/messages and Azure deployment
// URLs) registered as the demo provider, with a demo key on it.
// `make dev` and the end-to-end tests both use it.
//
// It behaves as deployed where it matters: a proxy or admin process that
// dies is started again (DynamoDB Local and its data stay up); the
// stale-reservation sweep runs every 5 minutes and the monthly close when the
// month turns; each process's GET /readyz is polled and a dependency going
// down (or coming back) is reported. With a data directory, the table, the
// secrets written to Secrets Manager (provider API keys, the key-encryption
// secret) and so every key survive a restart, and the provider settings and
// the demo key are found by name and updated (a changed API key or base URL
// applies) rather than created again.
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
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/secrets"
)

// Options configures Start. Zero values pick the documented defaults.
type Options struct {
	ProxyAddr string // default 127.0.0.1:8080
	AdminAddr string // default 127.0.0.1:8081
	AdminKey  string // default: generated
	// OpenAIKey, when set, creates the provider setting "openai" with it,
	// at OpenAIBaseURL (the OpenAI SDK's OPENAI_BASE_URL, ending in /v1;
	// default OpenAI's own). AnthropicKey likewise creates "anthropic", at
	// AnthropicBaseURL (the Anthropic SDK's ANTHROPIC_BASE_URL, the API
	// root without /v1; default Anthropic's own). With either, no fake
	// upstream or demo provider is started, and the demo key uses the
	// settings given; with neither, the fake upstream is the demo provider.
	OpenAIKey, OpenAIBaseURL       string
	AnthropicKey, AnthropicBaseURL string
	DataDir                        string       // keeps DynamoDB data across runs; in memory when empty
	DynamoDBPort                   int          // default: a free port
	UpstreamAddr                   string       // the fake upstream's address; default a free port
	Table                          string       // default "stipend"
	Log                            io.Writer    // where the services' own logs go; nil discards them
	Say                            func(string) // progress messages; nil discards them

	// SweepEvery is how often the stale-reservation sweep runs; default
	// 5 minutes, as template.yaml schedules it.
	SweepEvery time.Duration
	// WatchEvery is how often each process's /readyz is polled; default 5 s.
	WatchEvery time.Duration
	// BinDir holds the proxy, admin and reset binaries (see Build); when
	// empty, Start builds them into a temporary directory.
	BinDir string
}

// Build builds functions/proxy, functions/admin and functions/reset for this
// machine into dir, as Start runs them.
func Build(ctx context.Context, dir string) error {
	root, err := localstack.RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./functions/proxy", "./functions/admin", "./functions/reset")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the functions: %w\n%s", err, out)
	}
	return nil
}

// Stack is a running stack. Close stops everything it started.
type Stack struct {
	ProxyURL    string // e.g. http://127.0.0.1:8080
	AdminURL    string
	AdminKey    string
	DemoKey     string // a key with a $1 lifetime budget on the settings in Providers
	UpstreamURL string // the fake upstream's API root, when used
	DynamoDBURL string // DynamoDB Local's endpoint
	// ProviderID is the first of Providers: the demo provider (the fake
	// upstream's), else "openai", else "anthropic".
	ProviderID string
	// Providers are the provider settings Start created or found, in order.
	Providers []Provider
	// Exited receives when the proxy or admin process cannot be kept
	// running (it could not start, or keeps dying right after starting).
	// A process that dies is otherwise started again.
	Exited <-chan error

	procs   map[string]*supervised
	closers []func()
}

// Provider is a provider setting the stack created or found by name.
type Provider struct {
	ID, Name, Kind string
	BaseURL        string // as stored: empty for the kind's default
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
	if o.SweepEvery <= 0 {
		o.SweepEvery = 5 * time.Minute
	}
	if o.WatchEvery <= 0 {
		o.WatchEvery = 5 * time.Second
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
	started := st // the returns below set st to nil on error
	defer func() {
		if err != nil {
			started.Close()
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
	bin := o.BinDir
	if bin == "" {
		o.Say("building the proxy, admin and reset binaries")
		if bin, err = os.MkdirTemp("", "stipend-dev-bin-"); err != nil {
			return nil, err
		}
		st.closers = append(st.closers, func() { os.RemoveAll(bin) })
		if err := Build(ctx, bin); err != nil {
			return nil, err
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
	st.DynamoDBURL = ddb.Endpoint
	o.Say("starting moto_server as Secrets Manager")
	sm, err := localstack.StartSecretsManager(ctx, o.Log)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() { sm.Close() })
	// moto keeps secrets in memory; with a data directory the front keeps
	// what is written in a file and this run puts it back.
	secretsFile := ""
	if o.DataDir != "" {
		secretsFile = filepath.Join(o.DataDir, "secrets.json")
	}
	front, err := newSecretFront(sm.Endpoint, secretsFile)
	if err != nil {
		return nil, err
	}
	motoSecrets, err := secretsAt(ctx, sm.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := front.restore(ctx, func(ctx context.Context, name, value string) error {
		_, err := motoSecrets.Put(ctx, name, value)
		return err
	}); err != nil {
		return nil, err
	}
	if n := len(front.Saved()); n > 0 {
		o.Say(fmt.Sprintf("restored %d secrets kept in %s", n, secretsFile))
	}
	secretsURL, stopFront, err := front.serve()
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, stopFront)

	childEnv := append(os.Environ(),
		"AWS_REGION="+localstack.Region,
		"AWS_ACCESS_KEY_ID="+localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+localstack.SecretAccessKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_ENDPOINT_URL_DYNAMODB="+ddb.Endpoint,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER="+secretsURL,
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
	// as template.yaml generates it at deploy; an earlier run's is reused.
	frontSecrets, err := secretsAt(ctx, secretsURL)
	if err != nil {
		return nil, err
	}
	encID, err := ensureEncryptionSecret(ctx, frontSecrets)
	if err != nil {
		return nil, err
	}
	childEnv = append(childEnv, "STIPEND_KEY_ENCRYPTION_SECRET="+encID)

	wanted := o.providers()
	if len(wanted) == 0 {
		ln, err := net.Listen("tcp", o.UpstreamAddr)
		if err != nil {
			return nil, fmt.Errorf("fake upstream: %w", err)
		}
		srv := &http.Server{Handler: fakeupstream.New(fakeupstream.Options{APIKey: FakeUpstreamKey}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		st.closers = append(st.closers, func() { srv.Close() })
		st.UpstreamURL = "http://" + ln.Addr().String() + "/v1"
		o.Say("no OPENAI_API_KEY or ANTHROPIC_API_KEY: serving a fake upstream on " + st.UpstreamURL)
		// An OpenAI-compatible setting serves only the models it names
		// (routing by model, CONTRACT §3): the demo names every model
		// stipend prices, all of which the fake answers.
		table, err := pricing.Default()
		if err != nil {
			return nil, err
		}
		wanted = []map[string]any{{
			"name": demoProviderName, "provider": "openai-compatible", "baseUrl": st.UpstreamURL, "apiKey": FakeUpstreamKey,
			"allowedModels": table.Models(),
		}}
	}

	exited := make(chan error, 2)
	st.Exited = exited
	st.procs = map[string]*supervised{}
	for _, fn := range []string{"proxy", "admin"} {
		p := newSupervised(fn, filepath.Join(bin, fn), childEnv, o.Log, o.Say)
		st.procs[fn] = p
		go p.run(exited)
		st.closers = append(st.closers, p.close)
	}
	for _, u := range []string{st.ProxyURL, st.AdminURL} {
		if err := waitHealthy(ctx, u+"/healthz", exited); err != nil {
			return nil, err
		}
	}

	loops, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	st.closers = append(st.closers, func() { stopLoops(); wg.Wait() })
	sw := &sweeper{bin: filepath.Join(bin, "reset"), env: childEnv, every: o.SweepEvery, say: o.Say, now: time.Now}
	wg.Go(func() { sw.loop(loops) })
	for name, u := range map[string]string{"proxy": st.ProxyURL, "admin": st.AdminURL} {
		wg.Go(func() { watchReadiness(loops, name, u+"/readyz", o.WatchEvery, o.Say) })
	}

	for _, body := range wanted {
		id, err := ensureProvider(ctx, st, body)
		if err != nil {
			return nil, err
		}
		st.Providers = append(st.Providers, Provider{ID: id, Name: body["name"].(string),
			Kind: body["provider"].(string), BaseURL: body["baseUrl"].(string)})
	}
	st.ProviderID = st.Providers[0].ID
	if st.DemoKey, err = demoKey(ctx, st); err != nil {
		return nil, err
	}
	return st, nil
}

// providers returns the admin API bodies of the provider settings asked
// for by API key, or none when the fake upstream is to serve. The base
// URLs are taken as the providers' SDKs take them and stored as stipend's
// settings want them (ending in the API version, /v1); an empty one means
// the kind's default, so that unsetting the variable restores it.
func (o *Options) providers() []map[string]any {
	var out []map[string]any
	add := func(name, key, base, sdkVar string) {
		base = strings.TrimRight(strings.TrimSpace(base), "/")
		if key == "" {
			if base != "" {
				o.Say(sdkVar + " is set without its API key: ignored")
			}
			return
		}
		if name == provider.Anthropic && base != "" && !strings.HasSuffix(base, "/v1") {
			base += "/v1" // the Anthropic SDK's base URL is the root; its paths start with /v1
		}
		out = append(out, map[string]any{"name": name, "provider": name, "apiKey": key, "baseUrl": base})
	}
	add(provider.OpenAI, o.OpenAIKey, o.OpenAIBaseURL, "OPENAI_BASE_URL")
	add(provider.Anthropic, o.AnthropicKey, o.AnthropicBaseURL, "ANTHROPIC_BASE_URL")
	return out
}

// FakeUpstreamKey is the fake upstream's own API key: not a secret.
const FakeUpstreamKey = "sk-fake-upstream"

// Names of what the stack creates for the fake upstream, found again by
// name on a restart with a data directory.
const (
	demoProviderName = "fake-openai"
	demoKeyName      = "demo"
)

// demoKey returns the demo key, on every setting in st.Providers: the one
// an earlier run created (read back, as it is created retrievable, and
// pointed at this run's settings), or a new one.
func demoKey(ctx context.Context, st *Stack) (string, error) {
	ids := make([]string, len(st.Providers))
	for i, p := range st.Providers {
		ids[i] = p.ID
	}
	var keys []struct {
		ID      string `json:"keyId"`
		Name    string `json:"name"`
		Revoked bool   `json:"revoked"`
	}
	if err := adminDo(ctx, st, http.MethodGet, "/api/v1/secret-keys", nil, &keys); err != nil {
		return "", err
	}
	for _, k := range keys {
		if k.Name != demoKeyName || k.Revoked {
			continue
		}
		if err := adminDo(ctx, st, http.MethodPatch, "/api/v1/secret-keys/"+k.ID, map[string]any{"providerSettingIds": ids}, nil); err != nil {
			return "", fmt.Errorf("point the demo key at this run's provider settings: %w", err)
		}
		var back struct {
			Key string `json:"key"`
		}
		if err := adminDo(ctx, st, http.MethodGet, "/api/v1/secret-keys/"+k.ID+"/key", nil, &back); err != nil {
			return "", fmt.Errorf("the demo key of an earlier run cannot be read back (%w); revoke it to get a new one", err)
		}
		return back.Key, nil
	}
	var created struct {
		Key string `json:"key"`
	}
	err := adminDo(ctx, st, http.MethodPost, "/api/v1/secret-keys", map[string]any{
		"name": demoKeyName, "providerSettingIds": ids, "costLimitInUsdLifetime": 1,
		"keyRetrievalMethod": "ANYTIME_BY_VIEWER",
	}, &created)
	return created.Key, err
}

// ensureProvider creates the provider setting named body["name"], or
// updates the one an earlier run created (its base URL and API key: a
// changed key applies to the next request), and returns its id.
func ensureProvider(ctx context.Context, st *Stack, body map[string]any) (string, error) {
	var list []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := adminDo(ctx, st, http.MethodGet, "/api/v1/providers", nil, &list); err != nil {
		return "", err
	}
	for _, p := range list {
		if p.Name == body["name"] {
			update := map[string]any{"apiKey": body["apiKey"], "baseUrl": body["baseUrl"]}
			if v, ok := body["allowedModels"]; ok { // also on a database from an earlier run
				update["allowedModels"] = v
			}
			return p.ID, adminDo(ctx, st, http.MethodPatch, "/api/v1/providers/"+p.ID, update, nil)
		}
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := adminDo(ctx, st, http.MethodPost, "/api/v1/providers", body, &created); err != nil {
		return "", err
	}
	return created.ID, nil
}

// secretsAt returns a Secrets Manager client for endpoint.
func secretsAt(ctx context.Context, endpoint string) (*secrets.Manager, error) {
	cfg, err := localAWS(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	return secrets.NewManager(ctx, cfg)
}

// encryptionSecretName is the dev stack's key-encryption secret.
const encryptionSecretName = "stipend/dev/key-encryption"

// ensureEncryptionSecret returns the id of the key-encryption secret in m,
// creating a random one unless an earlier run's is there: keys sealed with
// it stay readable.
func ensureEncryptionSecret(ctx context.Context, m *secrets.Manager) (string, error) {
	if _, err := m.Get(ctx, encryptionSecretName); err == nil {
		return encryptionSecretName, nil
	} else if !errors.Is(err, secrets.ErrNotFound) {
		return "", fmt.Errorf("read the key-encryption secret: %w", err)
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	if _, err := m.Put(ctx, encryptionSecretName, hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("create the key-encryption secret: %w", err)
	}
	return encryptionSecretName, nil
}

// createTable creates the table through the storage package.
func createTable(ctx context.Context, endpoint, table string) error {
	cfg, err := localAWS(ctx, endpoint)
	if err != nil {
		return err
	}
	db, err := ddb.New(ctx, cfg)
	if err != nil {
		return err
	}
	return dynamo.New(db, table, 0).CreateTable(ctx)
}

// localAWS is the SDK configuration for a local service at endpoint: the
// local stack's credentials and region, whatever this process's environment
// says.
func localAWS(ctx context.Context, endpoint string) (aws.Config, error) {
	local := map[string]string{
		"AWS_REGION":            localstack.Region,
		"AWS_ACCESS_KEY_ID":     localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": localstack.SecretAccessKey,
		"AWS_ENDPOINT_URL":      endpoint,
	}
	cfg, err := awsenv.FromEnv(func(name string) string { return local[name] })
	if err != nil {
		return aws.Config{}, err
	}
	cfg.BaseEndpoint = &endpoint
	return cfg, nil
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

// adminDo sends body (when not nil) as JSON to the admin API and decodes
// the answer into out (when not nil).
func adminDo(ctx context.Context, st *Stack, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, st.AdminURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+st.AdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// adminPost is adminDo for a POST whose answer is a JSON object.
func adminPost(ctx context.Context, st *Stack, path string, body any) (map[string]any, error) {
	var out map[string]any
	if err := adminDo(ctx, st, http.MethodPost, path, body, &out); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("POST " + path + ": empty answer")
	}
	return out, nil
}
