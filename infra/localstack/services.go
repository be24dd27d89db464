package localstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Credentials and region that clients of the local services can use. Both
// services accept any credentials; they are here so that a test and the code
// it drives agree. DynamoDB Local is started with -sharedDb, so it keeps one
// database whatever the credentials and region; moto keeps its state per
// region, so Secrets Manager clients must use the same region.
const (
	// Region is the AWS region to configure clients with.
	Region = "us-east-1"
	// AccessKeyID is a dummy access key ID.
	AccessKeyID = "localstack"
	// SecretAccessKey is a dummy secret access key.
	SecretAccessKey = "localstack"
)

// defaultJVMArgs returns JVM flags that make DynamoDB Local start in about
// half the time: the C1 compiler only and the serial collector suit a
// short-lived, small server.
func defaultJVMArgs() []string {
	return []string{"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData"}
}

// Options configures StartDynamoDB. The zero value starts an in-memory
// instance on a free port, for tests.
type Options struct {
	// InMemory keeps the data in memory (-inMemory): it is lost on Close.
	// This is also what happens when DBPath is empty.
	InMemory bool
	// DBPath, with InMemory false, keeps the data in a file in this
	// directory (-dbPath, created if missing), so it survives restarts, as
	// `make dev` wants.
	DBPath string
	// Log receives the process's stdout and stderr; nil discards them. The
	// last few KiB go into start errors either way.
	Log io.Writer
	// Port is the port to listen on; 0 picks a free one.
	Port int
	// Root is the module root holding infra/; empty means RepoRoot().
	Root string
	// JVMArgs are extra JVM flags, placed after the defaults (which tune
	// for fast startup) so that they can override them.
	JVMArgs []string
}

// StartDynamoDB runs DynamoDB Local (installing it first with
// EnsureDynamoDBLocal if needed) as
//
//	java -Djava.library.path=<lib> -jar DynamoDBLocal.jar -port <port> -disableTelemetry -sharedDb -inMemory
//
// (or -dbPath <DBPath> instead of -inMemory), waits until it answers a
// ListTables request, and returns it. -sharedDb gives all clients one
// database whatever their credentials and region. ctx bounds the start
// (which gives up after a minute anyway); the process runs until Close.
// Starting takes about 2 s on an idle machine.
func StartDynamoDB(ctx context.Context, opts Options) (*Process, error) {
	if opts.InMemory && opts.DBPath != "" {
		return nil, errors.New("localstack: start DynamoDB Local: InMemory and DBPath are mutually exclusive")
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("localstack: start DynamoDB Local: java (17 or newer) is needed: %w", err)
	}
	root := opts.Root
	if root == "" {
		if root, err = RepoRoot(); err != nil {
			return nil, fmt.Errorf("localstack: start DynamoDB Local: %w", err)
		}
	}
	jar, err := EnsureDynamoDBLocal(ctx, root)
	if err != nil {
		return nil, err
	}
	storage := []string{"-inMemory"}
	if opts.DBPath != "" {
		dbPath, err := filepath.Abs(opts.DBPath)
		if err != nil {
			return nil, fmt.Errorf("localstack: start DynamoDB Local: %w", err)
		}
		if err := os.MkdirAll(dbPath, 0o755); err != nil {
			return nil, fmt.Errorf("localstack: start DynamoDB Local: %w", err)
		}
		storage = []string{"-dbPath", dbPath}
	}
	jvmArgs := append(defaultJVMArgs(), opts.JVMArgs...)
	lib := filepath.Join(filepath.Dir(jar), "DynamoDBLocal_lib")
	return start(ctx, service{
		name: "DynamoDB Local",
		path: java,
		args: func(port int) []string {
			args := append([]string{}, jvmArgs...)
			args = append(args, "-Djava.library.path="+lib, "-jar", jar,
				"-port", strconv.Itoa(port), "-disableTelemetry", "-sharedDb")
			return append(args, storage...)
		},
		// DynamoDB Local has no option for the address: it binds all.
		listenHost: "",
		port:       opts.Port,
		probe:      probeDynamoDB,
		graceful:   opts.DBPath != "",
		log:        opts.Log,
	})
}

// StartSecretsManager runs `moto_server -H 127.0.0.1 -p <port>` (which
// serves Secrets Manager, among other services, from memory), waits until
// it answers a ListSecrets request, and returns it. log receives its output
// (nil discards it). ctx bounds the start; the process runs until Close.
func StartSecretsManager(ctx context.Context, log io.Writer) (*Process, error) {
	svc, err := secretsManagerService(log)
	if err != nil {
		return nil, err
	}
	return start(ctx, svc)
}

// secretsManagerService describes moto_server on a free port.
func secretsManagerService(log io.Writer) (service, error) {
	moto, err := exec.LookPath("moto_server")
	if err != nil {
		return service{}, fmt.Errorf("localstack: start moto_server: moto_server (pip install 'moto[server]') is needed: %w", err)
	}
	return service{
		name: "moto_server",
		path: moto,
		args: func(port int) []string {
			return []string{"-H", "127.0.0.1", "-p", strconv.Itoa(port)}
		},
		listenHost: "127.0.0.1",
		probe:      probeSecretsManager,
		log:        log,
	}, nil
}

// probeDynamoDB succeeds when endpoint answers ListTables like DynamoDB.
func probeDynamoDB(ctx context.Context, client *http.Client, endpoint string) error {
	return probeJSON(ctx, client, endpoint, "dynamodb", "application/x-amz-json-1.0",
		"DynamoDB_20120810.ListTables", `"TableNames"`)
}

// probeSecretsManager succeeds when endpoint answers ListSecrets like
// Secrets Manager.
func probeSecretsManager(ctx context.Context, client *http.Client, endpoint string) error {
	return probeJSON(ctx, client, endpoint, "secretsmanager", "application/x-amz-json-1.1",
		"secretsmanager.ListSecrets", `"SecretList"`)
}

// probeJSON POSTs an empty AWS JSON-protocol request for target to endpoint
// and checks for a 200 whose body contains want.
func probeJSON(ctx context.Context, client *http.Client, endpoint, signingName, contentType, target, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", strings.NewReader("{}"))
	if err != nil {
		return fmt.Errorf("build probe: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	req.Header.Set("Authorization", DummyAuthorization(signingName))
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("probe: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
		return fmt.Errorf("probe: %s answered %s: %.200s", target, resp.Status, body)
	}
	return nil
}

// DummyAuthorization returns a SigV4-shaped Authorization header value for
// the service signingName (such as "dynamodb" or "secretsmanager") with
// AccessKeyID and Region, for raw HTTP requests to the local services. Its
// signature is not valid, and need not be: DynamoDB Local only requires the
// header to be present and well-formed, and moto reads the service and
// region from its credential scope.
func DummyAuthorization(signingName string) string {
	date := time.Now().UTC().Format("20060102")
	return "AWS4-HMAC-SHA256 Credential=" + AccessKeyID + "/" + date + "/" + Region + "/" + signingName +
		"/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" +
		strings.Repeat("0", 64)
}
