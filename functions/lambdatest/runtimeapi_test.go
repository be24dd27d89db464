package lambdatest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Runtime API header names (docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
const (
	hdrRequestID    = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadline     = "Lambda-Runtime-Deadline-Ms"
	hdrFunctionARN  = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTraceID      = "Lambda-Runtime-Trace-Id"
	hdrResponseMode = "Lambda-Runtime-Function-Response-Mode"
	hdrErrorType    = "Lambda-Runtime-Function-Error-Type"
	hdrErrorBody    = "Lambda-Runtime-Function-Error-Body"

	// streamingContentType is what a function URL streaming response is
	// sent as (events.LambdaFunctionURLStreamingResponse.ContentType).
	streamingContentType = "application/vnd.awslambda.http-integration-response"
)

// invokeTimeout bounds one invocation, cold start included, on a loaded
// machine; it is also the deadline handed to the function.
const invokeTimeout = 60 * time.Second

// runtimeAPI is a Lambda Runtime API for one function process: GET
// /2018-06-01/runtime/invocation/next hands out queued invocations (and
// blocks while there are none), POST .../{id}/response and .../{id}/error
// complete them, POST /2018-06-01/runtime/init/error is recorded.
type runtimeAPI struct {
	function string
	srv      *httptest.Server
	pending  chan *invocation
	stop     chan struct{}
	seq      atomic.Int64
	// reached is closed when the function first asks for an invocation:
	// its init phase is over.
	reached     chan struct{}
	reachedOnce sync.Once

	mu         sync.Mutex
	inflight   map[string]*invocation
	initErrors []string
}

// invocation is one queued or running invoke. result is set before done is
// closed and never changes afterwards.
type invocation struct {
	id      string
	payload []byte
	done    chan struct{}
	result  *result
}

// result is what the function sent back for one invocation.
type result struct {
	// Kind is "response" or "error" (the endpoint the function posted to).
	Kind string
	// Received is when the POST arrived; Reads time every piece of the body.
	Received time.Time
	Reads    []bodyRead
	Body     []byte
	ReadErr  error

	ContentType      string
	ResponseMode     string   // Lambda-Runtime-Function-Response-Mode, if sent
	TransferEncoding []string // as the server saw it: ["chunked"] for a stream
	Header           http.Header
	Trailer          http.Header // Lambda-Runtime-Function-Error-Type/Body, if sent
}

// bodyRead is one Read of a response body that returned data: body[Off:Off+N]
// was available at At.
type bodyRead struct {
	At     time.Time
	Off, N int
}

// newRuntimeAPI starts the runtime API for function and stops it when t ends.
func newRuntimeAPI(t *testing.T, function string) *runtimeAPI {
	a := &runtimeAPI{
		function: function,
		pending:  make(chan *invocation, 16),
		stop:     make(chan struct{}),
		inflight: map[string]*invocation{},
		reached:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", a.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", a.complete("response"))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", a.complete("error"))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", a.initError)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("runtime API: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(a.stop) // unblocks a pending next
		a.srv.Close()
	})
	return a
}

