package main

// The Lambda section: the proxy's own binary in Lambda mode
// (AWS_LAMBDA_RUNTIME_API set, so it serves through lambdaurl and
// aws-lambda-go's Runtime API client, GOMAXPROCS=1 and the memory settings
// of a 128 MB function), fed one invocation at a time by a Runtime API in
// this process, as Lambda feeds an execution environment. It prints the
// process's CPU time per invocation, streamed and not, and how many of its
// threads used any: the figure the CPU section cannot give, since there
// the proxy serves 32 clients through its own HTTP server.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stipend/stipend/infra/localstack"
)

// lambdaResult is what the Lambda section measured: per kind of invocation,
// how many ran, the process's CPU over them and the threads that used CPU.
type lambdaResult struct {
	events int // content events per streamed invocation
	kinds  []lambdaKind
}

// invocations is how many requests the run sent, warm-ups included (the
// ledger counts them); 0 for nil.
func (r *lambdaResult) invocations() int {
	if r == nil {
		return 0
	}
	total := 0
	for _, k := range r.kinds {
		total += k.n + lambdaWarmups
	}
	return total
}

// lambdaWarmups is how many unmeasured invocations of each kind come first.
const lambdaWarmups = 3

type lambdaKind struct {
	name    string
	n       int
	cpu     time.Duration
	threads int // threads whose CPU time grew over the run (-1: not read)
}

// runtimeStub is a Lambda Runtime API for one process: GET .../next hands
// out the queued events, POST .../{id}/response and .../{id}/error
// complete them.
type runtimeStub struct {
	events chan []byte
	done   chan error // one per invocation: nil, or why it failed
	seq    atomic.Int64
	// inits counts the process's init errors.
	inits atomic.Int64
}

func (s *runtimeStub) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		var ev []byte
		select {
		case ev = <-s.events:
		case <-r.Context().Done():
			return
		}
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", fmt.Sprintf("c0ffee00-0000-4000-8000-%012x", s.seq.Add(1)))
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(5*time.Minute).UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:stipend-bench-proxy")
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-692cdc00-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0")
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(ev)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		s.done <- errors.Join(err, answered(body))
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
		w.WriteHeader(http.StatusAccepted)
		s.done <- fmt.Errorf("the function reported an error: %s", body)
	})
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, r *http.Request) {
		s.inits.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

// answered checks a function URL response: a streamed one is a JSON prelude
// (its status), eight zero bytes and the body; a buffered one is JSON with
// a statusCode. Anything but 200 is an error.
func answered(body []byte) error {
	prelude := body
	if i := bytes.Index(body, make([]byte, 8)); i >= 0 {
		prelude = body[:i]
	}
	var p struct {
		StatusCode int `json:"statusCode"`
	}
	if err := json.Unmarshal(prelude, &p); err != nil {
		return fmt.Errorf("response %.200q: %w", body, err)
	}
	if p.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.300s", p.StatusCode, body)
	}
	return nil
}

// urlEvent is a function URL invocation of POST /v1/chat/completions with
// body, made from the repository's events/proxy/chat-stream.json with the
// bench's key.
func urlEvent(root, key string, body []byte) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(root, "events", "proxy", "chat-stream.json"))
	if err != nil {
		return nil, err
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("events/proxy/chat-stream.json: %w", err)
	}
	headers, ok := ev["headers"].(map[string]any)
	if !ok {
		return nil, errors.New("events/proxy/chat-stream.json has no headers")
	}
	headers["authorization"] = "Bearer " + key
	headers["content-length"] = strconv.Itoa(len(body))
	ev["body"], ev["isBase64Encoded"] = string(body), false
	return json.Marshal(ev)
}

// runLambda starts the proxy binary bin in Lambda mode against a Runtime
// API stub, warms it up and measures n streamed (events content events
// each) and 10n non-streamed invocations with key, one at a time.
func runLambda(ctx context.Context, bin, key string, n, events int) (*lambdaResult, error) {
	root, err := localstack.RepoRoot()
	if err != nil {
		return nil, err
	}
	stub := &runtimeStub{events: make(chan []byte), done: make(chan error, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: stub.handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	logs := &lockedBuffer{}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME=stipend-bench-proxy",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128", // template.yaml's default
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"STIPEND_PROXY_ADDR=", "STIPEND_PROFILE_ADDR=", "GOMAXPROCS=")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	invoke := func(ev []byte) error {
		timeout := time.After(2 * time.Minute)
		select {
		case stub.events <- ev:
		case <-exited:
			return fmt.Errorf("the function exited; its output:\n%s", logs.String())
		case <-timeout:
			return errors.New("the function asked for no invocation within 2 minutes")
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-stub.done:
			return err
		case <-exited:
			return fmt.Errorf("the function exited during an invocation; its output:\n%s", logs.String())
		case <-timeout:
			return errors.New("no response within 2 minutes")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	res := &lambdaResult{events: events}
	for _, k := range []struct {
		name string
		body []byte
		n    int
	}{
		{fmt.Sprintf("streamed (%d content events)", events), chatBody("Say hello"), n},
		{"non-streamed (~1 KB prompt)", cpuBody(cpuPrompt), 10 * n},
	} {
		ev, err := urlEvent(root, key, k.body)
		if err != nil {
			return nil, err
		}
		for range lambdaWarmups { // caches, connections
			if err := invoke(ev); err != nil {
				return nil, fmt.Errorf("warm-up: %w", err)
			}
		}
		pid := cmd.Process.Pid
		u0, s0, err := cpuTime(pid)
		if err != nil {
			return nil, err
		}
		th0, thErr := threadTicks(pid)
		for range k.n {
			if err := invoke(ev); err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
		}
		u1, s1, err := cpuTime(pid)
		if err != nil {
			return nil, err
		}
		kind := lambdaKind{name: k.name, n: k.n, cpu: u1 + s1 - u0 - s0, threads: -1}
		if th1, err := threadTicks(pid); err == nil && thErr == nil {
			kind.threads = 0
			for tid, t := range th1 {
				if t > th0[tid] {
					kind.threads++
				}
			}
		}
		res.kinds = append(res.kinds, kind)
	}
	if stub.inits.Load() > 0 {
		return nil, fmt.Errorf("the function reported init errors; its output:\n%s", logs.String())
	}
	return res, nil
}

func (r report) lambda(res *lambdaResult) {
	fmt.Fprintln(r.w, "Lambda: the proxy's binary in Lambda mode (lambdaurl, aws-lambda-go's Runtime API client, GOMAXPROCS=1, 128 MB settings),")
	fmt.Fprintln(r.w, "one invocation at a time from a Runtime API in this process, against the same stack")
	for _, k := range res.kinds {
		threads := "n/a"
		if k.threads >= 0 {
			threads = strconv.Itoa(k.threads)
		}
		fmt.Fprintf(r.w, "  CPU per invocation, %-34s %6.2f ms   (%d invocations; threads that ran: %s)\n",
			k.name, float64(k.cpu.Microseconds())/1000/float64(k.n), k.n, threads)
	}
}

// lockedBuffer is a bytes.Buffer that the process's output goroutine may
// write while the run reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
