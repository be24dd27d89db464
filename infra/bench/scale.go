package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/rollover"
	"github.com/stipend/stipend/shared/secrets"
	"github.com/stipend/stipend/shared/tokenizer"
	"github.com/stipend/stipend/shared/user"
)

// The Scale section (-only scale), for docs/cost.md and docs/scale.md: what
// one proxied request costs in DynamoDB read and write units and in Secrets
// Manager calls, and how many requests per second one key, one user and the
// organisation sustain. It is self-contained: its own DynamoDB Local (in
// memory, its own table), the fake upstream in this process, and
// proxy.Handler in this process wired as functions/proxy wires it — the
// provider key read through secrets.NewCache (the production cache, 5 min)
// from a Secrets Manager stand-in that counts GetSecretValue calls, keys,
// users and the organisation cached for 5 s (STIPEND_KEY_CACHE_TTL's
// default).
//
// Capacity: n sequential non-streamed requests per kind (a key without
// limits; a key with lifetime, monthly, daily, rate and model limits; a key
// of a user with a spend limit; a key under an organisation spend limit),
// every DynamoDB call counted at the SDK with ReturnConsumedCapacity TOTAL
// and split into reads (GetItem, Query, BatchGetItem, TransactGetItems)
// and writes (PutItem, UpdateItem, DeleteItem, TransactWriteItems).
//
// Throughput: `total` requests per scenario from `clients` concurrent
// clients: 32 keys without limits (the baseline), all clients on one key
// without limits, on one key with limits, on 32 keys of one user with a
// limit, the 32 keys without limits again, and the 32 keys under an
// organisation limit; then twice more the 32 keys with the limit taken off
// and set again, and the median of the three pairs' ratios.
const (
	scaleTable    = "stipend-scale"
	scaleSecretID = "stipend-bench/scale-upstream"
	scaleKeys     = 32
	// scalePairs is how many pairs of runs (the 32 keys without, then with
	// an organisation limit) the ratio is the median of.
	scalePairs    = 3
	scaleKeyTTL   = 5 * time.Second
	scaleSecretTT = 5 * time.Minute
)

// scaleBody is a short non-streamed completion with an output cap, so the
// worst case reserved is a realistic one.
var scaleBody = []byte(`{"model":"gpt-4o-mini","max_completion_tokens":256,` +
	`"messages":[{"role":"user","content":"Say hello fake:chunks=3"}]}`)

// scaleKind is one kind of key in the Capacity run.
type scaleKind struct {
	name     string
	key      string
	counters int
	ok, run  int
	ops      opStats
	tx       txItems // summed over the measured requests
	firstErr error
}

// scaleLoad is one throughput scenario.
type scaleLoad struct {
	name                string
	keys                []string
	ok, refused, failed int
	firstErr            error
	wall                time.Duration
	latMs               []float64
	ops                 opStats
}

// smCounter is a Secrets Manager stand-in that answers GetSecretValue for
// one secret and counts the calls by operation.
type smCounter struct {
	value string
	mu    sync.Mutex
	calls map[string]int
}

