package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/tokenizer"
)

// The Limits run: what the reservation before forwarding and the settle
// after the response cost. It serves proxy.Handler in this process, on its
// own dynamo.Store (DynamoDB Local, the same table) whose client counts
// every call, and sends short streams with a key that has limits, a key
// without, and the key without through a second Handler whose Limiter is a
// stub that touches nothing ("no checks").
const (
	limitsModel  = "gpt-4o-mini"
	limitsEvents = 3
	// markHeader tags a request so both servers can timestamp it: the one
	// correlation header the proxy forwards upstream.
	markHeader = "Idempotency-Key"
)

// limitsBody is a short streamed completion with an output cap, so the
// worst case reserved is a realistic one.
var limitsBody = []byte(`{"model":"` + limitsModel + `","stream":true,"stream_options":{"include_usage":true},` +
	`"max_completion_tokens":256,"messages":[{"role":"user","content":"Say hello fake:chunks=3 fake:interval=1ms"}]}`)

// limitPath is one kind of request in the Limits run and what it measured.
type limitPath struct {
	name     string
	t        target
	counters int // the charges budget.Plan gives its requests
	run, ok  int
	firstErr error
	// Over the successful requests: the Store's own count, the SDK-level
	// count of every call, and each request's spans.
	store                             dynamo.Stats
	ops                               opStats
	beforeMs, toUpMs, ttfbMs, afterMs []float64
	// DynamoDB calls that began between the proxy's entry and the
	// upstream's arrival (but for the limit headers' read), and the round
	// trips they took (concurrent calls are one).
	callsBefore, tripsBefore int
}

func (p *limitPath) fail(err error) {
	if p.firstErr == nil {
		p.firstErr = err
	}
}

// limitsResult is the Limits run.
type limitsResult struct {
	n                             int
	limited, unlimited, unchecked *limitPath // unchecked: the stub Limiter ("no checks")
	keyTTL                        time.Duration
	log                           *levelLog
	bursts                        []*burstResult
}

