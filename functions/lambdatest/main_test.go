package lambdatest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// functionNames are the commands under functions/ that run in Lambda.
var functionNames = []string{"proxy", "admin", "reset"}

// helloWorld is the smallest aws-lambda-go function (testdata/hello), built
// with the functions: the baseline of make bench's Cold start section.
const helloWorld = "hello-world"

// packageOf returns the package a bootstrap is built from.
func packageOf(name string) string {
	if name == helloWorld {
		return "./functions/lambdatest/testdata/hello"
	}
	return "./functions/" + name
}

// Set once by TestMain, before any test runs, and only read afterwards.
var (
	// binDir holds <name>/bootstrap for every function in functionNames.
	binDir string
	// buildErrs says why a function could not be built; a test that needs
	// it fails with that error (the others still run).
	buildErrs map[string]error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse() // for testing.Verbose
	dir, err := os.MkdirTemp("", "stipend-lambdatest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambdatest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	binDir, buildErrs = dir, buildBootstraps(dir)
	if testing.Verbose() {
		fmt.Printf("lambdatest: built %v in %v (%d failed)\n", functionNames, time.Since(start).Round(time.Millisecond), len(buildErrs))
	}
	return m.Run()
}

// buildBootstraps builds the real functions (and helloWorld) into dir/<name>/bootstrap, the
// way the Makefile does (static, no RPC shim) but for the host's GOOS and
// GOARCH, so that they run here. It returns the error of each function that
// failed to build.
func buildBootstraps(dir string) map[string]error {
	errs := make(map[string]error)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		for _, name := range append([]string{helloWorld}, functionNames...) {
			errs[name] = err
		}
		return errs
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, name := range append([]string{helloWorld}, functionNames...) {
		wg.Go(func() {
			args := []string{"build", "-tags", "lambda.norpc", "-o", filepath.Join(dir, name, "bootstrap"), packageOf(name)}
			// go test puts its own go first on PATH.
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs[name] = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}

// bootstrap returns the path of function name's bootstrap binary.
func bootstrap(t *testing.T, name string) string {
	t.Helper()
	if err := buildErrs[name]; err != nil {
		t.Fatalf("%s does not build: %v", name, err)
	}
	return filepath.Join(binDir, name, "bootstrap")
}
