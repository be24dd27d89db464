package main

// The Reporting run: how long the admin API's usage reports take for a
// class over a term, on DynamoDB Local, through admin.Handler in this
// process on its own table.
//
// A term of 100 keys x 200 requests a day x 120 days is 2.4 million events,
// too many to write to DynamoDB Local in a benchmark's time. So the run
// writes, straight into the table, the daily aggregates of the whole term
// (what the proxy's settle transaction keeps: one item per key, day and
// model) and the events themselves only for the term's last few days. Both
// come from one deterministic generator, so the aggregates of those days
// equal their events — the run checks that the key listing agrees both
// ways. It then times:
//
//   - the key listing with metrics over the whole term (whole UTC days:
//     read from the aggregates);
//   - events-by-day over the whole term for every key (aggregates);
//   - the time series (/reporting/events), which reads events, over one
//     day and over every day that has events; from its rate of events read
//     per second it extrapolates to the whole term, against Lambda's
//     limits (15 minutes, 6 MB of response) and the admin function's
//     configured timeout;
//   - a page of one key's events, and pages of all events (a merge of
//     every key's partition).

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// reportingSize is the synthetic term of the Reporting run.
type reportingSize struct {
	keys, perDay, days int
	eventDays          int // the term's last days, whose events are written too
	reps               int // timed repetitions of each call
}

// defaultReportingSize is the class of 100 over a term.
func defaultReportingSize() reportingSize {
	return reportingSize{keys: 100, perDay: 200, days: 120, eventDays: 2, reps: 5}
}

const (
	reportingTable    = "stipend-bench-reporting"
	reportingAdminKey = "bench-reporting-admin-key-0123456789"
	// Lambda's limits, and the admin function's timeout in template.yaml.
	lambdaMaxDuration    = 15 * time.Minute
	lambdaMaxResponse    = 6_000_000
	adminFunctionTimeout = 300 * time.Second
	// importConcurrency is how many keys' items are written at once.
	importConcurrency = 16
)

// synthEvent is request j of key k on day d (0-based from the term's
// start): deterministic, spread over the day (never in its first second),
// with one upstream error in 50 and a quarter on a second model.
func synthEvent(keyID string, k, d, j, perDay int, termStart time.Time) *ledger.Event {
	day := termStart.AddDate(0, 0, d)
	at := day.Add(time.Second + time.Duration(j)*(24*time.Hour-2*time.Second)/time.Duration(perDay) + time.Duration(k*37)*time.Millisecond)
	ev := &ledger.Event{
		ID: fmt.Sprintf("bench-%03d-%03d-%04d", k, d, j), KeyID: keyID, Model: "gpt-4o-mini", Path: "/v1/chat/completions", Method: "POST",
		Status: 200, Stream: j%2 == 0, CreatedAt: at.UnixMilli(),
		Usage:     ledger.Usage{PromptTokens: int64(100 + (j*7+k)%400), CompletionTokens: int64(20 + (j*13+d)%300)},
		LatencyMs: int64(300 + (j*31+k*7+d)%2000), CustomID: fmt.Sprintf("assignment-%d", j%5),
	}
	if j%4 == 3 {
		ev.Model = "gpt-4o"
	}
	if j%50 == 49 {
		ev.Status, ev.Usage, ev.ErrorCode = 500, ledger.Usage{}, "upstream_error"
	}
	// About gpt-4o-mini's price: $0.15 and $0.60 per million tokens.
	ev.Cost = money.Nanos((ev.Usage.PromptTokens*150 + ev.Usage.CompletionTokens*600 + 999) / 1000)
	return ev
}

// reportingCall is one timed admin call.
type reportingCall struct {
	name           string
	method, path   string
	body           string
	times          []time.Duration
	bytes, gzBytes int // response size, plain and gzipped
	points         int // data points (or keys) in the answer
	ops            opStats
}