// runLimits runs n measured requests of each kind, interleaved, after
// warmup unmeasured ones each.
func runLimits(ctx context.Context, st *stack, n, warmup, bursts int) (*limitsResult, error) {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	ops := newOpCounter()
	db, err := ddb.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	store := dynamo.New(db, benchTable, 24*time.Hour, dynamo.WithMiddleware(ops.count))
	prices, err := pricing.Default()
	if err != nil {
		return nil, err
	}
	price, ok := prices.Lookup(limitsModel)
	if !ok {
		return nil, fmt.Errorf("no price for %s", limitsModel)
	}
	tok := tokenizer.New()
	if _, err := tok.Count(tokenizer.O200kBase, "warm up"); err != nil {
		return nil, err
	}
	res := &limitsResult{n: n, keyTTL: 5 * time.Second, log: &levelLog{}}
	handler := func(lim proxy.Limiter) http.Handler {
		return st.marks.proxy(proxy.New(proxy.Config{
			Keys: store, Providers: store, Owners: store, Limiter: lim,
			Secrets: staticSecret(upstreamKey), Prices: prices, Tokenizer: tok,
			KeyTTL: res.keyTTL, Log: slog.New(res.log),
		}))
	}
	realURL, stopReal, err := serveLocal(handler(store))
	if err != nil {
		return nil, err
	}
	defer stopReal()
	stubURL, stopStub, err := serveLocal(handler(noLimits{}))
	if err != nil {
		return nil, err
	}
	defer stopStub()

	limited, err := st.limitsKey(ctx, "bench-limits", func(k *apikey.Key) {
		k.CostLimitLifetime = 1000 * money.Dollar
		k.CostLimitPerMonth = 500 * money.Dollar
		k.CostLimitOverTime, k.CostLimitUnit = 100*money.Dollar, string(budget.Day)
		k.RateLimitOverTime, k.RateLimitUnit = 1_000_000, string(budget.Minute)
		k.ModelLimits = map[string]apikey.ModelLimit{limitsModel: {RPM: 1_000_000, TPM: 1_000_000_000}}
	})
	if err != nil {
		return nil, err
	}
	unlimited, err := st.limitsKey(ctx, "bench-no-limits", func(*apikey.Key) {})
	if err != nil {
		return nil, err
	}
	path := func(name, url string, k *apikey.Key, key string) *limitPath {
		plan := budget.Plan(budget.Request{KeyID: k.ID, Key: budget.KeyLimits(k), Model: limitsModel, Family: price.Model, Now: time.Now()})
		return &limitPath{name: name, t: target{name: name, url: url + "/v1/chat/completions", apiKey: key}, counters: len(plan), ops: opStats{}}
	}
	res.limited = path("limits", realURL, limited.k, limited.key)
	res.unlimited = path("no-limits", realURL, unlimited.k, unlimited.key)
	res.unchecked = path("no-checks", stubURL, unlimited.k, unlimited.key)
	res.unchecked.counters = 0
	paths := []*limitPath{res.limited, res.unlimited, res.unchecked}

	client := newClient()
	defer client.CloseIdleConnections()
	one := func(p *limitPath, id string, measure bool) error {
		s0, o0 := store.Stats(), ops.snapshot()
		rc, err := streamWith(ctx, client, p.t, limitsBody, http.Header{markHeader: {id}})
		s1, o1 := store.Stats(), ops.snapshot()
		m, found := st.marks.take(id)
		if err == nil {
			if a := analyze(rc.body, rc.reads); a.content != limitsEvents || !a.done {
				err = fmt.Errorf("%s: incomplete stream: %d of %d content events, [DONE] seen: %v", p.name, a.content, limitsEvents, a.done)
			} else if !found {
				err = fmt.Errorf("%s: the servers did not see request %s", p.name, id)
			}
		}
		var sp limitSpans
		if err == nil {
			sp, err = spans(rc.sentAt, rc.eofAt, m)
		}
		if !measure {
			return err
		}
		p.run++
		if err != nil {
			p.fail(err)
			return nil
		}
		p.ok++
		p.store.Calls += s1.Calls - s0.Calls
		p.store.Capacity += s1.Capacity - s0.Capacity
		p.ops.add(o1.minus(o0))
		// The x-ratelimit-* headers' read (BatchGetItem) begins once the
		// reservation holds and runs alongside the upstream call: it is
		// not waited for before forwarding.
		calls, trips := ops.roundTrips(m.enter, m.arrive, "BatchGetItem")
		p.callsBefore += calls
		p.tripsBefore += trips
		p.beforeMs = append(p.beforeMs, sp.before)
		p.toUpMs = append(p.toUpMs, sp.toUpstream)
		p.ttfbMs = append(p.ttfbMs, float64(rc.ttfb)/1e6)
		p.afterMs = append(p.afterMs, sp.after)
		return nil
	}
	for i := range warmup {
		for _, p := range paths {
			if err := one(p, fmt.Sprintf("warm-%s-%d", p.name, i), false); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("limits warm-up: %w", err)
			}
		}
	}
	for i := range n {
		// Rotate the order so that no kind always follows another.
		for j := range paths {
			p := paths[(i+j)%len(paths)]
			_ = one(p, fmt.Sprintf("run-%s-%d", p.name, i), true)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	for range bursts {
		b, err := runBurst(ctx, st, client, realURL, len(res.bursts))
		if err != nil {
			return nil, err
		}
		res.bursts = append(res.bursts, b)
	}
	return res, nil
}

// limitsKeyed is a key created for the Limits run.
type limitsKeyed struct {
	k   *apikey.Key
	key string
}

// limitsKey creates a key on the seeded provider, configured by set.
func (st *stack) limitsKey(ctx context.Context, name string, set func(*apikey.Key)) (limitsKeyed, error) {
	now := time.Now().Unix()
	id, key := apikey.Generate()
	k := &apikey.Key{
		ID: id, Name: name, Hash: apikey.Hash(key), SettingIDs: []string{st.providerID},
		CreatedAt: now, UpdatedAt: now, KeyRetrievalMethod: "bench",
	}
	set(k)
	if err := st.store.CreateKey(ctx, k); err != nil {
		return limitsKeyed{}, fmt.Errorf("create key %s: %w", name, err)
	}
	return limitsKeyed{k: k, key: key}, nil
}

// staticSecret is the provider key, as the secrets cache returns it once warm.
type staticSecret string

func (s staticSecret) Get(context.Context, string) (string, error) { return string(s), nil }

// noLimits is a Limiter that reserves, settles and reads nothing: the proxy
// without limit checks.
type noLimits struct{}

func (noLimits) Reserve(context.Context, *budget.Reservation) error               { return nil }
func (noLimits) Settle(context.Context, *budget.Reservation, *ledger.Event) error { return nil }
func (noLimits) Release(context.Context, *budget.Reservation) error               { return nil }
func (noLimits) Abandon(context.Context, *budget.Reservation) error               { return nil }
func (noLimits) Counters(_ context.Context, cs []budget.Charge) ([]int64, error) {
	return make([]int64, len(cs)), nil
}

// serveLocal serves h on a free loopback port.
func serveLocal(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// ---- timestamps ----

// marks timestamps requests tagged with markHeader, as the in-process proxy
// and the fake upstream see them. Untagged requests pass untouched.
type marks struct {
	mu sync.Mutex
	m  map[string]*mark
}

func newMarks() *marks { return &marks{m: map[string]*mark{}} }

func (ms *marks) stamp(id string, f func(*mark)) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.m[id]
	if m == nil {
		m = &mark{}
		ms.m[id] = m
	}
	f(m)
}

// take returns and forgets the marks of request id.
func (ms *marks) take(id string) (mark, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m, ok := ms.m[id]
	delete(ms.m, id)
	if !ok {
		return mark{}, false
	}
	return *m, true
}

// proxy stamps when the proxy's handler gets a tagged request.
func (ms *marks) proxy(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(markHeader); id != "" {
			now := time.Now().UnixNano()
			ms.stamp(id, func(m *mark) { m.enter = now })
			defer func() {
				left := time.Now().UnixNano()
				ms.stamp(id, func(m *mark) { m.left = left })
			}()
		}
		h.ServeHTTP(w, r)
	})
}

