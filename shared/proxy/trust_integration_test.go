package proxy_test

// Integration tests of the money guarantees at their edges: limits set after
// spend, and DynamoDB stalling during the reserve and during the settle. The
// real proxy handler over DynamoDB Local, every request over HTTP.

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/rollover"
	"github.com/stipend/stipend/shared/user"
)

// logRecorder keeps every record's message, for asserting on log lines.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns how many records contain s.
func (l *logRecorder) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// sweep runs the scheduled stale-reservation sweep as if a year had passed,
// and returns how many reservations it charged at their worst case.
func (e *itEnv) sweep() int {
	e.t.Helper()
	rep, err := rollover.Run(context.Background(), e.store, rollover.StaleReservations, e.clock.Now().AddDate(1, 0, 0), slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatal(err)
	}
	return rep.Settled
}

// eventSum is the cost and count of keys' events.
func (e *itEnv) eventSum(keys ...itKey) (money.Nanos, int64) {
	var sum money.Nanos
	evs := e.events(keys...)
	for _, ev := range evs {
		sum += ev.Cost
	}
	return sum, int64(len(evs))
}

// TestIntegrationLimitSetAfterSpend: a user's and the organisation's spend is
// counted while they have no limit, so a limit set later is checked against
// all of it: set below what was spent, the next request is refused; set near
// it, the spend recorded never exceeds it.
func TestIntegrationLimitSetAfterSpend(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	const maxTokens = 200
	body := chatBody(longPrompt(300), maxTokens)
	// Without an organisation limit, reservations do not check the
	// organisation's version (every request would conflict on it), so a
	// newly set one applies once the cached settings expire: keep KeyTTL
	// short so that is the next request.
	e := newITEnvWith(t, endpoint, "it-set-after", time.Time{}, itOptions{config: func(c *proxy.Config) { c.KeyTTL = time.Millisecond }})
	worst, _ := e.worst(body, maxTokens)
	month := budget.MonthCounter(e.clock.Now())
	u := &user.User{ID: "carol", UserID: "carol", Name: "Carol", CreatedAt: e.clock.Now().Unix()}
	if err := e.store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	var keys []itKey
	for range 3 {
		keys = append(keys, e.newKey(func(k *apikey.Key) { k.UserID = "carol"; noLowering(k) }))
	}
	key := func(i int) string { return keys[i%len(keys)].plain }
	refused := func(what string) {
		t.Helper()
		r := e.do(ctx, key(0), body)
		e.inflight.Wait()
		if r.status != http.StatusTooManyRequests || r.code != "insufficient_quota" {
			t.Fatalf("%s: status %d code %q (%s), want 429 insufficient_quota", what, r.status, r.code, r.message)
		}
		t.Logf("%s: %s", what, r.message)
	}
	// counted checks that every scope's counters hold exactly the events.
	counted := func(what string) money.Nanos {
		t.Helper()
		sum, n := e.eventSum(keys...)
		for _, c := range []struct{ owner, name string }{
			{"USER#carol", budget.LifetimeCounter}, {"USER#carol", month}, {"ORG", budget.LifetimeCounter}, {"ORG", month},
		} {
			tot := e.totals(c.owner, c.name)
			if tot.Cost != sum || tot.Committed != sum || tot.Requests != n {
				t.Fatalf("%s: %s %s counts $%s (committed $%s) over %d requests; the events say $%s over %d",
					what, c.owner, c.name, tot.Cost, tot.Committed, tot.Requests, sum, n)
			}
		}
		e.noOpenReservations()
		return sum
	}

	// 1. No user or organisation limit: 8 requests, all served, all counted.
	for i, r := range e.burst(8, key, body) {
		if r.status != http.StatusOK || !r.done {
			t.Fatalf("unlimited request %d: %+v", i, r)
		}
	}
	spent := counted("without limits")
	t.Logf("without limits: 8 served, $%s counted for the user and the organisation (worst case per request $%s)", spent, worst)

	// 2. A user limit below the spend refuses the next request; removed, the
	// user is served again; set near the spend, it is never exceeded.
	u, _ = e.store.GetUser(ctx, "carol")
	u.CostLimitLifetime = spent / 2
	if err := e.store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	refused("user lifetime limit below the spend")
	u.CostLimitLifetime = 0
	if err := e.store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if r := e.do(ctx, key(0), body); r.status != http.StatusOK {
		t.Fatalf("user limit removed: %+v", r)
	}
	e.inflight.Wait()
	spent = counted("user limit removed")
	limit := spent + worst*5/2
	u.CostLimitOverTime, u.CostLimitUnit = limit, "mo"
	if err := e.store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	served := 0
	for _, r := range e.burst(10, key, body) {
		if r.status == http.StatusOK {
			served++
		} else if r.status != http.StatusTooManyRequests || r.code != "insufficient_quota" {
			t.Fatalf("user monthly limit: %+v", r)
		}
	}
	spent = counted("user monthly limit near the spend")
	if month := e.totals("USER#carol", month); month.Cost > limit || served < 2 || served == 10 {
		t.Fatalf("user monthly limit $%s: %d of 10 served, month spent $%s", limit, served, month.Cost)
	}
	t.Logf("user monthly limit $%s set at $%s spent: %d of 10 served, now $%s", limit, spent-0, served, spent)

	// 3. The same for the organisation (the user's limit removed).
	u.CostLimitOverTime, u.CostLimitUnit = 0, ""
	if err := e.store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	org := &user.Org{CostLimitLifetime: spent - worst}
	if err := e.store.PutOrg(ctx, org); err != nil {
		t.Fatal(err)
	}
	refused("organisation lifetime limit below the spend")
	org.CostLimitLifetime, org.CostLimitPerMonth = 0, spent+worst*5/2
	if err := e.store.PutOrg(ctx, org); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // KeyTTL
	served = 0
	for _, r := range e.burst(10, key, body) {
		if r.status == http.StatusOK {
			served++
		} else if r.status != http.StatusTooManyRequests || r.code != "insufficient_quota" {
			t.Fatalf("organisation monthly limit: %+v", r)
		}
	}
	after := counted("organisation monthly limit near the spend")
	if m := e.totals("ORG", month); m.Cost > org.CostLimitPerMonth || served < 2 || served == 10 {
		t.Fatalf("organisation monthly limit $%s: %d of 10 served, month spent $%s", org.CostLimitPerMonth, served, m.Cost)
	}
	t.Logf("organisation monthly limit $%s set at $%s spent: %d of 10 served, now $%s", org.CostLimitPerMonth, spent, served, after)
}

