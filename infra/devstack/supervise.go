package devstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stipend/stipend/infra/localstack"
)

// Restart policy of a supervised process.
const (
	// restartMin and restartMax bound the pause before a restart; it doubles
	// after each exit that came soon after a start.
	restartMin = 500 * time.Millisecond
	restartMax = 10 * time.Second
	// stableAfter is how long a process must have run for its exit not to
	// count as failing to start.
	stableAfter = 30 * time.Second
	// giveUpAfter is how many exits in a row, each soon after its start,
	// make the supervisor give up and report on Stack.Exited.
	giveUpAfter = 5
	// stopGrace is how long a stop waits after SIGTERM before SIGKILL.
	stopGrace = 15 * time.Second
)

// supervised runs one binary and starts it again when it dies, so the
// stack (and DynamoDB Local's in-memory data) outlives a crashed proxy or
// admin process.
type supervised struct {
	name string
	bin  string
	env  []string
	log  io.Writer
	say  func(string)

	stop chan struct{} // closed by close
	done chan struct{} // closed when run returns

	mu  sync.Mutex
	pid int // of the running process, 0 between runs
}

func newSupervised(name, bin string, env []string, log io.Writer, say func(string)) *supervised {
	return &supervised{name: name, bin: bin, env: env, log: log, say: say, stop: make(chan struct{}), done: make(chan struct{})}
}

// Pid returns the running process's id, or 0.
func (p *supervised) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// run starts the process and restarts it after each exit until close, or
// until it keeps failing, which it reports on exited.
func (p *supervised) run(exited chan<- error) {
	defer close(p.done)
	backoff, failures := restartMin, 0
	for {
		cmd := exec.Command(p.bin)
		last := &lastOutput{}
		out := io.MultiWriter(p.log, last)
		cmd.Env, cmd.Stdout, cmd.Stderr = p.env, out, out
		cmd.SysProcAttr = localstack.ChildAttr() // dies with this process
		if err := cmd.Start(); err != nil {
			exited <- fmt.Errorf("start %s: %w", p.name, err)
			return
		}
		started := time.Now()
		p.mu.Lock()
		p.pid = cmd.Process.Pid
		p.mu.Unlock()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		var err error
		select {
		case <-p.stop:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-waited:
			case <-time.After(stopGrace):
				_ = cmd.Process.Kill()
				<-waited
			}
			return
		case err = <-waited:
		}
		p.mu.Lock()
		p.pid = 0
		p.mu.Unlock()
		if time.Since(started) >= stableAfter {
			backoff, failures = restartMin, 0
		}
		failures++
		if failures >= giveUpAfter {
			exited <- fmt.Errorf("%s exited %d times in a row soon after starting (last: %v%s); run with STIPEND_DEV_VERBOSE=1 to see everything", p.name, failures, err, last.said())
			return
		}
		p.say(fmt.Sprintf("%s exited (%v%s); restarting it in %v", p.name, err, last.said(), backoff))
		select {
		case <-p.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, restartMax)
	}
}

// close stops the process (SIGTERM, then SIGKILL after stopGrace) and the
// restarts.
func (p *supervised) close() {
	close(p.stop)
	<-p.done
}

// sweeper runs the reset binary the way template.yaml's schedule does:
// the stale-reservation sweep every interval, and the monthly close when
// the calendar month (UTC) turns while the stack runs.
type sweeper struct {
	bin   string
	env   []string
	every time.Duration
	say   func(string)
	now   func() time.Time
}

// loop runs until ctx ends.
func (s *sweeper) loop(ctx context.Context) {
	month := s.now().UTC().Format("2006-01")
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		task := "stale"
		if m := s.now().UTC().Format("2006-01"); m != month {
			task, month = "monthly", m // a monthly run sweeps too
		}
		s.runOnce(ctx, task)
	}
}

// runOnce runs the reset binary for task and says what it did when it did
// something or failed.
func (s *sweeper) runOnce(ctx context.Context, task string) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin)
	cmd.Env = append(append([]string{}, s.env...), "STIPEND_RESET_TASK="+task)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil && err != nil {
		return // the stack is stopping
	}
	if err != nil {
		s.say(fmt.Sprintf("scheduled reset (%s) failed: %v: %s", task, err, lastLine(out)))
		return
	}
	var done struct {
		Msg        string `json:"msg"`
		Period     string `json:"period"`
		Settled    int    `json:"settled"`
		Statements int    `json:"statements"`
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "rollover done" {
			_ = json.Unmarshal(sc.Bytes(), &done)
		}
	}
	if task == "monthly" || done.Settled > 0 {
		s.say(fmt.Sprintf("scheduled reset (%s): %d stale reservations settled, %d statements written %s", task, done.Settled, done.Statements, done.Period))
	}
}

// lastOutput keeps the last line a process wrote, at most lastOutputMax
// bytes of it, so that a report of its exit can say why without the whole
// log. It is safe for concurrent use.
type lastOutput struct {
	mu   sync.Mutex
	line []byte // the last complete line
	cur  []byte // the line being written
}

const lastOutputMax = 300

func (l *lastOutput) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range b {
		switch {
		case c == '\n':
			if len(bytes.TrimSpace(l.cur)) > 0 {
				l.line = append(l.line[:0], l.cur...)
			}
			l.cur = l.cur[:0]
		case len(l.cur) < lastOutputMax:
			l.cur = append(l.cur, c)
		}
	}
	return len(b), nil
}

// said is ": <the last line>", or "" when the process wrote none.
func (l *lastOutput) said() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := l.line
	if len(bytes.TrimSpace(l.cur)) > 0 {
		line = l.cur // it died mid-line
	}
	if len(bytes.TrimSpace(line)) == 0 {
		return ""
	}
	return ": " + string(bytes.TrimSpace(line))
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// watchReadiness polls name's GET /readyz every interval and says each
// change after the first ready answer: a dependency down, the process not
// answering, ready again.
func watchReadiness(ctx context.Context, name, url string, every time.Duration, say func(string)) {
	client := &http.Client{Timeout: 3 * time.Second}
	last := "ready" // Start returned once both answered /healthz
	for {
		state := readiness(ctx, client, url)
		if state != last && ctx.Err() == nil {
			say(name + ": " + state)
			last = state
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// readiness returns "ready", "<dependency>, ... down" or "not answering".
func readiness(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "not answering"
	}
	resp, err := client.Do(req)
	if err != nil {
		return "not answering"
	}
	defer resp.Body.Close()
	var ans struct {
		Status string   `json:"status"`
		Down   []string `json:"down"`
	}
	if json.NewDecoder(resp.Body).Decode(&ans) != nil {
		return fmt.Sprintf("readiness answered %d without JSON", resp.StatusCode)
	}
	if resp.StatusCode == http.StatusOK && ans.Status == "ready" {
		return "ready"
	}
	return strings.Join(ans.Down, ", ") + " down"
}
