// Command bench is `make bench`: how much stipend's proxy adds to a streamed
// chat completion. It runs the real proxy binary (functions/proxy) against
// DynamoDB Local and moto_server, in front of a fake upstream in this
// process that emits a content event every 20 ms stamped with the time it
// was written, and calls both the proxy and the upstream directly.
//
// It prints, with the targets beside them: the delay per SSE event
// (receive time of the client Read that completed it minus the upstream's
// send stamp; p50/p99) directly and through the proxy, and the difference;
// the same for time to first byte; how many client Reads the events arrived
// in; how long after the last content event the body ends (the proxy
// records the request before it ends the response); and, after 50
// concurrent streams (one key each, starts spread over one interval), the
// proxy's peak RSS (VmHWM). The sequential run interleaves direct and
// proxied streams; the targets are judged on it, the load run is shown for
// information. Everything runs on one machine, so other load on it shows up
// in the p99 figures (the header prints the load average).
//
// The Limits section measures the reservation on DynamoDB counters that
// precedes every forwarded request and the settle that follows it. It runs
// proxy.Handler in this process on its own dynamo.Store (same DynamoDB
// Local), in front of the same fake upstream, and sends short streams with
// a key that has limits (lifetime, monthly and daily spend, a request rate,
// a model's RPM and TPM), a key without, and the key without through a
// Handler whose Limiter is a stub. It prints the DynamoDB calls and the
// consumed capacity units per request (the Store's own Stats, and a count
// of every call at the SDK, which asks each for ReturnConsumedCapacity);
// the proxy's time from its handler's entry to the upstream's arrival, the
// client's from sending to the upstream's arrival and to the first byte
// (p50/p99, and the added: the difference of those percentiles); and the
// time from the upstream's last byte to the client's end of body (the
// settle).
//
// The Cold start section (coldstart.go), run first, builds the three
// bootstraps and a hello-world aws-lambda-go function the way the Makefile
// does (for this machine's architecture) and times process start to the
// first Runtime API /next, 15 starts each; it prints the medians, the ratio
// to hello-world, the RSS at /next and the binary sizes. The CPU section
// (cpu.go) sends non-streamed completions through the proxy from 32 clients
// and divides the proxy's CPU time (/proc/<pid>/stat) by the requests. The
// Lambda section (lambda.go) runs the same binary in Lambda mode against a
// Runtime API in this process and divides its CPU time by the invocations,
// streamed and not.
//
// It exits 0 whether or not the targets are met, 1 when the benchmark
// itself cannot run or is interrupted; all processes it started are
// stopped either way.
//
// Flags (pass with make bench ARGS="..."): -streams, -concurrency, -events,
// -interval, -warmup, -limits, -coldstarts, -coldstart-from, -cpu-requests,
// -cpu-clients, -cpuprofile, -lambda, -only coldstart, -only cpu, -only lambda, and -only scale with -scale-requests,
// -scale-clients and -scale-total: the Scale section (scale.go), alone,
// for docs/cost.md and docs/scale.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	proxyconfig "github.com/stipend/stipend/shared/config"
)

// Targets from the issue.
const (
	targetAddedP50  = 0.5  // ms per event
	targetAddedP99  = 1.5  // ms per event
	targetAddedTTFB = 10.0 // ms, p50
	targetPeakRSSMB = 64.0 // MB (10^6 bytes)
	warmupPrompt    = "warm up fake:chunks=3 fake:interval=1ms"
	warmupEvents    = 3
)

type config struct {
	streams, concurrency, events, warmup, limits int
	interval                                     time.Duration
	coldStarts, cpuRequests, cpuClients          int
	coldFrom                                     string
	only                                         string
	cpuProfile                                   string
	scaleN, scaleClients, scaleTotal             int
	bursts                                       int
	procs                                        int
	lambda                                       int
}

