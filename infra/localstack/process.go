package localstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// startTimeout bounds how long a start waits for the service to answer
	// (a caller's ctx may end it sooner). DynamoDB Local answers in about 2 s
	// on an idle machine; the headroom is for a 2-core CI box that is busy
	// compiling and running other test binaries at the same time.
	startTimeout = 60 * time.Second
	// pollInterval is the pause between readiness probes.
	pollInterval = 50 * time.Millisecond
	// startAttempts is how often a start on a free port that another
	// program took in the meantime is tried again on a new port.
	startAttempts = 3
	// termGrace is how long Close waits after SIGTERM before SIGKILL, for
	// processes that keep data on disk.
	termGrace = 5 * time.Second
	// stallTimeout bounds how long Stall waits for every thread to stop.
	stallTimeout = 10 * time.Second
	// tailSize is how much of a process's output is kept for error messages.
	tailSize = 8 << 10
)

// errExitedEarly marks a process that exited before it became ready.
var errExitedEarly = errors.New("exited before it was ready")

// Process is a running local service started by this package. Close it when
// done; a Process that is never closed is killed when the Go process that
// started it dies (on Linux).
type Process struct {
	// Endpoint is the service's base URL, such as http://127.0.0.1:41234.
	Endpoint string

	name     string
	cmd      *exec.Cmd
	graceful bool
	out      *tailWriter

	done    chan struct{} // closed once cmd.Wait has returned
	waitErr error         // cmd.Wait's result, readable after done

	closeOnce sync.Once
	closeErr  error
}

// Close ends the process and everything else in its process group and waits
// for it to exit. Processes with data on disk get SIGTERM and a grace
// period first, the others are killed at once. Close is idempotent and safe
// for concurrent use; it reports an error only when the process had already
// exited on its own before Close (it crashed).
func (p *Process) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.stop() })
	return p.closeErr
}

// stop implements Close.
func (p *Process) stop() error {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
		// Also end anything the dead leader left behind in its group.
		_ = killGroup(pgid, syscall.SIGKILL)
		return fmt.Errorf("localstack: %s exited unexpectedly: %v; output:\n%s", p.name, p.waitErr, p.out.String())
	default:
	}
	_ = killGroup(pgid, syscall.SIGCONT) // a stalled process cannot act on SIGTERM
	if p.graceful {
		_ = killGroup(pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(termGrace):
		}
	}
	// SIGKILL the group even when the leader is gone, for stragglers; the
	// group id cannot be reused while any of them lives.
	_ = killGroup(pgid, syscall.SIGKILL)
	<-p.done
	return nil
}

