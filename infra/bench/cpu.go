package main

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
	"time"

	proxyconfig "github.com/stipend/stipend/shared/config"
)

// The CPU section: the proxy process's CPU time (user plus system, from
// /proc/<pid>/stat) over a run of non-streamed chat completions sent by
// concurrent clients, one key each, divided by the requests served. The
// prompt is about a kilobyte of prose and code, so counting its tokens is
// part of the work.
const targetCPUPerRequest = 0.7 // ms

// cpuPrompt is the user message of the CPU run.
const cpuPrompt = "You are reviewing a pull request. The change replaces a map-based token table with an " +
	"embedded, sorted byte table that is searched in place; the reviewer asks whether the counts stay exact " +
	"and whether the cold start improves. Please summarise the risks in three bullet points.\n\n" +
	"```go\nfunc (t Table) Rank(b []byte) (int, bool) {\n\th := hash(b)\n\tfor i := h & t.mask; ; i = (i + 1) & t.mask {\n" +
	"\t\ts := u32(t.slots, 4*int(i))\n\t\tif s == 0 {\n\t\t\treturn 0, false\n\t\t}\n\t}\n}\n```\n\n" +
	"Also translate the summary into French and Japanese (日本語で要約してください). Numbers: 1,234,567.89 and 2026-12-04. " +
	"fake:chunks=20"

type cpuResult struct {
	loadStats // the proxy's run
	clients   int
	procs     int // the proxy's GOMAXPROCS (0: the runtime's default)
	// profiled is how many more requests the proxy served while it
	// recorded its profile (the ledger counts them).
	profiled int
	// fresh is the same load with a prompt of its own for every request
	// (cpuLoad.vary): nothing the tokenizer keeps helps it.
	fresh loadStats
	// floors are the same load through floorproxy, with 0 and with the
	// proxy's number of DynamoDB calls as side calls (nil: not run).
	floors []floorResult
}

// freshRequests is how many requests the run with a prompt of its own each
// sent, its warm-up included (the ledger counts them).
func (r cpuResult) freshRequests() int {
	if r.fresh.requests == 0 {
		return 0
	}
	return r.clients + r.fresh.requests
}

// floorResult is one floorproxy run: side calls per request, and the
// process's CPU over the load.
type floorResult struct {
	side   int
	served int
	cpu    time.Duration
}

// cpuLoad is one measured load: n requests from clients concurrent
// clients, each with its own key, to url.
type cpuLoad struct {
	url string
	// profiles is the base URL of the process's profiles, whose memory
	// statistics count its allocations ("": not counted).
	profiles string
	keys     []string
	clients  int
	n        int
	body     []byte
	// vary gives each request a prompt of its own (the body's last message
	// ends with the request's number), so no text the proxy counts repeats.
	vary bool
}

// numbered returns the body of request k: body itself, or when l varies,
// the CPU run's body with k at the end of its prompt.
func (l cpuLoad) numbered(k int64) []byte {
	if !l.vary {
		return l.body
	}
	return cpuBody(fmt.Sprintf("%s (request %d)", cpuPrompt, k))
}