// upstream stamps when the upstream's handler gets a tagged request and
// when it has written all of the response.
func (ms *marks) upstream(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(markHeader)
		if id == "" {
			h.ServeHTTP(w, r)
			return
		}
		now := time.Now().UnixNano()
		ms.stamp(id, func(m *mark) { m.arrive = now })
		h.ServeHTTP(w, r)
		done := time.Now().UnixNano()
		ms.stamp(id, func(m *mark) { m.upDone = done })
	})
}

// ---- the in-process proxy's log ----

// levelLog counts the in-process proxy's warnings and errors and keeps the
// first error.
type levelLog struct {
	mu          sync.Mutex
	warns, errs int
	first       string
}

func (l *levelLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }

func (l *levelLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Level < slog.LevelError {
		l.warns++
		return nil
	}
	l.errs++
	if l.first == "" {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		l.first = b.String()
	}
	return nil
}

func (l *levelLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levelLog) WithGroup(string) slog.Handler      { return l }

func (l *levelLog) counts() (warns, errs int, first string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.warns, l.errs, l.first
}

// ---- the table ----

func (r report) limits(lr *limitsResult) {
	nl, l, nc := lr.unlimited, lr.limited, lr.unchecked
	fmt.Fprintf(r.w, "Limits: in-process proxy.Handler on DynamoDB Local, %d sequential streams per kind (%d events), interleaved\n",
		lr.n, limitsEvents)
	r.row("", "no limits", "limits", "added", "", "")
	r.row("  requests ok / run", okRun(nl), okRun(l), "", "", "")
	r.row("  counters reserved per request", fmt.Sprint(nl.counters), fmt.Sprint(l.counters), fmt.Sprintf("%+d", l.counters-nl.counters), "", "")
	perReq := func(p *limitPath, v float64) float64 { return v / float64(max(p.ok, 1)) }
	count := func(a, b float64) (string, string, string) {
		return fmt.Sprintf("%.2f", a), fmt.Sprintf("%.2f", b), fmt.Sprintf("%+.2f", b-a)
	}
	units := func(a, b float64, reported bool) (string, string, string) {
		if !reported {
			return "n/a", "n/a", ""
		}
		return count(a, b)
	}
	reported := l.ops.total().reported > 0 || nl.ops.total().reported > 0
	a, b, d := count(perReq(nl, float64(nl.store.Calls)), perReq(l, float64(l.store.Calls)))
	r.row("  DynamoDB calls per request (Store.Stats)", a, b, d, "", "")
	a, b, d = units(perReq(nl, nl.store.Capacity), perReq(l, l.store.Capacity), reported)
	r.row("  capacity units per request (Store.Stats)", a, b, d, "", "")
	a, b, d = count(perReq(nl, float64(nl.ops.total().calls)), perReq(l, float64(l.ops.total().calls)))
	r.row("  DynamoDB calls per request (all, client)", a, b, d, "", "")
	a, b, d = units(perReq(nl, nl.ops.total().units), perReq(l, l.ops.total().units), reported)
	r.row("  capacity units per request (all, client)", a, b, d, "", "")
	a, b, d = count(perReq(nl, float64(nl.callsBefore)), perReq(l, float64(l.callsBefore)))
	r.row("  DynamoDB calls before forwarding per request", a, b, d, "", "")
	a, b, d = count(perReq(nl, float64(nl.tripsBefore)), perReq(l, float64(l.tripsBefore)))
	r.row("  DynamoDB round trips before forwarding", a, b, d, "1 (no limits)", "")
	r.limitSpans(nl, l)

	fmt.Fprintln(r.w, "Limit checks: the limits key against the same Handler with a stub Limiter (no DynamoDB)")
	r.row("", "no checks", "limits", "added", "", "")
	r.row("  requests ok / run", okRun(nc), okRun(l), "", "", "")
	a, b, d = count(perReq(nc, float64(nc.ops.total().calls)), perReq(l, float64(l.ops.total().calls)))
	r.row("  DynamoDB calls per request (all, client)", a, b, d, "", "")
	r.limitSpans(nc, l)
	// The target: a key without limits adds to the time to first
	// byte at most one store round trip (its reserve) plus 1 ms.
	if rs := nl.ops["UpdateItem (reserve)"]; rs.calls > 0 && len(nc.ttfbMs) > 0 && len(nl.ttfbMs) > 0 {
		a50, _ := quantiles(nc.ttfbMs)
		b50, _ := quantiles(nl.ttfbMs)
		bound := float64(rs.elapsed)/float64(rs.calls)/1e6 + 1
		r.row("  added time to first byte, no limits p50", ms(a50), ms(b50), ms(b50-a50),
			"<= "+ms(bound), passFail(b50-a50 <= bound))
		fmt.Fprintln(r.w, "  (no checks against the no-limits key; the bound is the mean reserve UpdateItem plus 1 ms)")
	}

	fmt.Fprintf(r.w, "  DynamoDB calls per request by operation (capacity units per request, mean time per call);\n"+
		"  GetItem is the key, provider and organisation reads, cached %v:\n", lr.keyTTL)
	for _, p := range []*limitPath{l, nl, nc} {
		for i, line := range p.ops.perRequest(p.ok) {
			name := ""
			if i == 0 {
				name = p.name + ":"
			}
			fmt.Fprintf(r.w, "    %-10s %s\n", name, line)
		}
	}
	if !reported {
		fmt.Fprintln(r.w, "  note: DynamoDB Local reported no consumed capacity (ReturnConsumedCapacity TOTAL was asked on every call)")
	}
	fmt.Fprintln(r.w, "  note: calls, capacity units and times are DynamoDB Local's on this machine, not DynamoDB's on AWS")
	for _, b := range lr.bursts {
		r.burst(b)
	}
}

// limitSpans prints the latency rows of the Limits run, base against p.
func (r report) limitSpans(base, p *limitPath) {
	rows := []struct {
		label  string
		values func(*limitPath) []float64
	}{
		{"  proxy overhead before forwarding", func(p *limitPath) []float64 { return p.beforeMs }},
		{"  client send to upstream arrival", func(p *limitPath) []float64 { return p.toUpMs }},
		{"  time to first byte", func(p *limitPath) []float64 { return p.ttfbMs }},
		{"  body end after upstream's last byte", func(p *limitPath) []float64 { return p.afterMs }},
	}
	for _, row := range rows {
		a50, a99 := quantiles(row.values(base))
		b50, b99 := quantiles(row.values(p))
		r.row(row.label+" p50", ms(a50), ms(b50), ms(b50-a50), "", "info")
		r.row(row.label+" p99", ms(a99), ms(b99), ms(b99-a99), "", "info")
	}
}

func okRun(p *limitPath) string { return fmt.Sprintf("%d / %d", p.ok, p.run) }