// hostPort is what AWS_LAMBDA_RUNTIME_API holds.
func (a *runtimeAPI) hostPort() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func (a *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	a.reachedOnce.Do(func() { close(a.reached) })
	var inv *invocation
	select {
	case inv = <-a.pending:
	case <-r.Context().Done():
		return
	case <-a.stop:
		http.Error(w, "runtime API shutting down", http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	a.inflight[inv.id] = inv
	a.mu.Unlock()
	h := w.Header()
	h.Set(hdrRequestID, inv.id)
	h.Set(hdrDeadline, strconv.FormatInt(time.Now().Add(invokeTimeout).UnixMilli(), 10))
	h.Set(hdrFunctionARN, "arn:aws:lambda:us-east-1:123456789012:function:stipend-"+a.function)
	h.Set(hdrTraceID, fmt.Sprintf("Root=1-692cdc00-%024x;Parent=%016x;Sampled=0", inv.seqNo(), 1))
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(inv.payload)
}

// seqNo is the numeric part of a request id, for a unique trace id.
func (inv *invocation) seqNo() int64 {
	n, _ := strconv.ParseInt(inv.id[len(inv.id)-12:], 16, 64)
	return n
}

// complete records the response or error body of an invocation, reading it
// piece by piece as it arrives, and answers 202.
func (a *runtimeAPI) complete(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res := &result{
			Kind:             kind,
			Received:         time.Now(),
			ContentType:      r.Header.Get("Content-Type"),
			ResponseMode:     r.Header.Get(hdrResponseMode),
			TransferEncoding: r.TransferEncoding,
			Header:           r.Header.Clone(),
		}
		id := r.PathValue("id")
		a.mu.Lock()
		inv := a.inflight[id]
		delete(a.inflight, id)
		a.mu.Unlock()
		if inv == nil {
			http.Error(w, "unknown or completed request id "+id, http.StatusBadRequest)
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				res.Reads = append(res.Reads, bodyRead{At: time.Now(), Off: len(res.Body), N: n})
				res.Body = append(res.Body, buf[:n]...)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				res.ReadErr = err
				break
			}
		}
		res.Trailer = r.Trailer.Clone()
		w.WriteHeader(http.StatusAccepted)
		inv.result = res
		close(inv.done)
	}
}

func (a *runtimeAPI) initError(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.initErrors = append(a.initErrors, r.Header.Get(hdrErrorType)+": "+string(b))
	a.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// function is a bootstrap binary running against its own runtimeAPI.
type function struct {
	name    string
	api     *runtimeAPI
	cmd     *exec.Cmd
	output  *syncBuffer
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startFunction runs the bootstrap of function name with env (and nothing
// else from the test's environment) plus the Lambda runtime variables. The
// process is killed when t ends; its output is logged if t failed.
func startFunction(t *testing.T, name string, env []string) *function {
	t.Helper()
	bin := bootstrap(t, name)
	api := newRuntimeAPI(t, name)
	f := &function{name: name, api: api, output: &syncBuffer{}, exited: make(chan struct{})}
	f.cmd = exec.Command(bin)
	f.cmd.Dir = t.TempDir()
	f.cmd.Env = append([]string{
		"AWS_LAMBDA_RUNTIME_API=" + api.hostPort(),
		"AWS_LAMBDA_FUNCTION_NAME=stipend-" + name,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/stipend-" + name,
		"AWS_LAMBDA_LOG_STREAM_NAME=lambdatest",
		"LAMBDA_TASK_ROOT=" + f.cmd.Dir,
		"HOME=" + f.cmd.Dir,
		"TZ=UTC",
	}, env...)
	f.cmd.Stdout, f.cmd.Stderr = f.output, f.output
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		f.waitErr = f.cmd.Wait()
		close(f.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-f.exited:
			t.Errorf("%s exited before the test ended: %v", name, f.waitErr)
		default:
			_ = f.cmd.Process.Kill()
			<-f.exited
		}
		api.mu.Lock()
		initErrors := api.initErrors
		api.mu.Unlock()
		if len(initErrors) > 0 {
			t.Errorf("%s reported init errors: %q", name, initErrors)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, f.output.String())
		}
	})
	return f
}

// invoke hands event to the function and waits for its response or error.
func (f *function) invoke(t *testing.T, event []byte) *result {
	t.Helper()
	inv := &invocation{
		id:      fmt.Sprintf("c0ffee00-1a3b-4c5d-8e9f-%012x", f.api.seq.Add(1)),
		payload: event,
		done:    make(chan struct{}),
	}
	timer := time.NewTimer(invokeTimeout)
	defer timer.Stop()
	select {
	case f.api.pending <- inv:
	case <-timer.C:
		t.Fatalf("%s: invocation queue full", f.name)
	}
	select {
	case <-inv.done:
		return inv.result
	case <-f.exited:
		t.Fatalf("%s exited during invocation %s: %v\n%s", f.name, inv.id, f.waitErr, f.output.String())
	case <-timer.C:
		t.Fatalf("%s: no response to invocation %s within %v", f.name, inv.id, invokeTimeout)
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for a process's output goroutines and
// the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