// cpuBody is a chat completion's body with prompt as its user message.
func cpuBody(prompt string) []byte {
	return fmt.Appendf(nil, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":%q}]}`, prompt)
}

// loadStats is what a cpuLoad measured in the process pid.
type loadStats struct {
	requests, failed int
	firstErr         error
	cpu, wall        time.Duration
	system           time.Duration // the part of cpu spent in the kernel
	reads, writes    int64         // -1: not counted
	// allocs and allocBytes are the heap allocations the process made
	// (runtime.MemStats' Mallocs and TotalAlloc, exact, not sampled);
	// -1: not counted.
	allocs, allocBytes int64
}

// run sends l's requests once unmeasured (one per client: caches and
// connections warm), then n measured, and reads pid's CPU time and system
// calls around the measured ones.
func (l cpuLoad) run(ctx context.Context, c *http.Client, pid int) (loadStats, error) {
	var (
		mu  sync.Mutex
		res loadStats
	)
	var sent atomic.Int64
	send := func(key string) {
		_, err := streamWith(ctx, c, target{name: "proxy", url: l.url, apiKey: key}, l.numbered(sent.Add(1)), nil)
		mu.Lock()
		defer mu.Unlock()
		res.requests++
		if err != nil {
			res.failed++
			if res.firstErr == nil {
				res.firstErr = err
			}
		}
	}
	var wg sync.WaitGroup
	for i := range l.clients {
		wg.Go(func() { send(l.keys[i]) })
	}
	wg.Wait()
	if res.failed > 0 {
		return res, fmt.Errorf("CPU warm-up: %d of %d requests failed; first: %w", res.failed, res.requests, res.firstErr)
	}
	res.requests = 0
	user0, sys0, err := cpuTime(pid)
	if err != nil {
		return res, err
	}
	r0, w0, ioErr := ioCalls(pid)
	a0, b0, allocErr := l.allocations(ctx)
	start := time.Now()
	var next atomic.Int64
	for i := range l.clients {
		wg.Go(func() {
			for next.Add(1) <= int64(l.n) && ctx.Err() == nil {
				send(l.keys[i])
			}
		})
	}
	wg.Wait()
	res.wall = time.Since(start)
	user1, sys1, err := cpuTime(pid)
	if err != nil {
		return res, err
	}
	res.cpu, res.system = user1+sys1-user0-sys0, sys1-sys0
	res.reads, res.writes = -1, -1
	if r1, w1, err := ioCalls(pid); err == nil && ioErr == nil {
		res.reads, res.writes = r1-r0, w1-w0
	}
	res.allocs, res.allocBytes = -1, -1
	if a1, b1, err := l.allocations(ctx); err == nil && allocErr == nil {
		res.allocs, res.allocBytes = a1-a0, b1-b0
	}
	return res, ctx.Err()
}

// allocations reads the heap allocations the process has made so far, and
// their bytes (the proxy's GET /debug/allocations: exact counts).
func (l cpuLoad) allocations(ctx context.Context) (count, bytes int64, err error) {
	if l.profiles == "" {
		return 0, 0, errors.New("no profile address")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.profiles+"/debug/allocations", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var got struct{ Objects, Bytes int64 }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return 0, 0, fmt.Errorf("%s: %s: %w", req.URL, resp.Status, err)
	}
	return got.Objects, got.Bytes, nil
}

// proxyCalls is how many DynamoDB calls the proxy makes per request of the
// CPU run (a key without user or organisation limits, warm caches: the
// provider setting's GetItem, the reserve, the event, the settle).
const proxyCalls = 4

// runCPU sends n non-streamed completions through the proxy from clients
// concurrent clients and measures the proxy's CPU time over them. With
// profile set, it then sends them again while the proxy records a CPU
// profile (about as long as the measured run took) into that file; the
// figures are the first run's, unperturbed by the profiler. Before that it
// sends them once more with a prompt of its own each (cpuLoad.vary), and
// after it through floorproxy twice: bare, and with proxyCalls side calls.
func runCPU(ctx context.Context, c *http.Client, st *stack, clients, n int, profile string) (cpuResult, error) {
	clients = min(clients, len(st.keys))
	load := cpuLoad{
		url: st.proxy + "/v1/chat/completions", profiles: st.profiles, clients: clients, n: n,
		body: cpuBody(cpuPrompt),
	}
	for _, k := range st.keys[:clients] {
		load.keys = append(load.keys, k.key)
	}
	ls, err := load.run(ctx, c, st.proxyCmd.Process.Pid)
	res := cpuResult{loadStats: ls, clients: clients, procs: st.procs}
	if err != nil {
		return res, err
	}
	say("cpu: %d requests again, each with a prompt of its own", n)
	fresh := load
	fresh.vary = true
	if res.fresh, err = fresh.run(ctx, c, st.proxyCmd.Process.Pid); err != nil {
		return res, fmt.Errorf("a prompt of its own: %w", err)
	}
	if profile != "" {
		say("cpu: the same %d requests again, recording the proxy's CPU profile into %s", n, profile)
		errc := make(chan error, 1)
		go func() { errc <- fetchProfile(ctx, st.profiles, res.wall*9/10, profile) }()
		again, err := load.run(ctx, c, st.proxyCmd.Process.Pid)
		if perr := <-errc; perr != nil {
			return res, fmt.Errorf("CPU profile: %w", perr)
		}
		if err != nil {
			return res, err
		}
		res.profiled = clients + again.requests
		// The allocations since the proxy started, beside the CPU profile.
		if err := fetchProfileURL(ctx, st.profiles+"/debug/pprof/allocs", 30*time.Second, profile+".allocs"); err != nil {
			return res, fmt.Errorf("allocation profile: %w", err)
		}
	}
	for _, side := range []int{0, proxyCalls} {
		say("cpu: the same %d requests through floorproxy with %d side calls each", n, side)
		f, err := runFloor(ctx, c, st, load, side)
		if err != nil {
			return res, fmt.Errorf("floorproxy: %w", err)
		}
		res.floors = append(res.floors, f)
	}
	return res, ctx.Err()
}

// runFloor starts floorproxy (built into st.dir) with side side calls per
// request to a server in this process, runs load through it and stops it.
func runFloor(ctx context.Context, c *http.Client, st *stack, load cpuLoad, side int) (floorResult, error) {
	bin := filepath.Join(st.dir, "floorproxy")
	if _, err := os.Stat(bin); err != nil {
		if err := goBuild(ctx, bin, "./infra/bench/floorproxy"); err != nil {
			return floorResult{}, err
		}
	}
	sideURL, stopSide, err := serveLocal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = io.WriteString(w, "{}")
	}))
	if err != nil {
		return floorResult{}, err
	}
	defer stopSide()
	port, err := freePort()
	if err != nil {
		return floorResult{}, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "FLOOR_ADDR="+addr, "FLOOR_UPSTREAM="+st.upstream, "FLOOR_UPSTREAM_KEY="+upstreamKey,
		"FLOOR_SIDE="+sideURL+"/", "FLOOR_SIDE_CALLS="+strconv.Itoa(side))
	if st.procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(st.procs))
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return floorResult{}, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	if err := waitListening(ctx, addr); err != nil {
		return floorResult{}, fmt.Errorf("%w\n%s", err, logs.Bytes())
	}
	load.url = "http://" + addr + "/v1/chat/completions"
	ls, err := load.run(ctx, c, cmd.Process.Pid)
	if err != nil {
		return floorResult{}, err
	}
	return floorResult{side: side, served: ls.requests - ls.failed, cpu: ls.cpu}, nil
}

