package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
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
	clients, requests, failed int
	procs                     int // the proxy's GOMAXPROCS (0: the runtime's default)
	firstErr                  error
	cpu, wall                 time.Duration
	// reads and writes are the proxy's read and write system calls over
	// the run (-1: not counted).
	reads, writes int64
}

// runCPU sends n non-streamed completions through the proxy from clients
// concurrent clients and measures the proxy's CPU time over them. With
// profile set, it then sends them again while the proxy records a CPU
// profile (about as long as the measured run took) into that file; the
// figures are the first run's, unperturbed by the profiler.
func runCPU(ctx context.Context, c *http.Client, st *stack, clients, n int, profile string) (cpuResult, error) {
	clients = min(clients, len(st.keys))
	body := fmt.Appendf(nil, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":%q}]}`, cpuPrompt)
	res := cpuResult{clients: clients, procs: st.procs}
	// Warm-up: every client's key in the proxy's caches, connections open.
	var mu sync.Mutex
	send := func(k benchKey) {
		t := target{name: "proxy", url: st.proxy + "/v1/chat/completions", apiKey: k.key}
		_, err := streamWith(ctx, c, t, body, nil)
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
	for i := range clients {
		wg.Go(func() { send(st.keys[i]) })
	}
	wg.Wait()
	if res.failed > 0 {
		return res, fmt.Errorf("CPU warm-up: %d of %d requests failed; first: %w", res.failed, res.requests, res.firstErr)
	}
	res.requests = 0
	pid := st.proxyCmd.Process.Pid
	cpu0, err := cpuTime(pid)
	if err != nil {
		return res, err
	}
	r0, w0, ioErr := ioCalls(pid)
	start := time.Now()
	load := func() {
		var next atomic.Int64
		for i := range clients {
			wg.Go(func() {
				for next.Add(1) <= int64(n) && ctx.Err() == nil {
					send(st.keys[i])
				}
			})
		}
		wg.Wait()
	}
	load()
	res.wall = time.Since(start)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return res, err
	}
	res.cpu = cpu1 - cpu0
	res.reads, res.writes = -1, -1
	if r1, w1, err := ioCalls(pid); err == nil && ioErr == nil {
		res.reads, res.writes = r1-r0, w1-w0
	}
	if profile == "" || ctx.Err() != nil {
		return res, ctx.Err()
	}
	say("cpu: the same %d requests again, recording the proxy's CPU profile into %s", n, profile)
	counted := res
	errc := make(chan error, 1)
	go func() { errc <- fetchProfile(ctx, st.profiles, res.wall*9/10, profile) }()
	load()
	if err := <-errc; err != nil {
		return counted, fmt.Errorf("CPU profile: %w", err)
	}
	return counted, ctx.Err()
}

// fetchProfile records the proxy's CPU profile over d into file.
func fetchProfile(ctx context.Context, base string, d time.Duration, file string) error {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%.3f", base, d.Seconds())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
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
	procs := "the runtime's default GOMAXPROCS"
	if res.procs > 0 {
		procs = fmt.Sprintf("GOMAXPROCS=%d as in Lambda", res.procs)
		if res.procs != proxyconfig.LambdaMaxProcs {
			procs = fmt.Sprintf("GOMAXPROCS=%d", res.procs)
		}
	}
	fmt.Fprintf(r.w, "CPU: %d non-streamed chat completions (~1 KB prompt) through the proxy (%s) from %d concurrent clients, one key each\n",
		res.requests, procs, res.clients)
	if served == 0 {
		fmt.Fprintln(r.w, "  no request succeeded")
		return
	}
	per := float64(res.cpu.Microseconds()) / 1000 / float64(served)
	fmt.Fprintf(r.w, "  proxy CPU per request (user+system)        %8.2f ms   target ≤ %.1f ms %s\n", per, targetCPUPerRequest, passFail(per <= targetCPUPerRequest))
	fmt.Fprintf(r.w, "  proxy CPU in all, wall time, throughput    %8.2f s    %.2f s   %.0f req/s\n",
		res.cpu.Seconds(), res.wall.Seconds(), float64(served)/res.wall.Seconds())
	if res.reads >= 0 {
		fmt.Fprintf(r.w, "  proxy read and write system calls per request %6.1f %6.1f\n",
			float64(res.reads)/float64(served), float64(res.writes)/float64(served))
	}
	if res.failed > 0 {
		fmt.Fprintf(r.w, "  %d of %d requests failed; first: %v\n", res.failed, res.requests, res.firstErr)
	}
}