// TestIntegrationStoreStalls stalls DynamoDB Local (SIGSTOP) during the
// reserve and during the settle. A request answered 503 is never charged,
// however late its reserve lands; a served request is charged exactly its
// cost, not its worst case, once the store answers again; the sweep charges
// neither.
func TestIntegrationStoreStalls(t *testing.T) {
	ddb := localtest.StartDynamoDBProcess(t)
	ctx := context.Background()
	const maxTokens = 500

	t.Run("during the reserve: 503 within the reserve deadline, never charged", func(t *testing.T) {
		logs := &logRecorder{}
		e := newITEnvWith(t, ddb.Endpoint, "it-stall-reserve", time.Time{}, itOptions{
			invocation: time.Minute,
			config: func(c *proxy.Config) {
				c.KeyTTL = time.Minute             // cached configuration: the stall hits the reserve itself
				c.ReserveTimeout = 3 * time.Second // the production default
				c.Log = slog.New(logs)
			},
		})
		body := chatBody("Hello there", maxTokens)
		worst, _ := e.worst(body, maxTokens)
		k := e.newKey(func(k *apikey.Key) { k.CostLimitLifetime = 100 * worst; k.CostLimitPerMonth = 50 * worst })
		if err := e.store.PutOrg(ctx, &user.Org{CostLimitLifetime: 100 * worst}); err != nil {
			t.Fatal(err)
		}
		if r := e.do(ctx, k.plain, body); r.status != http.StatusOK || !r.done {
			t.Fatalf("before the stall: %+v", r)
		}
		e.inflight.Wait()
		before, _ := e.store.KeyTotals(ctx, k.id)

		ddb.Stall()
		const n = 4
		type answer struct {
			r       itResult
			elapsed time.Duration
		}
		answers := make(chan answer, n)
		for range n {
			go func() {
				begin := time.Now()
				r := e.do(ctx, k.plain, body)
				answers <- answer{r, time.Since(begin)}
			}()
		}
		var got []answer
		timeout := time.After(10 * time.Second)
	collect:
		for len(got) < n {
			select {
			case a := <-answers:
				got = append(got, a)
			case <-timeout:
				break collect
			}
		}
		time.Sleep(time.Second) // stalled a while longer: the abandon waits too
		ddb.Resume()
		if len(got) < n {
			t.Fatalf("while DynamoDB stalled, only %d of %d clients had an answer after 10 s", len(got), n)
		}
		e.inflight.Wait() // every handler has abandoned its reservation
		for i, a := range got {
			if a.r.status != http.StatusServiceUnavailable || a.r.code != "service_unavailable" || a.elapsed > 10*time.Second {
				t.Fatalf("request %d while stalled: status %d code %q after %v, want 503 service_unavailable within 10 s", i, a.r.status, a.r.code, a.elapsed)
			}
			t.Logf("request %d while stalled: %d %s after %v (%s)", i, a.r.status, a.r.code, a.elapsed.Round(time.Millisecond), a.r.message)
		}

		if n := e.sweep(); n != 0 {
			t.Errorf("the sweep charged %d reservations at their worst case", n)
		}
		after, _ := e.store.KeyTotals(ctx, k.id)
		sum, events := e.eventSum(k)
		t.Logf("key before the stall %+v, after resume and sweep %+v; %d event(s), $%s", before, after, events, sum)
		if after != before || events != 1 || after.Cost != sum || after.Committed != sum {
			t.Errorf("the 503s left a charge: key totals before %+v, after %+v; events %d summing $%s", before, after, events, sum)
		}
		for _, c := range []string{budget.LifetimeCounter, budget.MonthCounter(e.clock.Now())} {
			for _, owner := range []string{"KEY#" + k.id, "ORG"} {
				if tot := e.totals(owner, c); tot.Committed != sum || tot.Cost != sum || tot.Requests != 1 {
					t.Errorf("%s %s after the 503s: %+v, want $%s over 1 request", owner, c, tot, sum)
				}
			}
		}
		e.noOpenReservations()
		if n := logs.count("not released"); n != 0 {
			t.Errorf("%d reservations not released", n)
		}
	})

	t.Run("during the settle: charged the actual cost once the store answers", func(t *testing.T) {
		logs := &logRecorder{}
		e := newITEnvWith(t, ddb.Endpoint, "it-stall-settle", time.Time{}, itOptions{
			invocation: time.Minute, // as in Lambda: the settle may keep trying until then
			config: func(c *proxy.Config) {
				c.RecordTimeout = 2 * time.Second // applies only without a deadline; the stall outlasts it
				c.Log = slog.New(logs)
			},
		})
		// 12 chunks 150 ms apart: the stall begins while the stream runs,
		// so the settle meets a stalled store.
		body := chatBody("Tell me something fake:interval=150ms", maxTokens)
		worst, _ := e.worst(body, maxTokens)
		k := e.newKey(func(k *apikey.Key) { k.CostLimitLifetime = 100 * worst })

		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.proxy.URL+itChatPath, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+k.plain)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		sc := bufio.NewScanner(resp.Body)
		stalled, done := false, false
		for sc.Scan() {
			if !stalled && strings.Contains(sc.Text(), "word1") {
				ddb.Stall()
				stalled = true
			}
			if strings.Contains(sc.Text(), "data: [DONE]") {
				done = true
				break
			}
		}
		if !stalled || !done {
			ddb.Resume()
			t.Fatalf("stream: stalled %v, done %v (%v)", stalled, done, sc.Err())
		}
		time.Sleep(3 * time.Second) // the settle waits on the stalled store, past RecordTimeout
		ddb.Resume()
		e.inflight.Wait()

		if n := e.sweep(); n != 0 {
			t.Errorf("the sweep charged %d reservations at their worst case", n)
		}
		evs := e.events(k)
		tot, _ := e.store.KeyTotals(ctx, k.id)
		if len(evs) != 1 {
			t.Fatalf("%d events, want 1; key totals %+v", len(evs), tot)
		}
		for _, ev := range evs {
			t.Logf("settled through a 3 s stall: event cost $%s (worst case $%s), usage %+v, incomplete %v; key %+v", ev.Cost, worst, ev.Usage, ev.Incomplete, tot)
			if ev.Incomplete || ev.Estimated || ev.Usage.CompletionTokens != itChunks || ev.Cost >= worst {
				t.Errorf("event %+v: want the measured usage and cost, not the worst case", ev)
			}
			if tot.Cost != ev.Cost || tot.Committed != ev.Cost || tot.Requests != 1 {
				t.Errorf("key totals %+v, want exactly the event's $%s", tot, ev.Cost)
			}
			if org := e.totals("ORG", budget.LifetimeCounter); org.Cost != ev.Cost || org.Committed != ev.Cost {
				t.Errorf("organisation totals %+v, want exactly the event's $%s", org, ev.Cost)
			}
		}
		e.noOpenReservations()
		if n := logs.count("reservation not settled"); n != 0 {
			t.Errorf(`"reservation not settled" logged %d times for a settle that committed`, n)
		}
	})
}