// waitListening waits up to 10 s for addr to accept a connection.
func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fetchProfile records the proxy's CPU profile over d into file.
func fetchProfile(ctx context.Context, base string, d time.Duration, file string) error {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%.3f", base, d.Seconds())
	return fetchProfileURL(ctx, url, d+30*time.Second, file)
}

// fetchProfileURL saves what url answers (a profile) into file, waiting at
// most timeout.
func fetchProfileURL(ctx context.Context, url string, timeout time.Duration, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (r report) cpu(res cpuResult) {
	served := res.requests - res.failed
	procs := fmt.Sprintf("GOMAXPROCS=%d", res.procs)
	switch res.procs {
	case 0:
		procs = "the runtime's default GOMAXPROCS"
	case proxyconfig.LambdaMaxProcs:
		procs += " as in Lambda"
	}
	fmt.Fprintf(r.w, "CPU: %d non-streamed chat completions (~1 KB prompt) through the proxy (%s) from %d concurrent clients, one key each\n",
		res.requests, procs, res.clients)
	if served == 0 {
		fmt.Fprintln(r.w, "  no request succeeded")
		return
	}
	per := float64(res.cpu.Microseconds()) / 1000 / float64(served)
	fmt.Fprintf(r.w, "  proxy CPU per request (user+system)        %8.2f ms   target ≤ %.1f ms %s\n", per, targetCPUPerRequest, passFail(per <= targetCPUPerRequest))
	fmt.Fprintf(r.w, "  … of it in the kernel (system calls, loopback TCP) %5.2f ms\n", float64(res.system.Microseconds())/1000/float64(served))
	fmt.Fprintf(r.w, "  proxy CPU in all, wall time, throughput    %8.2f s    %.2f s   %.0f req/s\n",
		res.cpu.Seconds(), res.wall.Seconds(), float64(served)/res.wall.Seconds())
	if res.reads >= 0 {
		fmt.Fprintf(r.w, "  proxy read and write system calls per request %6.1f %6.1f\n",
			float64(res.reads)/float64(served), float64(res.writes)/float64(served))
	}
	if res.allocs >= 0 {
		fmt.Fprintf(r.w, "  proxy heap allocations per request (exact)  %6.0f  %6.1f kB\n",
			float64(res.allocs)/float64(served), float64(res.allocBytes)/1000/float64(served))
	}
	if fresh := res.fresh.requests - res.fresh.failed; fresh > 0 {
		fmt.Fprintf(r.w, "  … with a prompt of its own each request       %5.2f ms   (the tokenizer's kept counts cannot help)\n",
			float64(res.fresh.cpu.Microseconds())/1000/float64(fresh))
	}
	for _, f := range res.floors {
		if f.served == 0 {
			continue
		}
		label := "bare httputil.ReverseProxy (floorproxy)"
		if f.side > 0 {
			label = fmt.Sprintf("the same + %d round trips (no signing, no JSON)", f.side)
		}
		fmt.Fprintf(r.w, "  %-46s %6.2f ms\n", label, float64(f.cpu.Microseconds())/1000/float64(f.served))
	}
	if res.failed > 0 {
		fmt.Fprintf(r.w, "  %d of %d requests failed; first: %v\n", res.failed, res.requests, res.firstErr)
	}
}