// Stall freezes the process and everything in its process group (SIGSTOP),
// for tests of a service that stops answering: connections are still
// accepted by the kernel, and requests wait, unanswered, until Resume.
//
// Stall returns once every thread of the process has stopped. The signal
// alone is not enough: kill(2) returns when SIGSTOP is queued, and the
// group stop starts only when one of the process's threads is next
// scheduled, so on a busy machine another thread of a JVM could still
// answer a request sent right after kill returned.
func (p *Process) Stall() error {
	pid := p.cmd.Process.Pid
	if err := killGroup(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(stallTimeout)
	for {
		stopped, err := groupStopped(pid)
		if err != nil || stopped {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localstack: %s: threads still running %v after SIGSTOP", p.name, stallTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume lets a stalled process run again (SIGCONT); it answers what
// waited. Resuming a process that is not stalled does nothing.
func (p *Process) Resume() error { return killGroup(p.cmd.Process.Pid, syscall.SIGCONT) }

// killGroup sends sig to the process group pgid, ignoring a group that no
// longer exists.
func killGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	return nil
}

// service describes how to start and probe one kind of local service.
type service struct {
	name string
	// path is the executable; args builds its arguments for a port.
	path string
	args func(port int) []string
	// dir is the working directory ("" for the current one).
	dir string
	// listenHost is the address the service binds, used to find a free
	// port ("" for all interfaces).
	listenHost string
	// port is a fixed port to use, or 0 for a free one.
	port int
	// probe reports nil once the service at endpoint answers properly.
	probe func(ctx context.Context, client *http.Client, endpoint string) error
	// graceful asks Close for SIGTERM before SIGKILL.
	graceful bool
	log      io.Writer
}

// freePort asks the kernel for a port that is free on host right now.
// Another program may take it before the service binds it; start retries.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// start runs svc and waits until it answers, retrying on a new free port
// when the process could not bind the one it was given.
func start(ctx context.Context, svc service) (*Process, error) {
	return startWith(ctx, svc, freePort)
}

// startWith is start with the free-port finder injected, for tests.
func startWith(ctx context.Context, svc service, pickPort func(host string) (int, error)) (*Process, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port := svc.port
		if port == 0 {
			var err error
			if port, err = pickPort(svc.listenHost); err != nil {
				return nil, fmt.Errorf("localstack: start %s: %w", svc.name, err)
			}
		}
		p, err := launch(svc, port)
		if err != nil {
			return nil, fmt.Errorf("localstack: start %s: %w", svc.name, err)
		}
		err = p.waitReady(ctx, svc, port)
		if err == nil {
			return p, nil
		}
		_ = p.Close()
		lastErr = fmt.Errorf("localstack: start %s on port %d (attempt %d): %w", svc.name, port, attempt, err)
		portLost := errors.Is(err, errExitedEarly) && strings.Contains(strings.ToLower(p.out.String()), "address already in use")
		if !portLost || svc.port != 0 || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// launch starts svc's process on port without waiting for it.
func launch(svc service, port int) (*Process, error) {
	out := &tailWriter{next: svc.log}
	cmd := exec.Command(svc.path, svc.args(port)...)
	cmd.Dir = svc.dir
	// The same writer for both streams: exec copies them in one goroutine.
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	// Do not hang in Wait on a pipe some orphan keeps open.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", svc.path, err)
	}
	p := &Process{
		Endpoint: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		name:     svc.name,
		cmd:      cmd,
		graceful: svc.graceful,
		out:      out,
		done:     make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls until the process answers svc's probe on port, the
// process exits, or ctx ends.
func (p *Process) waitReady(ctx context.Context, svc service, port int) error {
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	defer client.CloseIdleConnections()
	lastProbe := errors.New("not probed yet")
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v; output:\n%s", errExitedEarly, p.waitErr, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("not ready (last probe: %v): %w; output:\n%s", lastProbe, ctx.Err(), p.out.String())
		case <-ticker.C:
		}
		if err := svc.probe(ctx, client, p.Endpoint); err != nil {
			lastProbe = err
			continue
		}
		// Make sure it is our process that answered, not another program
		// that took the port while ours was still starting.
		owned, err := ownsListener(p.cmd.Process.Pid, port)
		if err != nil {
			return fmt.Errorf("check who listens on port %d: %w", port, err)
		}
		if !owned {
			lastProbe = fmt.Errorf("port %d answers but is held by another process", port)
			continue
		}
		return nil
	}
}

// tailWriter keeps the last tailSize bytes written to it and passes
// everything on to next, if set.
type tailWriter struct {
	next io.Writer

	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer. It never fails because of next: a broken log
// writer must not stall the service's output pipe.
func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	if len(w.buf) > tailSize {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-tailSize:]...)
	}
	if w.next != nil {
		_, _ = w.next.Write(b)
	}
	return len(b), nil
}

// String returns the kept output.
func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// ChildAttr is the SysProcAttr this package starts services with: a process
// group of its own and, on Linux, a SIGKILL when the starting process dies.
// Give it to other long-running children (such as `make dev`'s proxy and
// admin processes) so that a crashed parent leaves none behind.
func ChildAttr() *syscall.SysProcAttr { return sysProcAttr() }
