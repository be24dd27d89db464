package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stipend/stipend/infra/localstack"
)

// The Cold start section: process start to the first Runtime API request
// (GET .../invocation/next) of each bootstrap, against a hello-world
// aws-lambda-go function built the same way, as Lambda's init phase ends
// there.
const (
	targetColdRatio = 1.3 // times hello-world's start to /next
	runtimeNextPath = "/2018-06-01/runtime/invocation/next"
)

// coldBinary is one binary of the Cold start section.
type coldBinary struct {
	name, pkg string // pkg relative to the build root
	root      string // module root to build pkg in
	floor     bool   // a reference, not judged against the target
	path      string // built binary
	size      int64
	starts    []float64 // ms, process start to first /next
	rss       []float64 // MB, VmRSS when /next arrived
}

// runColdStart builds the hello-world function, hello-world with the AWS
// SDK's clients (the floor of the functions' start) and the three bootstraps
// (from root, or from other when set: another checkout, to compare) the way
// the Makefile's GO_LAMBDA_BUILD does but for this machine's GOOS and
// GOARCH, starts each n times in turn against a Runtime API stub, and
// prints the medians, the ratio to hello-world and the binary sizes.
func runColdStart(ctx context.Context, out io.Writer, n int, other string) error {
	root, err := localstack.RepoRoot()
	if err != nil {
		return err
	}
	from := root
	if other != "" {
		from = other
	}
	dir, err := os.MkdirTemp("", "stipend-coldstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins := []*coldBinary{
		{name: "hello-world", pkg: "./functions/lambdatest/testdata/hello", root: root},
		// The floor: hello-world plus the AWS SDK's configuration and
		// clients, as every function builds them before /next.
		{name: "hello+sdk", pkg: "./functions/lambdatest/testdata/hellosdk", root: root, floor: true},
		{name: "proxy", pkg: "./functions/proxy", root: from},
		{name: "admin", pkg: "./functions/admin", root: from},
		{name: "reset", pkg: "./functions/reset", root: from},
	}
	say("cold start: building %d binaries (lambda.norpc, -trimpath, -s -w, CGO_ENABLED=0)", len(bins))
	for _, b := range bins {
		b.path = filepath.Join(dir, b.name)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", b.path, b.pkg)
		var buf bytes.Buffer
		cmd.Dir, cmd.Stdout, cmd.Stderr = b.root, &buf, &buf
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, buf.Bytes())
		}
		fi, err := os.Stat(b.path)
		if err != nil {
			return err
		}
		b.size = fi.Size()
	}
	say("cold start: %d starts of each, in turn", n)
	for i := range n + 1 {
		for _, b := range bins {
			d, rss, err := coldStart(ctx, b.path, dir)
			if err != nil {
				return fmt.Errorf("%s: %w", b.name, err)
			}
			if i > 0 { // the first round warms the page cache
				b.starts = append(b.starts, d)
				b.rss = append(b.rss, rss)
			}
		}
	}
	fmt.Fprintf(out, "Cold start: process start to first Runtime API /next, %d starts each (median, min-max), built for %s\n", n, hostTarget())
	fmt.Fprintf(out, "%-14s %11s %17s %8s   %-8s %12s %12s\n", "", "start→/next", "min-max", "ratio", "target", "RSS at /next", "binary")
	base := median(bins[0].starts)
	for _, b := range bins {
		s := slices.Sorted(slices.Values(b.starts))
		target, flag := "", ""
		r := median(b.starts) / base
		if b.name != "hello-world" && !b.floor {
			target, flag = fmt.Sprintf("≤ %.1f×", targetColdRatio), passFail(r <= targetColdRatio)
		}
		fmt.Fprintf(out, "%-14s %8.1f ms %7.1f-%6.1f ms %7.2f×   %-8s %9.1f MB %9.1f MB %s\n",
			b.name, median(b.starts), s[0], s[len(s)-1], r, target, median(b.rss), float64(b.size)/1e6, flag)
	}
	fmt.Fprintln(out, "(hello+sdk: hello-world plus the AWS SDK configuration and the DynamoDB client every function builds: the floor)")
	if other != "" {
		fmt.Fprintf(out, "(proxy, admin and reset built from %s)\n", other)
	}
	return nil
}

func hostTarget() string {
	out, err := exec.Command("go", "env", "GOOS", "GOARCH").Output()
	if err != nil {
		return "this machine"
	}
	return strings.Join(strings.Fields(string(out)), "/")
}

// median returns the median of xs (left unsorted); NaN when empty.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return percentile(s, 50)
}

// coldStart runs bin once against a Runtime API stub and returns the time
// from just before the process starts to the first GET .../invocation/next
// (ms) and the process's resident memory then (MB). The stub holds the
// request open; the process is killed afterwards.
func coldStart(ctx context.Context, bin, dir string) (ms, rssMB float64, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	reached := make(chan time.Time, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == runtimeNextPath {
			select {
			case reached <- time.Now():
			default:
			}
			<-r.Context().Done() // no invocation: the process waits until killed
			return
		}
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	var output bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = coldEnv(ln.Addr().String(), dir)
	cmd.Stdout, cmd.Stderr = &output, &output
	cmd.SysProcAttr = childAttr()
	exited := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	select {
	case at := <-reached:
		rss, _, _ := memStatus(cmd.Process.Pid)
		return float64(at.Sub(start).Microseconds()) / 1000, float64(rss) / 1e6, nil
	case err := <-exited:
		exited <- err // for the deferred wait
		return 0, 0, fmt.Errorf("exited before asking for an invocation (%v): %s", err, output.Bytes())
	case <-time.After(30 * time.Second):
		return 0, 0, errors.New("no /next within 30 s")
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

// coldEnv is a Lambda function's environment: the runtime's variables and
// what stipend's functions need to start (nothing they read is contacted
// before the first invocation).
func coldEnv(runtimeAPI, dir string) []string {
	return []string{
		"AWS_LAMBDA_RUNTIME_API=" + runtimeAPI,
		"AWS_LAMBDA_FUNCTION_NAME=stipend-coldstart",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"LAMBDA_TASK_ROOT=" + dir,
		"HOME=" + dir,
		"TZ=UTC",
		"AWS_REGION=" + localstack.Region,
		"AWS_ACCESS_KEY_ID=" + localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + localstack.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"STIPEND_TABLE=stipend-coldstart",
		"STIPEND_ADMIN_KEY=sk-admin-coldstart-0123456789abcdef0123456789abcdef",
	}
}