// runReporting loads the synthetic term into its own table on the DynamoDB
// Local the environment points at (the bench's), times the reports and
// prints the Reporting section to out.
func runReporting(ctx context.Context, out io.Writer, size reportingSize) error {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return err
	}
	ops := newOpCounter()
	// Events are kept for the whole term, as a deployment reporting over
	// a term from events would have to (EventRetentionDays >= 120).
	db, err := ddb.New(ctx, cfg)
	if err != nil {
		return err
	}
	store := dynamo.New(db, reportingTable, time.Duration(size.days+30)*24*time.Hour, dynamo.WithMiddleware(ops.count))
	if err := store.CreateTable(ctx); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	termStart := today.AddDate(0, 0, -size.days)
	eventStart := today.AddDate(0, 0, -size.eventDays)

	say("reporting: %d keys, %d requests a day, %d days; writing the term's aggregates and the last %d days' events",
		size.keys, size.perDay, size.days, size.eventDays)
	keyIDs := make([]string, size.keys)
	now := time.Now().Unix()
	for i := range keyIDs {
		id, plain := apikey.Generate()
		k := &apikey.Key{ID: id, Name: fmt.Sprintf("student-%03d", i+1), Hash: apikey.Hash(plain), SettingIDs: []string{"bench"},
			CreatedAt: termStart.Unix(), UpdatedAt: now}
		if err := store.CreateKey(ctx, k); err != nil {
			return err
		}
		keyIDs[i] = id
	}

	// Generate every key's term: sum it into aggregates, keep the events
	// of the last days.
	aggs := make([][]ledger.DailyAggregate, size.keys)
	events := make([][]*ledger.Event, size.keys)
	var generated int64
	for k, id := range keyIDs {
		for d := range size.days {
			byModel := map[string]*ledger.DailyAggregate{}
			var order []string
			for j := range size.perDay {
				ev := synthEvent(id, k, d, j, size.perDay, termStart)
				generated++
				a := byModel[ev.Model]
				if a == nil {
					a = &ledger.DailyAggregate{KeyID: id, Day: termStart.AddDate(0, 0, d).Unix(), Model: ev.Model}
					byModel[ev.Model] = a
					order = append(order, ev.Model)
				}
				a.Cost += ev.Cost
				a.Requests++
				if ev.Success() {
					a.Successes++
				}
				a.PromptTokens += ev.Usage.PromptTokens
				a.CompletionTokens += ev.Usage.CompletionTokens
				a.LatencyMs += ev.LatencyMs
				if d >= size.days-size.eventDays {
					events[k] = append(events[k], ev)
				}
			}
			for _, m := range order {
				aggs[k] = append(aggs[k], *byModel[m])
			}
		}
	}
	nAggs, nEvents := 0, 0
	for k := range keyIDs {
		nAggs += len(aggs[k])
		nEvents += len(events[k])
	}
	aggWrite, err := timed(func() error {
		return forKeysBench(ctx, size.keys, func(k int) error { return store.ImportDailyAggregates(ctx, aggs[k]) })
	})
	if err != nil {
		return fmt.Errorf("write aggregates: %w", err)
	}
	say("reporting: %d aggregates written in %.1f s; writing %d events", nAggs, aggWrite.Seconds(), nEvents)
	evWrite, err := timed(func() error {
		return forKeysBench(ctx, size.keys, func(k int) error { return store.ImportEvents(ctx, events[k]) })
	})
	if err != nil {
		return fmt.Errorf("write events: %w", err)
	}

	h := admin.New(admin.Config{
		Store: store, Secrets: noSecrets{}, SecretPrefix: "stipend-bench/",
		AdminKey: func(context.Context) (string, error) { return reportingAdminKey, nil },
	})
	keysJSON, _ := json.Marshal(keyIDs)
	day := today.AddDate(0, 0, -1)
	calls := []*reportingCall{
		{name: fmt.Sprintf("list %d keys with metrics, whole term (aggregates)", size.keys), method: "GET",
			path: fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", termStart.Unix(), today.Unix())},
		{name: fmt.Sprintf("events-by-day, %d keys, whole term (aggregates)", size.keys), method: "POST",
			path: "/api/v1/reporting/events-by-day", body: fmt.Sprintf(`{"start":%d,"end":%d,"keyIds":%s}`, termStart.Unix(), today.Unix(), keysJSON)},
		{name: fmt.Sprintf("events time series, %d keys, 1 day, 1 h, by key", size.keys), method: "POST",
			path: "/api/v1/reporting/events", body: fmt.Sprintf(`{"start":%d,"end":%d,"increment":3600,"keyIds":%s,"groupBy":["keyId"]}`,
				day.Unix(), today.Unix(), keysJSON)},
		{name: fmt.Sprintf("events time series, %d keys, %d days, 1 day, by key", size.keys, size.eventDays), method: "POST",
			path: "/api/v1/reporting/events", body: fmt.Sprintf(`{"start":%d,"end":%d,"increment":86400,"keyIds":%s,"groupBy":["keyId"]}`,
				eventStart.Unix(), today.Unix(), keysJSON)},
		{name: fmt.Sprintf("list %d keys with metrics, %d days (aggregates)", size.keys, size.eventDays), method: "GET",
			path: fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", eventStart.Unix(), today.Unix())},
		{name: fmt.Sprintf("list %d keys with metrics, %d days less 1 s (events)", size.keys, size.eventDays), method: "GET",
			path: fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", eventStart.Unix(), today.Unix()-1)},
		// The listing of all events merges the keys' partitions: the
		// price of writing no index entry per event.
		{name: "events of one key, a page of 100", method: "GET",
			path: fmt.Sprintf("/api/v1/events?keyId=%s&limit=100&start=%d&end=%d", keyIDs[0], eventStart.Unix(), today.Unix())},
		{name: fmt.Sprintf("all events (%d keys merged), a page of 100", size.keys), method: "GET",
			path: fmt.Sprintf("/api/v1/events?all=true&limit=100&start=%d&end=%d", eventStart.Unix(), today.Unix())},
		{name: fmt.Sprintf("all events (%d keys merged), a page of 10", size.keys), method: "GET",
			path: fmt.Sprintf("/api/v1/events?all=true&limit=10&start=%d&end=%d", eventStart.Unix(), today.Unix())},
	}
	bodies := map[*reportingCall][]byte{}
	for _, c := range calls {
		say("reporting: %s", c.name)
		for rep := range size.reps + 1 { // the first is a warm-up
			before := ops.snapshot()
			begin := time.Now()
			rec := serve(h, c.method, c.path, c.body, false)
			took := time.Since(begin)
			if rec.Code != http.StatusOK {
				return fmt.Errorf("%s: %d %s", c.name, rec.Code, strings.TrimSpace(rec.Body.String()))
			}
			if rep == 0 {
				bodies[c] = rec.Body.Bytes()
				c.bytes = rec.Body.Len()
				c.points = countPoints(rec.Body.Bytes())
				continue
			}
			c.times = append(c.times, took)
			c.ops = ops.snapshot().minus(before)
		}
		if rec := serve(h, c.method, c.path, c.body, true); rec.Header().Get("Content-Encoding") == "gzip" {
			c.gzBytes = rec.Body.Len()
		}
	}

	// The listing over the event days agrees, from aggregates and events.
	agree := sameMetrics(bodies[calls[4]], bodies[calls[5]])

	fmt.Fprintf(out, "\nReporting: %d keys x %d requests a day x %d days = %d requests (generated); admin.Handler in process, DynamoDB Local\n",
		size.keys, size.perDay, size.days, generated)
	fmt.Fprintf(out, "  written: %d day-and-model aggregates (whole term) in %.1f s (%.0f items/s); %d events (last %d days) in %.1f s (%.0f items/s)\n",
		nAggs, aggWrite.Seconds(), float64(nAggs)/aggWrite.Seconds(), nEvents, size.eventDays, evWrite.Seconds(), float64(nEvents)/evWrite.Seconds())
	if size.eventDays < size.days {
		fmt.Fprintf(out, "  (the whole term's %d events would take about %.0f s to write at that rate: scaled down to %d days)\n",
			generated, float64(generated)/(float64(nEvents)/evWrite.Seconds()), size.eventDays)
	}
	fmt.Fprintf(out, "  %-58s %9s %9s %7s %9s %9s  %s\n", "", "p50", "min", "points", "bytes", "gzipped", "DynamoDB per call")
	for _, c := range calls {
		p50, lo := durations(c.times)
		gz := "-"
		if c.gzBytes > 0 {
			gz = mb(c.gzBytes)
		}
		fmt.Fprintf(out, "  %-58s %9s %9s %7d %9s %9s  %s\n", c.name, msDur(p50), msDur(lo), c.points, mb(c.bytes), gz, opsLine(c.ops))
	}
	fmt.Fprintf(out, "  listing over the %d event days: aggregates and events agree: %v\n", size.eventDays, agree)

	// Extrapolate the time series, which reads events, to the whole term.
	series := calls[3]
	p50, _ := durations(series.times)
	rate := float64(nEvents) / p50.Seconds()
	full := float64(generated) / rate
	verdict := func(ok bool) string {
		if ok {
			return "within"
		}
		return "OVER"
	}
	fmt.Fprintf(out, "  time series reads %.0f events/s (%d events in %s)\n", rate, nEvents, msDur(p50))
	fmt.Fprintf(out, "  extrapolated to the whole term (%d events): %.0f s to read — %s Lambda's 15 min, %s the admin function's %v timeout\n",
		generated, full, verdict(full < lambdaMaxDuration.Seconds()), verdict(full < adminFunctionTimeout.Seconds()), adminFunctionTimeout)
	fmt.Fprintf(out, "  (on this machine; a Lambda with %d MB has a fraction of a vCPU, and real DynamoDB pages take longer than DynamoDB Local's)\n", 512)
	fmt.Fprintf(out, "  memory: one latency per event kept, %.1f MB for the whole term (plus a copy for the percentiles)\n", float64(generated)*8/1e6)
	perPoint := float64(series.bytes) / float64(max(series.points, 1))
	termPoints := size.keys * size.days
	fmt.Fprintf(out, "  whole-term series, 1 day increment, by key: %d points, about %s (%s 6 MB; gzipped about %s)\n",
		termPoints, mb(int(perPoint*float64(termPoints))), verdict(perPoint*float64(termPoints) < lambdaMaxResponse),
		mb(int(float64(series.gzBytes)/float64(max(series.points, 1))*float64(termPoints))))
	byDay := calls[1]
	fmt.Fprintf(out, "  events-by-day, whole term: %s plain (%s 6 MB), %s gzipped\n", mb(byDay.bytes), verdict(byDay.bytes < lambdaMaxResponse), mb(byDay.gzBytes))
	return nil
}

// noSecrets is the admin's Secrets Manager stand-in: the run creates no
// providers.
type noSecrets struct{}

func (noSecrets) Put(context.Context, string, string) (string, error) {
	return "", fmt.Errorf("the reporting bench stores no secrets")
}

// serve calls h in process.
func serve(h http.Handler, method, path, body string, gz bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+reportingAdminKey)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// countPoints counts dataPoints in a report, keys in a key listing, or
// events in an events page.
func countPoints(b []byte) int {
	var list []json.RawMessage
	if json.Unmarshal(b, &list) == nil {
		return len(list)
	}
	var r struct{ DataPoints, Events []json.RawMessage }
	_ = json.Unmarshal(b, &r)
	return len(r.DataPoints) + len(r.Events)
}

// sameMetrics reports whether two key listings show the same metrics per key.
func sameMetrics(a, b []byte) bool {
	type view struct {
		KeyID   string          `json:"keyId"`
		Metrics json.RawMessage `json:"metrics"`
	}
	var va, vb []view
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil || len(va) != len(vb) || len(va) == 0 {
		return false
	}
	m := map[string]string{}
	for _, v := range va {
		m[v.KeyID] = string(v.Metrics)
	}
	for _, v := range vb {
		if m[v.KeyID] != string(v.Metrics) {
			return false
		}
	}
	return true
}

// forKeysBench runs fn for 0..n-1, importConcurrency at a time.
func forKeysBench(ctx context.Context, n int, fn func(k int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, importConcurrency)
	)
	for k := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(k); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func timed(fn func() error) (time.Duration, error) {
	begin := time.Now()
	err := fn()
	return time.Since(begin), err
}

// durations returns the median and the minimum.
func durations(ds []time.Duration) (p50, lo time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2], s[0]
}

func msDur(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mb(n int) string {
	if n < 100_000 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.2f MB", float64(n)/1e6)
}

// opsLine sums the DynamoDB calls of one call of a report.
func opsLine(s opStats) string {
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(s)) {
		v := s[op]
		cu := "n/a CU"
		if v.reported > 0 {
			cu = fmt.Sprintf("%.0f CU", v.units)
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", v.calls, op, cu))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// runReportingAlone is `-only reporting`: the Reporting section on a
// DynamoDB Local of its own (in memory, as the full run's).
func runReportingAlone(ctx context.Context, out io.Writer) error {
	say("reporting: starting DynamoDB Local (in memory)")
	local, err := startLocalDynamoDB(ctx)
	if err != nil {
		return err
	}
	defer local.Close()
	return runReporting(ctx, out, defaultReportingSize())
}