func main() {
	var cfg config
	flag.IntVar(&cfg.streams, "streams", 20, "sequential streams per path (direct and proxy, interleaved)")
	flag.IntVar(&cfg.concurrency, "concurrency", 50, "concurrent streams in the load run")
	flag.IntVar(&cfg.events, "events", 50, "content events per stream")
	flag.DurationVar(&cfg.interval, "interval", 20*time.Millisecond, "upstream delay before each content event")
	flag.IntVar(&cfg.warmup, "warmup", 3, "unmeasured streams per path before measuring")
	flag.IntVar(&cfg.limits, "limits", 200, "sequential streams per kind in the Limits run (0 skips it)")
	flag.IntVar(&cfg.coldStarts, "coldstarts", 15, "starts of each binary in the Cold start run (0 skips it)")
	flag.StringVar(&cfg.coldFrom, "coldstart-from", "", "build the Cold start run's functions from this checkout instead (to compare)")
	flag.IntVar(&cfg.cpuRequests, "cpu-requests", 2000, "non-streamed requests in the CPU run (0 skips it)")
	flag.IntVar(&cfg.cpuClients, "cpu-clients", 32, "concurrent clients in the CPU run (at most -concurrency)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "after the CPU run, repeat it while recording the proxy's CPU profile into this file (go tool pprof reads it)")
	flag.StringVar(&cfg.only, "only", "", `"coldstart": run only the Cold start section; "cpu": only the CPU section; "scale": only the Scale section (scale.go); "burst": only the Burst (burst.go); "reporting": only the Reporting section (reporting.go); "lambda": only the Lambda section (lambda.go)`)
	flag.IntVar(&cfg.procs, "proxy-procs", proxyconfig.LambdaMaxProcs, "GOMAXPROCS of the proxy process (default: as the proxy sets it in Lambda; 0: the runtime's default)")
	flag.IntVar(&cfg.lambda, "lambda", 20, "streamed invocations in the Lambda run, and ten times as many non-streamed (0 skips it)")
	flag.IntVar(&cfg.bursts, "bursts", 1, "bursts in the Limits run (each on a new key)")
	flag.IntVar(&cfg.scaleN, "scale-requests", 100, "Scale section: sequential requests per kind for the capacity figures")
	flag.IntVar(&cfg.scaleClients, "scale-clients", 32, "Scale section: concurrent clients per throughput scenario")
	flag.IntVar(&cfg.scaleTotal, "scale-total", 1000, "Scale section: requests per throughput scenario")
	flag.Parse()
	if cfg.streams < 1 || cfg.concurrency < 1 || cfg.events < 1 || cfg.warmup < 0 || cfg.limits < 0 || cfg.interval <= 0 ||
		cfg.coldStarts < 0 || cfg.cpuRequests < 0 || cfg.cpuClients < 1 || cfg.procs < 0 || (cfg.only != "" && cfg.only != "coldstart" && cfg.only != "cpu" && cfg.only != "scale" && cfg.only != "burst" && cfg.only != "reporting" && cfg.only != "lambda") ||
		cfg.scaleN < 1 || cfg.scaleClients < 1 || cfg.scaleTotal < 1 || cfg.bursts < 0 || cfg.lambda < 0 {
		fmt.Fprintln(os.Stderr, "bench: -streams, -concurrency, -events, -interval and the -scale- flags must be positive, -warmup, -limits, -coldstarts, -bursts and -lambda not negative, -only empty, coldstart, cpu, scale, burst, reporting or lambda")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "bench: interrupted")
		} else {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// say reports progress on stderr, keeping stdout for the results.
func say(format string, args ...any) {
	slog.Info(fmt.Sprintf(format, args...))
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	began := time.Now()
	loadBefore := loadAverage()
	if cfg.only == "scale" {
		return runScale(ctx, out, cfg.scaleN, cfg.scaleClients, cfg.scaleTotal)
	}
	if cfg.only == "reporting" {
		return runReportingAlone(ctx, out)
	}
	// Cold start first, while nothing else of the benchmark runs.
	if (cfg.coldStarts > 0 && cfg.only == "") || cfg.only == "coldstart" {
		if err := runColdStart(ctx, out, max(cfg.coldStarts, 1), cfg.coldFrom); err != nil {
			return fmt.Errorf("cold start run: %w", err)
		}
		fmt.Fprintln(out)
		if cfg.only == "coldstart" {
			return nil
		}
	}
	say("building the proxy; starting DynamoDB Local and moto_server")
	st, err := startStack(ctx, fakeupstream.Options{
		APIKey: upstreamKey, Interval: cfg.interval, Chunks: cfg.events, MaxRecorded: -1,
	}, cfg.concurrency, cfg.procs)
	if err != nil {
		return err
	}
	defer st.Close()
	setup := time.Since(began)
	say("stack up in %.1f s; proxy pid %d on %s", setup.Seconds(), st.proxyCmd.Process.Pid, st.proxy)

	if cfg.only == "burst" {
		say("burst: in-process proxy, %d bursts of %d concurrent requests on one key", max(cfg.bursts, 1), burstRequests)
		lim, err := runLimits(ctx, st, 0, 1, max(cfg.bursts, 1))
		if err != nil {
			return fmt.Errorf("burst run: %w", err)
		}
		fmt.Fprintf(out, "\n%s %s/%s, %d CPUs, load average %s at start and %s at end\n\n",
			runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadBefore, loadAverage())
		for _, b := range lim.bursts {
			report{w: out}.burst(b)
		}
		return nil
	}
	if cfg.only == "lambda" {
		say("lambda: the proxy in Lambda mode, %d streamed and %d non-streamed invocations", max(cfg.lambda, 1), 10*max(cfg.lambda, 1))
		lam, err := runLambda(ctx, st.proxyBin, st.keys[0].key, max(cfg.lambda, 1), cfg.events)
		if err != nil {
			return fmt.Errorf("Lambda run: %w", err)
		}
		fmt.Fprintf(out, "\n%s %s/%s, %d CPUs, load average %s at start and %s at end\n\n",
			runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadBefore, loadAverage())
		report{w: out}.lambda(lam)
		return nil
	}
	client := newClient()
	if cfg.only == "cpu" {
		say("cpu: %d non-streamed requests through the proxy from %d clients", cfg.cpuRequests, cfg.cpuClients)
		cpu, err := runCPU(ctx, client, st, cfg.cpuClients, max(cfg.cpuRequests, 1), cfg.cpuProfile)
		if err != nil {
			return fmt.Errorf("CPU run: %w", err)
		}
		fmt.Fprintf(out, "\n%s %s/%s, %d CPUs, load average %s at start and %s at end\n\n",
			runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadBefore, loadAverage())
		report{w: out}.cpu(cpu)
		return nil
	}
	direct := target{name: "direct", url: st.upstream + "/v1/chat/completions", apiKey: upstreamKey}
	proxied := target{name: "proxy", url: st.proxy + "/v1/chat/completions", apiKey: st.keys[0].key}
	paths := []target{direct, proxied}
	// The load run gives every stream its own key, as a class of students
	// would: one key for all would make every recording update one item.
	load := map[string][]target{}
	for i := range cfg.concurrency {
		load[direct.name] = append(load[direct.name], direct)
		load[proxied.name] = append(load[proxied.name], target{name: proxied.name, url: proxied.url, apiKey: st.keys[i].key})
	}

	// Warm-up: connections, the proxy's key, provider and secret caches.
	say("warming up (%d short streams per path)", cfg.warmup)
	warmBody := chatBody(warmupPrompt)
	for range cfg.warmup {
		for _, t := range paths {
			var ps pathStats
			rc, err := stream(ctx, client, t, warmBody)
			if ps.add(rc, err, warmupEvents); ps.failed > 0 {
				return fmt.Errorf("warm-up through %s: %w", t.name, ps.firstErr)
			}
		}
	}
	rssWarm, _, _ := memStatus(st.proxyCmd.Process.Pid)

	say("sequential: %d streams per path, %d events %v apart, interleaved", cfg.streams, cfg.events, cfg.interval)
	body := chatBody("Say hello")
	seq := map[string]*pathStats{direct.name: {}, proxied.name: {}}
	for i := range cfg.streams {
		order := paths
		if i%2 == 1 {
			order = []target{proxied, direct}
		}
		for _, t := range order {
			rc, err := stream(ctx, client, t, body)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			seq[t.name].add(rc, err, cfg.events)
		}
	}

	// The sequential run had one stream at a time: the Lambda case.
	_, peakOne, _ := memStatus(st.proxyCmd.Process.Pid)

	say("load: %d concurrent streams directly, then %d through the proxy", cfg.concurrency, cfg.concurrency)
	conc := map[string]*pathStats{}
	for _, t := range paths {
		// A short unmeasured round first opens the connections and fills
		// the proxy's caches for every key.
		if ps := concurrent(ctx, client, load[t.name], warmBody, 0, warmupEvents); ps.failed > 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("load warm-up through %s: %d of %d streams failed; first: %w", t.name, ps.failed, ps.streams, ps.firstErr)
		}
		conc[t.name] = concurrent(ctx, client, load[t.name], body, cfg.interval, cfg.events)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	rssNow, peak, memErr := memStatus(st.proxyCmd.Process.Pid)

	var cpu cpuResult
	if cfg.cpuRequests > 0 {
		say("cpu: %d non-streamed requests through the proxy from %d clients", cfg.cpuRequests, cfg.cpuClients)
		if cpu, err = runCPU(ctx, client, st, cfg.cpuClients, cfg.cpuRequests, cfg.cpuProfile); err != nil {
			return fmt.Errorf("CPU run: %w", err)
		}
	}

	var lam *lambdaResult
	if cfg.lambda > 0 {
		say("lambda: the proxy in Lambda mode, %d streamed and %d non-streamed invocations", cfg.lambda, 10*cfg.lambda)
		if lam, err = runLambda(ctx, st.proxyBin, st.keys[0].key, cfg.lambda, cfg.events); err != nil {
			return fmt.Errorf("Lambda run: %w", err)
		}
	}

	var lim *limitsResult
	if cfg.limits > 0 {
		say("limits: in-process proxy, %d streams per kind (limits, no limits, no checks), interleaved", cfg.limits)
		if lim, err = runLimits(ctx, st, cfg.limits, max(cfg.warmup, 3), cfg.bursts); err != nil {
			return fmt.Errorf("limits run: %w", err)
		}
	}

	// Every proxied request, warm-up included, should be in the ledger by
	// now: the proxy records before it ends the response.
	proxiedRequests := int64(cfg.warmup + cfg.streams + 2*cfg.concurrency + cpu.clients + cpu.requests + cpu.profiled + cpu.freshRequests() + lam.invocations())
	requests, successes, totalsErr := st.recorded(ctx)
	warns, errs, firstErr := st.logLevels()

	r := report{w: out}
	fmt.Fprintf(out, "\nstipend bench: streamed chat completion, %d content events %v apart, DynamoDB Local + moto_server\n",
		cfg.events, cfg.interval)
	fmt.Fprintf(out, "%s %s/%s, %d CPUs, load average %s at start and %s at end; stack start %.1f s\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), loadBefore, loadAverage(), setup.Seconds())

	r.header(fmt.Sprintf("Sequential: %d streams per path, interleaved", cfg.streams))
	r.streams(seq)
	r.delays(seq, true)
	r.ttfb(seq, true)
	r.reads(seq, true)
	r.tail(seq)
	r.blank()
	r.header(fmt.Sprintf("Load: %d concurrent streams per path, one key each, starts spread over %v", cfg.concurrency, cfg.interval))
	r.streams(conc)
	r.delays(conc, false)
	r.ttfb(conc, false)
	r.reads(conc, false)
	r.tail(conc)
	if memErr != nil {
		r.row("  proxy peak RSS (VmHWM)", "", "n/a", "", fmt.Sprintf("< %.0f MB", targetPeakRSSMB), "MISS: "+memErr.Error())
	} else {
		mb := float64(peak) / 1e6
		r.row("  proxy peak RSS (VmHWM)", "", fmt.Sprintf("%.1f MB", mb), "", fmt.Sprintf("< %.0f MB", targetPeakRSSMB), passFail(mb < targetPeakRSSMB))
		r.row("  proxy peak RSS, one stream at a time", "", fmt.Sprintf("%.1f MB", float64(peakOne)/1e6), "", "", "")
		r.row("  proxy RSS after warm-up", "", fmt.Sprintf("%.1f MB", float64(rssWarm)/1e6), "", "", "")
		r.row("  proxy RSS at the end", "", fmt.Sprintf("%.1f MB", float64(rssNow)/1e6), "", "", "")
	}
	if cfg.cpuRequests > 0 {
		r.blank()
		r.cpu(cpu)
	}
	if lam != nil {
		r.blank()
		r.lambda(lam)
	}
	if lim != nil {
		r.blank()
		r.limits(lim)
	}

	fmt.Fprintln(out)
	if totalsErr != nil {
		fmt.Fprintf(out, "ledger: could not read the keys' totals: %v\n", totalsErr)
	} else {
		fmt.Fprintf(out, "ledger: %d of %d proxied requests recorded (%d successful)\n", requests, proxiedRequests, successes)
	}
	fmt.Fprintf(out, "proxy log: %d warnings, %d errors\n", warns, errs)
	if firstErr != "" {
		fmt.Fprintf(out, "  first error: %s\n", firstErr)
	}
	for _, set := range []map[string]*pathStats{seq, conc} {
		for _, t := range paths {
			if ps := set[t.name]; ps.firstErr != nil {
				fmt.Fprintf(out, "%s: %d of %d streams failed; first: %v\n", t.name, ps.failed, ps.streams, ps.firstErr)
			}
		}
	}
	if lim != nil {
		w, e, first := lim.log.counts()
		fmt.Fprintf(out, "in-process proxy log (Limits): %d warnings, %d errors\n", w, e)
		if first != "" {
			fmt.Fprintf(out, "  first error: %s\n", first)
		}
		for _, p := range []*limitPath{lim.limited, lim.unlimited, lim.unchecked} {
			if p.firstErr != nil {
				fmt.Fprintf(out, "limits %s: %d of %d streams failed; first: %v\n", p.name, p.run-p.ok, p.run, p.firstErr)
			}
		}
	}
	if d := seq[direct.name]; d.content > 0 && d.contentReads*10 < d.content*9 {
		fmt.Fprintf(out, "note: directly from the upstream, %d content events arrived in only %d reads: "+
			"the fake upstream is not flushing each event, so these figures say little about the proxy\n", d.content, d.contentReads)
	}
	// Reporting (reporting.go): usage reports over a class's term.
	say("reporting: admin reports over a synthetic term (own table, same DynamoDB Local)")
	if err := runReporting(ctx, out, defaultReportingSize()); err != nil {
		return fmt.Errorf("reporting run: %w", err)
	}
	fmt.Fprintf(out, "total %.1f s\n", time.Since(began).Seconds())
	return nil
}

// ---- the table ----

// report prints fixed-width rows: label, direct, proxy, added, target, flag.
type report struct{ w io.Writer }

func (r report) row(label, direct, proxy, added, target, flag string) {
	line := fmt.Sprintf("%-44s %11s %11s %11s   %-11s %s", label, direct, proxy, added, target, flag)
	fmt.Fprintln(r.w, strings.TrimRight(line, " "))
}

func (r report) header(title string) {
	fmt.Fprintln(r.w, title)
	r.row("", "direct", "proxy", "added", "target", "")
}

func (r report) blank() { fmt.Fprintln(r.w) }

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func ms(v float64) string { return fmt.Sprintf("%.2f ms", v) }

func (r report) streams(set map[string]*pathStats) {
	d, p := set["direct"], set["proxy"]
	r.row("  streams ok / run", fmt.Sprintf("%d / %d", d.streams-d.failed, d.streams),
		fmt.Sprintf("%d / %d", p.streams-p.failed, p.streams), "", "", "")
}

// delays prints the per-event delay rows; judged says whether the issue's
// targets apply (the sequential run) or the row is for information.
func (r report) delays(set map[string]*pathStats, judged bool) {
	d50, d99 := quantiles(set["direct"].delaysMs)
	p50, p99 := quantiles(set["proxy"].delaysMs)
	n := fmt.Sprintf(" (%d events)", len(set["proxy"].delaysMs))
	r.row("  delay per SSE event p50"+n, ms(d50), ms(p50), ms(p50-d50), targetCol(judged, "< 0.5 ms"), verdict(judged, p50-d50 < targetAddedP50))
	r.row("  delay per SSE event p99", ms(d99), ms(p99), ms(p99-d99), targetCol(judged, "< 1.5 ms"), verdict(judged, p99-d99 < targetAddedP99))
}

func (r report) ttfb(set map[string]*pathStats, judged bool) {
	d50, d99 := quantiles(set["direct"].ttfbMs)
	p50, p99 := quantiles(set["proxy"].ttfbMs)
	r.row("  time to first byte p50", ms(d50), ms(p50), ms(p50-d50), targetCol(judged, "< 10 ms"), verdict(judged, p50-d50 < targetAddedTTFB))
	r.row("  time to first byte p99", ms(d99), ms(p99), ms(p99-d99), "", "info")
}

func (r report) reads(set map[string]*pathStats, judged bool) {
	d, p := set["direct"], set["proxy"]
	perContent := func(ps *pathStats) string {
		if ps.content == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", float64(ps.contentReads)/float64(ps.content))
	}
	perEvent := func(ps *pathStats) string {
		if ps.events == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", float64(ps.reads)/float64(ps.events))
	}
	ok := p.content > 0 && p.contentReads == p.content && p.misdelivered == 0
	r.row("  client reads per content event", perContent(d), perContent(p), "", targetCol(judged, "1.00"), verdict(judged, ok))
	r.row("  content events split or batched", fmt.Sprint(d.misdelivered), fmt.Sprint(p.misdelivered), "", targetCol(judged, "0"), "")
	r.row("  client reads per event (all)", perEvent(d), perEvent(p), "", "", "")
}

// tail prints how long after the last content event was sent the body
// ended: the finish, usage and [DONE] events plus, through the proxy,
// recording the request in DynamoDB.
func (r report) tail(set map[string]*pathStats) {
	d50, d99 := quantiles(set["direct"].tailMs)
	p50, p99 := quantiles(set["proxy"].tailMs)
	r.row("  body end after last event p50 (recording)", ms(d50), ms(p50), ms(p50-d50), "", "info")
	r.row("  body end after last event p99", ms(d99), ms(p99), ms(p99-d99), "", "info")
}

func targetCol(judged bool, t string) string {
	if judged {
		return t
	}
	return "(" + t + ")"
}

func verdict(judged, ok bool) string {
	if !judged {
		return "info"
	}
	return passFail(ok)
}