func (s *smCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if op != "GetSecretValue" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"__type":"InvalidRequestException","message":"not served by the bench"}`)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:" + scaleSecretID + "-AbCdEf", "Name": scaleSecretID,
		"SecretString": s.value, "VersionId": "v1", "VersionStages": []string{"AWSCURRENT"}, "CreatedDate": 0,
	})
}

func (s *smCounter) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

// runScale runs the Scale section and prints it to out.
func runScale(ctx context.Context, out io.Writer, n, clients, total int) error {
	began := time.Now()
	loadBefore := loadAverage()
	say("scale: starting DynamoDB Local (in memory)")
	ddbLocal, err := startLocalDynamoDB(ctx)
	if err != nil {
		return err
	}
	defer ddbLocal.Close()
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return err
	}
	sm := &smCounter{value: upstreamKey, calls: map[string]int{}}
	smSrv := httptest.NewServer(sm)
	defer smSrv.Close()
	secretCache := secrets.NewCache(secrets.NewManagerAt(cfg, smSrv.URL), scaleSecretTT)

	upURL, stopUp, err := serveLocal(fakeupstream.New(fakeupstream.Options{APIKey: upstreamKey, Interval: -1, Chunks: 3, MaxRecorded: -1}))
	if err != nil {
		return err
	}
	defer stopUp()

	ops, tx := newOpCounter(), &txItems{}
	db, err := ddb.New(ctx, cfg)
	if err != nil {
		return err
	}
	store := dynamo.New(db, scaleTable, 24*time.Hour, dynamo.WithMiddleware(ops.count, tx.count), dynamo.WithSteadyReads(scaleKeyTTL)) // as functions/proxy wires it
	if err := store.CreateTable(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	now := time.Now()
	prov := &provider.Setting{ID: apikey.NewID(), Name: "scale-upstream", Provider: provider.OpenAI,
		BaseURL: upURL + "/v1", SecretID: scaleSecretID, CreatedAt: now.Unix(), UpdatedAt: now.Unix()}
	if err := store.CreateProvider(ctx, prov); err != nil {
		return err
	}
	newKey := func(name string, set func(*apikey.Key)) (*apikey.Key, string, error) {
		id, key := apikey.Generate()
		k := &apikey.Key{ID: id, Name: name, Hash: apikey.Hash(key), SettingIDs: []string{prov.ID},
			CreatedAt: now.Unix(), UpdatedAt: now.Unix(), KeyRetrievalMethod: "bench"}
		set(k)
		return k, key, store.CreateKey(ctx, k)
	}
	noop := func(*apikey.Key) {}
	_, plain, err := newKey("scale-no-limits", noop)
	if err != nil {
		return err
	}
	limitedKey, limited, err := newKey("scale-limits", func(k *apikey.Key) {
		k.CostLimitLifetime = 1000 * money.Dollar
		k.CostLimitPerMonth = 500 * money.Dollar
		k.CostLimitOverTime, k.CostLimitUnit = 100*money.Dollar, string(budget.Day)
		k.RateLimitOverTime, k.RateLimitUnit = 1_000_000, string(budget.Minute)
		k.ModelLimits = map[string]apikey.ModelLimit{limitsModel: {RPM: 1_000_000, TPM: 1_000_000_000}}
	})
	if err != nil {
		return err
	}
	u := &user.User{ID: apikey.NewID(), UserID: "scale-student", Name: "scale", CreatedAt: now.Unix(), UpdatedAt: now.Unix(),
		CostLimitLifetime: 1000 * money.Dollar}
	if err := store.CreateUser(ctx, u); err != nil {
		return err
	}
	free := &user.User{ID: apikey.NewID(), UserID: "scale-free", Name: "scale, no limit", CreatedAt: now.Unix(), UpdatedAt: now.Unix()}
	if err := store.CreateUser(ctx, free); err != nil {
		return err
	}
	_, freeKey, err := newKey("scale-free-user", func(k *apikey.Key) { k.UserID = free.UserID })
	if err != nil {
		return err
	}
	var class, userKeys []string
	for i := range scaleKeys {
		_, k, err := newKey(fmt.Sprintf("scale-class-%d", i), noop)
		if err != nil {
			return err
		}
		class = append(class, k)
		_, k, err = newKey(fmt.Sprintf("scale-user-%d", i), func(k *apikey.Key) { k.UserID = u.UserID })
		if err != nil {
			return err
		}
		userKeys = append(userKeys, k)
	}

	prices, err := pricing.Default()
	if err != nil {
		return err
	}
	tok := tokenizer.New()
	if _, err := tok.Count(tokenizer.O200kBase, "warm up"); err != nil {
		return err
	}
	plog := &levelLog{}
	serve := func() (string, func(), error) {
		return serveLocal(proxy.New(proxy.Config{
			Keys: store, Providers: store, Owners: store, Limiter: store, History: store,
			Secrets: secretCache, Prices: prices, Tokenizer: tok, KeyTTL: scaleKeyTTL, Log: slog.New(plog),
		}))
	}
	url, stop, err := serve()
	if err != nil {
		return err
	}
	client := newClient()
	defer client.CloseIdleConnections()
	requests := 0
	send := func(key string) (int, time.Duration, error) {
		requests++ // callers serialise or count separately (see load)
		return scaleSend(ctx, client, url, key)
	}
	// planCount is the counters reserved before forwarding (the others are
	// counted at settle).
	planCount := func(k *apikey.Key, r budget.Request) int {
		r.KeyID, r.Key, r.Model, r.Family, r.Now = k.ID, budget.KeyLimits(k), limitsModel, limitsModel, time.Now()
		reserved := 0
		for _, c := range budget.Plan(r) {
			if !c.Deferred {
				reserved++
			}
		}
		return reserved
	}
	userLimits := budget.Limits{Lifetime: u.CostLimitLifetime}
	orgLimits := budget.Limits{PerMonth: 10_000 * money.Dollar}

	capacity := func(name, key string, counters int) *scaleKind {
		kind := &scaleKind{name: name, key: key, counters: counters, ops: opStats{}}
		for i := range n + 3 {
			o0, t0 := ops.snapshot(), tx.snapshot()
			status, _, err := send(key)
			o1, t1 := ops.snapshot(), tx.snapshot()
			if i < 3 {
				continue // warm-up: caches, connections
			}
			kind.run++
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d", status)
			}
			if err != nil {
				if kind.firstErr == nil {
					kind.firstErr = err
				}
				continue
			}
			kind.ok++
			kind.ops.add(o1.minus(o0))
			kind.tx.calls += t1.calls - t0.calls
			kind.tx.items += t1.items - t0.items
			kind.tx.puts += t1.puts - t0.puts
			kind.tx.indexPuts += t1.indexPuts - t0.indexPuts
			kind.tx.estWCU += t1.estWCU - t0.estWCU
			kind.tx.maxPut = max(kind.tx.maxPut, t1.maxPut)
		}
		return kind
	}
	var loadReqs atomic.Int64
	load := func(name string, keys []string) *scaleLoad {
		l := &scaleLoad{name: name, keys: keys}
		// Warm every key into the caches first.
		for _, k := range keys {
			_, _, _ = scaleSend(ctx, client, url, k)
			loadReqs.Add(1)
		}
		var mu sync.Mutex
		var next atomic.Int64
		var wg sync.WaitGroup
		o0 := ops.snapshot()
		start := time.Now()
		for c := range clients {
			wg.Go(func() {
				for next.Add(1) <= int64(total) && ctx.Err() == nil {
					status, d, err := scaleSend(ctx, client, url, keys[c%len(keys)])
					loadReqs.Add(1)
					mu.Lock()
					switch {
					case err != nil || (status != http.StatusOK && status != http.StatusTooManyRequests):
						l.failed++
						if l.firstErr == nil {
							l.firstErr = fmt.Errorf("status %d: %v", status, err)
						}
					case status == http.StatusTooManyRequests:
						l.refused++
					default:
						l.ok++
						l.latMs = append(l.latMs, float64(d)/1e6)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		l.wall = time.Since(start)
		l.ops = ops.snapshot().minus(o0)
		return l
	}

	// The scheduled function's writes per period of activity, before any
	// other traffic (each fold visits every key in the ledgers' index): a
	// fresh key serves a few requests and is then left alone while the
	// schedule runs every 5 minutes (its clock injected) until the key
	// has left the index.
	say("scale: the scheduled function after a period of activity (%v)", sparseRequests)
	var periods []sparsePeriod
	for i, reqs := range sparseRequests {
		_, key, err := newKey(fmt.Sprintf("scale-period-%d", i), noop)
		if err != nil {
			return err
		}
		p, err := activityPeriod(ctx, store, ops, tx, reqs, func() (int, error) {
			status, _, err := send(key)
			return status, err
		})
		if err != nil {
			return err
		}
		periods = append(periods, p)
	}

	say("scale: capacity, %d sequential requests per kind", n)
	kinds := []*scaleKind{
		capacity("key without limits", plain, planCount(&apikey.Key{}, budget.Request{})),
		capacity("key with limits", limited, planCount(limitedKey, budget.Request{})),
		capacity("key of a user without a limit", freeKey, planCount(&apikey.Key{}, budget.Request{UserID: free.UserID})),
		capacity("key of a user with a limit", userKeys[0], planCount(&apikey.Key{}, budget.Request{UserID: u.UserID, User: &userLimits})),
	}
	say("scale: throughput, %d requests per scenario from %d clients", total, clients)
	loads := []*scaleLoad{
		load(fmt.Sprintf("%d keys, no limits", scaleKeys), class),
		load("one key, no limits", []string{plain}),
		load("one key with limits", []string{limited}),
		load(fmt.Sprintf("%d keys of one user with a limit", scaleKeys), userKeys),
		// Again, right before the organisation limit: the ratio below
		// compares neighbours, the machine's load drifts.
		load(fmt.Sprintf("%d keys, no limits (again)", scaleKeys), class),
	}
	// The organisation limit applies to every key: set it last, on a fresh
	// Handler (empty caches), and take it off and set it again for two
	// more pairs of runs: the ratio is the median of scalePairs pairs of
	// neighbours, as the machine's load drifts within seconds.
	org := &user.Org{} // PutOrg counts its versions
	orgLimit := func(limit money.Nanos) error {
		stop()
		org.CostLimitPerMonth, org.UpdatedAt = limit, time.Now().Unix()
		if err := store.PutOrg(ctx, org); err != nil {
			return err
		}
		url, stop, err = serve()
		return err
	}
	if err := orgLimit(orgLimits.PerMonth); err != nil {
		return err
	}
	defer func() { stop() }()
	kinds = append(kinds, capacity("key under an organisation limit", plain, planCount(&apikey.Key{}, budget.Request{Org: &orgLimits})))
	loads = append(loads, load(fmt.Sprintf("%d keys under an organisation limit", scaleKeys), class))
	pairs := [][2]*scaleLoad{{loads[len(loads)-2], loads[len(loads)-1]}}
	for n := 2; n <= scalePairs; n++ {
		if err := orgLimit(0); err != nil {
			return err
		}
		base := load(fmt.Sprintf("%d keys, no limits (pair %d)", scaleKeys, n), class)
		if err := orgLimit(orgLimits.PerMonth); err != nil {
			return err
		}
		org := load(fmt.Sprintf("%d keys, organisation limit (pair %d)", scaleKeys, n), class)
		loads = append(loads, base, org)
		pairs = append(pairs, [2]*scaleLoad{base, org})
	}

	allRequests := int64(requests) + loadReqs.Load()
	fmt.Fprintf(out, "\nstipend bench: scale (in-process proxy.Handler, DynamoDB Local in memory, fake upstream; %s %d CPUs)\n",
		"load average "+loadBefore+" at start and "+loadAverage()+" at end;", runtime.NumCPU())
	fmt.Fprintf(out, "Capacity per request: %d sequential non-streamed requests per kind, after 3 unmeasured; key, provider, user and organisation cached %v\n", n, scaleKeyTTL)
	fmt.Fprintf(out, "  %-36s %8s %9s %7s %7s %9s\n", "kind", "ok/run", "reserved", "reads", "RCU", "writes  WCU")
	for _, k := range kinds {
		rc, ru, wc, wu := readsWrites(k.ops, k.ok)
		fmt.Fprintf(out, "  %-36s %8s %9d %7.2f %7.2f %7.2f %5.2f\n", k.name, fmt.Sprintf("%d/%d", k.ok, k.run), k.counters, rc, ru, wc, wu)
		for _, line := range k.ops.perRequest(k.ok) {
			fmt.Fprintf(out, "      %s\n", line)
		}
		if f := float64(max(k.ok, 1)); k.tx.estWCU > 0 {
			fmt.Fprintf(out, "      transactions: %.2f items per request (%.2f puts); %.2f index entries, largest put %d B; AWS estimate %.1f WCU per request, all writes\n",
				float64(k.tx.items)/f, float64(k.tx.puts)/f, float64(k.tx.indexPuts)/f, k.tx.maxPut, k.tx.estWCU/f)
		}
		if k.firstErr != nil {
			fmt.Fprintf(out, "      first error: %v\n", k.firstErr)
		}
	}
	fmt.Fprintf(out, "The scheduled function after a period of activity: a fresh key serves N requests, then %d runs of sweep and fold 5 minutes apart\n", sparseRuns)
	for _, p := range periods {
		_, ru, wc, wu := readsWrites(p.ops, 1)
		fmt.Fprintf(out, "  N=%-3d %d runs: %.0f writes (%.1f Local WCU, AWS estimate %.0f WU + %d index changes of UpdateItems, assumed), %.1f RCU; per request %.1f WU\n",
			p.requests, p.runs, wc, wu, p.estWU, periodIndexChanges, ru, (p.estWU+periodIndexChanges)/float64(p.requests))
		for _, line := range p.ops.perRequest(1) {
			fmt.Fprintf(out, "      %s\n", line)
		}
	}
	fmt.Fprintf(out, "Throughput: %d requests per scenario from %d concurrent clients (non-streamed, upstream answers at once)\n", total, clients)
	fmt.Fprintf(out, "  %-40s %7s %7s %7s %8s %8s %8s %10s\n", "scenario", "ok", "429", "failed", "req/s", "p50 ms", "p99 ms", "calls/req")
	for _, l := range loads {
		p50, p99 := quantiles(l.latMs)
		done := l.ok + l.refused + l.failed
		fmt.Fprintf(out, "  %-40s %7d %7d %7d %8.1f %8.1f %8.1f %10.2f\n", l.name, l.ok, l.refused, l.failed,
			float64(l.ok)/l.wall.Seconds(), p50, p99, float64(l.ops.total().calls)/float64(max(done, 1)))
		if l.firstErr != nil {
			fmt.Fprintf(out, "      first error: %v\n", l.firstErr)
		}
	}
	if ratios := pairRatios(pairs); len(ratios) == len(pairs) {
		mid := median(ratios)
		fmt.Fprintf(out, "  organisation limit with %d keys / the same keys without, run just before, %d pairs: %s; median %.2f   target >= 0.80 %s\n",
			scaleKeys, len(pairs), formatRatios(ratios), mid, map[bool]string{true: "PASS", false: "MISS"}[mid >= 0.8])
	}
	fmt.Fprintf(out, "Secrets Manager: %d calls (%v) for %d proxied requests over %.0f s, one process, cache TTL %v\n",
		sm.total(), sm.calls, allRequests, time.Since(began).Seconds(), scaleSecretTT)
	w, e, first := plog.counts()
	fmt.Fprintf(out, "proxy log: %d warnings, %d errors%s\n", w, e, map[bool]string{true: "; first: " + first, false: ""}[first != ""])
	fmt.Fprintln(out, "note: DynamoDB Local's capacity figures and times on this machine, not DynamoDB's on AWS (see docs/cost.md)")
	return nil
}

// pairRatios is, for each pair of runs (without, with the organisation
// limit), the second's throughput over the first's; nil when a run
// served nothing.
func pairRatios(pairs [][2]*scaleLoad) []float64 {
	var out []float64
	for _, p := range pairs {
		base, org := p[0], p[1]
		if base.ok == 0 || base.wall <= 0 || org.wall <= 0 {
			return nil
		}
		out = append(out, (float64(org.ok)/org.wall.Seconds())/(float64(base.ok)/base.wall.Seconds()))
	}
	return out
}

func formatRatios(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, ", ")
}

// scaleSend sends scaleBody with key and returns the status and the time
// to the end of the body.
func scaleSend(ctx context.Context, c *http.Client, url, key string) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(string(scaleBody)))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, time.Since(start), err
}

// readsWrites splits ops over n requests into read and write calls and
// capacity units per request, by operation.
func readsWrites(ops opStats, n int) (readCalls, readUnits, writeCalls, writeUnits float64) {
	if n <= 0 {
		return
	}
	reads := []string{"GetItem", "Query", "BatchGetItem", "TransactGetItems", "Scan"}
	for op, v := range ops {
		base, _, _ := strings.Cut(op, " ")
		if slices.Contains(reads, base) {
			readCalls += float64(v.calls)
			readUnits += v.units
		} else {
			writeCalls += float64(v.calls)
			writeUnits += v.units
		}
	}
	f := float64(n)
	return readCalls / f, readUnits / f, writeCalls / f, writeUnits / f
}

// txItems counts what DynamoDB on AWS bills for the writes a client
// sends, which DynamoDB Local does not report faithfully for transactions:
// per TransactWriteItems call its items, by action, the largest Put's size,
// and the global secondary index entries its Puts write (an item with an
// index's key attributes). On AWS each item in a transaction costs 2 write
// units per KB (rounded up), a write outside one 1 per KB, and each index
// entry written 1 more per KB. The estimate (estWCU) covers every write:
// a PutItem by its item's size and index entries, an UpdateItem or
// DeleteItem 1 unit (the ledger and counter items they write are under
// 1 KB, as DynamoDB Local's own figures for them show).
type txItems struct {
	mu                     sync.Mutex
	calls                  int64
	items, puts, indexPuts int64
	estWCU                 float64
	maxPut                 int
}

// count is the counting middleware of a Store (dynamo.WithMiddleware).
func (t *txItems) count(ctx context.Context, _ string, in any, next func(context.Context) (any, error)) (any, error) {
	switch in := in.(type) {
	case *ddb.TransactWriteItemsInput:
		t.add(in)
	case *ddb.PutItemInput:
		t.mu.Lock()
		t.estWCU += t.put(in.Item)
		t.mu.Unlock()
	case *ddb.UpdateItemInput, *ddb.DeleteItemInput:
		t.mu.Lock()
		t.estWCU++
		t.mu.Unlock()
	}
	return next(ctx)
}

// put counts a Put's size and index entries and returns its size in KB
// (rounded up), adding the index entries' units to estWCU; t.mu is held.
func (t *txItems) put(item map[string]ddb.AttributeValue) float64 {
	size := ddb.ItemSize(item)
	t.maxPut = max(t.maxPut, size)
	kb := float64((size + 1023) / 1024)
	for _, gsi := range []string{"gsi1pk", "gsi2pk", "gsi3pk"} {
		if _, ok := item[gsi]; ok {
			t.indexPuts++
			t.estWCU += kb // an ALL or data projection: about the item's size
		}
	}
	return kb
}

func (t *txItems) add(tx *ddb.TransactWriteItemsInput) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	for _, it := range tx.TransactItems {
		t.items++
		kb := 1.0 // counters, checks and deletes: small items
		if it.Put != nil {
			t.puts++
			kb = t.put(it.Put.Item)
		}
		if it.Delete != nil && it.Delete.Key != nil {
			if pk, ok := it.Delete.Key["pk"].(*ddb.AttributeValueMemberS); ok && strings.HasPrefix(pk.Value, "RES#") {
				t.indexPuts++ // the reservation's gsi1 entry goes too
				t.estWCU++
			}
		}
		t.estWCU += 2 * kb
	}
}

func (t *txItems) snapshot() txItems {
	t.mu.Lock()
	defer t.mu.Unlock()
	return txItems{calls: t.calls, items: t.items, puts: t.puts, indexPuts: t.indexPuts, estWCU: t.estWCU, maxPut: t.maxPut}
}

// startLocalDynamoDB starts a DynamoDB Local in memory for a section that
// runs alone and points this process's AWS variables at it.
func startLocalDynamoDB(ctx context.Context) (*localstack.Process, error) {
	root, err := localstack.RepoRoot()
	if err != nil {
		return nil, err
	}
	p, err := localstack.StartDynamoDB(ctx, localstack.Options{InMemory: true, Root: root})
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]string{
		"AWS_REGION": localstack.Region, "AWS_ACCESS_KEY_ID": localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": localstack.SecretAccessKey, "AWS_ENDPOINT_URL_DYNAMODB": p.Endpoint,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		os.Setenv(k, v)
	}
	os.Unsetenv("AWS_SESSION_TOKEN")
	os.Unsetenv("AWS_PROFILE")
	return p, nil
}

// sparseRequests are the periods of activity the scale section measures
// the scheduled function after: one request, and a short session.
var sparseRequests = []int{1, 10}

// sparsePeriod is what the scheduled function did after one period of
// activity.
type sparsePeriod struct {
	requests, runs int
	ops            opStats // the scheduled function's calls
	estWU          float64 // AWS write units of its transactions and puts (txItems)
}

// periodIndexChanges are the ledger's gsi3 entry written by a period's
// first reserve and removed by the sweep: UpdateItems, which the estimate
// counts at 1 unit without their index writes. Assumed, not measured.
const periodIndexChanges = 2

// sparseRuns is how many 5-minute runs of the schedule follow a period of
// activity: past the reservation's deadline (20 minutes), when the sweep
// takes the idle ledger out of the index, and one more.
const sparseRuns = 6

// activityPeriod sends requests requests with send, then runs the stale
// task (sweep and fold) sparseRuns times at 5-minute steps from now, as
// the schedule would, and counts the runs' DynamoDB calls.
func activityPeriod(ctx context.Context, store *dynamo.Store, ops *opCounter, tx *txItems, requests int,
	send func() (int, error)) (sparsePeriod, error) {
	p := sparsePeriod{requests: requests}
	for range requests {
		status, err := send()
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d", status)
		}
		if err != nil {
			return p, fmt.Errorf("period of activity: %w", err)
		}
	}
	o0, t0 := ops.snapshot(), tx.snapshot()
	log := slog.New(slog.DiscardHandler)
	start := time.Now()
	for step := 1; step <= sparseRuns; step++ {
		if _, err := rollover.Run(ctx, store, rollover.StaleReservations, start.Add(time.Duration(step)*5*time.Minute), log); err != nil {
			return p, fmt.Errorf("period of activity: run %d: %w", step, err)
		}
		p.runs = step
	}
	t1 := tx.snapshot()
	p.ops, p.estWU = ops.snapshot().minus(o0), t1.estWCU-t0.estWCU
	return p, nil
}
