package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/secrets"
)

const (
	benchTable  = "stipend-bench"
	upstreamKey = "sk-bench-upstream"
)

// stack is everything the benchmark runs: the AWS stand-ins, the fake
// upstream in this process and the real proxy binary as a child process.
type stack struct {
	dir      string // temporary directory: proxy binary and log
	closers  []func()
	upstream string // fake upstream base URL (no /v1)
	proxy    string // proxy base URL
	proxyCmd *exec.Cmd
	proxyBin string // the proxy's binary, which the Lambda run starts again
	proxyLog string
	profiles string        // base URL of the proxy's profiles (STIPEND_PROFILE_ADDR)
	exited   chan struct{} // closed when the proxy process has exited
	procs    int           // the proxy's GOMAXPROCS (0: the runtime's default)
	store    *dynamo.Store
	keys     []benchKey
	// providerID is the seeded provider setting (the fake upstream), and
	// marks the arrival times of requests tagged for the Limits run.
	providerID string
	marks      *marks
}

// benchKey is a stipend key the client presents to the proxy.
type benchKey struct{ id, key string }

// Close stops everything, newest first. It is safe to call more than once.
func (s *stack) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// startStack builds the proxy and starts DynamoDB Local and moto_server
// (all three at once), then the fake upstream, seeds a provider and a key,
// and starts the proxy with GOMAXPROCS procs (0: the runtime's default).
// On error it has already cleaned up.
func startStack(ctx context.Context, opts fakeupstream.Options, keys, procs int) (st *stack, err error) {
	st = &stack{exited: make(chan struct{}), marks: newMarks(), procs: procs}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	root, err := localstack.RepoRoot()
	if err != nil {
		return st, err
	}
	if st.dir, err = os.MkdirTemp("", "stipend-bench-"); err != nil {
		return st, err
	}
	st.closers = append(st.closers, func() { _ = os.RemoveAll(st.dir) })

	// The three slow starts run in parallel.
	type started struct {
		p   *localstack.Process
		err error
	}
	ddbc, smc, buildc := make(chan started, 1), make(chan started, 1), make(chan error, 1)
	go func() {
		p, err := localstack.StartDynamoDB(ctx, localstack.Options{InMemory: true, Root: root})
		ddbc <- started{p, err}
	}()
	go func() {
		p, err := localstack.StartSecretsManager(ctx, nil)
		smc <- started{p, err}
	}()
	bin := filepath.Join(st.dir, "proxy")
	st.proxyBin = bin
	go func() { buildc <- goBuild(ctx, bin, "./functions/proxy") }()
	dl, sm, berr := <-ddbc, <-smc, <-buildc
	for _, s := range []started{dl, sm} {
		if s.p != nil {
			st.closers = append(st.closers, func() { _ = s.p.Close() })
		}
	}
	if err := errors.Join(dl.err, sm.err, berr); err != nil {
		return st, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return st, fmt.Errorf("fake upstream: %w", err)
	}
	srv := &http.Server{Handler: st.marks.upstream(fakeupstream.New(opts)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	st.closers = append(st.closers, func() { _ = srv.Close() })
	st.upstream = "http://" + ln.Addr().String()

	// The AWS SDK in this process and in the proxy read the same variables.
	for k, v := range map[string]string{
		"AWS_REGION":                       localstack.Region,
		"AWS_ACCESS_KEY_ID":                localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":            localstack.SecretAccessKey,
		"AWS_ENDPOINT_URL_DYNAMODB":        dl.p.Endpoint,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.p.Endpoint,
		"AWS_EC2_METADATA_DISABLED":        "true",
		"STIPEND_TABLE":                    benchTable,
	} {
		os.Setenv(k, v)
	}
	os.Unsetenv("AWS_SESSION_TOKEN")
	os.Unsetenv("AWS_PROFILE")
	if err := st.seed(ctx, keys); err != nil {
		return st, err
	}
	if err := st.startProxy(ctx, bin); err != nil {
		return st, err
	}
	return st, nil
}

// seed creates the table, the provider's secret, a provider setting that
// points at the fake upstream, and n keys that use it.
func (st *stack) seed(ctx context.Context, n int) error {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return err
	}
	db, err := ddb.New(ctx, cfg)
	if err != nil {
		return err
	}
	st.store = dynamo.New(db, benchTable, 24*time.Hour)
	if err := st.store.CreateTable(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	mgr, err := secrets.NewManager(ctx, cfg)
	if err != nil {
		return err
	}
	arn, err := mgr.Put(ctx, "stipend-bench/fake-upstream", upstreamKey)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	p := &provider.Setting{
		ID: apikey.NewID(), Name: "bench-fake-upstream", Provider: provider.OpenAI, // the fake speaks OpenAI; routing by model sends gpt-* there
		BaseURL: st.upstream + "/v1", SecretID: arn, CreatedAt: now, UpdatedAt: now,
	}
	if err := st.store.CreateProvider(ctx, p); err != nil {
		return err
	}
	st.providerID = p.ID
	for i := range n {
		id, key := apikey.Generate()
		k := &apikey.Key{
			ID: id, Name: fmt.Sprintf("bench-%d", i+1), Hash: apikey.Hash(key), SettingIDs: []string{p.ID},
			CreatedAt: now, UpdatedAt: now, KeyRetrievalMethod: "bench",
		}
		if err := st.store.CreateKey(ctx, k); err != nil {
			return err
		}
		st.keys = append(st.keys, benchKey{id: id, key: key})
	}
	return nil
}

// recorded sums the requests the ledger holds for the bench's keys.
func (st *stack) recorded(ctx context.Context) (requests, successes int64, err error) {
	for _, k := range st.keys {
		t, err := st.store.KeyTotals(ctx, k.id)
		if err != nil {
			return 0, 0, err
		}
		requests += t.Requests
		successes += t.Successes
	}
	return requests, successes, nil
}

// startProxy runs the built proxy on a free port with this process's
// environment and waits for GET /healthz.
func (st *stack) startProxy(ctx context.Context, bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	pport, err := freePort()
	if err != nil {
		return err
	}
	paddr := "127.0.0.1:" + strconv.Itoa(pport)
	st.profiles = "http://" + paddr
	st.proxyLog = filepath.Join(st.dir, "proxy.log")
	logf, err := os.Create(st.proxyLog)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "STIPEND_PROXY_ADDR="+addr, "STIPEND_PROFILE_ADDR="+paddr, "AWS_LAMBDA_RUNTIME_API=")
	if st.procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(st.procs))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start proxy: %w", err)
	}
	st.proxyCmd = cmd
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(st.exited)
	}()
	st.closers = append(st.closers, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-st.exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-st.exited
		}
	})
	st.proxy = "http://" + addr
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(st.proxy + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-st.exited:
			return fmt.Errorf("proxy exited during start; its log:\n%s", st.logTail(4096))
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("proxy not healthy on %s after 30 s; its log:\n%s", addr, st.logTail(4096))
}

// logTail returns at most the last n bytes of the proxy's log.
func (st *stack) logTail(n int) string {
	b, _ := os.ReadFile(st.proxyLog)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// logLevels counts the proxy's log lines at WARN and ERROR, and returns the
// first ERROR line.
func (st *stack) logLevels() (warn, errs int, firstErr string) {
	f, err := os.Open(st.proxyLog)
	if err != nil {
		return 0, 0, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, `"level":"WARN"`):
			warn++
		case strings.Contains(line, `"level":"ERROR"`):
			errs++
			if firstErr == "" {
				firstErr = line
			}
		}
	}
	return warn, errs, firstErr
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// goBuild builds the package pkg (a path from the repository's root) for
// this machine into bin.
func goBuild(ctx context.Context, bin, pkg string) error {
	root, err := localstack.RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}
