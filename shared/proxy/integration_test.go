package proxy_test

// Integration tests of the "Done means": the real proxy handler over
// the real DynamoDB store (DynamoDB Local), the real price table and
// tokenizer, and the fake OpenAI upstream, every request over HTTP.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/infra/teststack"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/testclock"
	"github.com/stipend/stipend/shared/tokenizer"
	"github.com/stipend/stipend/shared/user"
)

const (
	itUpstreamKey = "sk-fake-upstream-key"
	itSecretID    = "arn:aws:secretsmanager:local:fake-upstream"
	itProviderID  = "fake-openai"
	itModel       = "gpt-4o-mini"
	itChatPath    = "/v1/chat/completions"
	// itChunks is the fake upstream's completion length: completion tokens
	// equal it. It stays below proxy.Config.MinLoweredTokens' default (16),
	// so a lowered max_tokens never caps below what the fake (which ignores
	// max_tokens) really sends: the worst case stays a true upper bound.
	itChunks = 12
)

// itEnv is one proxy on its own table, with its own fake upstream: a
// teststack.Env with the proxy tests' names and clock.
type itEnv struct {
	t        *testing.T
	store    *dynamo.Store
	up       *fakeupstream.Server
	upURL    string // the fake upstream's root
	proxy    *httptest.Server
	client   *http.Client
	clock    *testclock.Clock
	prices   *pricing.Table
	tok      *tokenizer.Counter
	inflight interface{ Wait() } // proxy handlers still running
}

// newITEnv builds a proxy over table in the DynamoDB Local at endpoint; now
// fixes its clock (zero: the tests' present, running at real speed).
func newITEnv(t *testing.T, endpoint, table string, now time.Time) *itEnv {
	t.Helper()
	return newITEnvWith(t, endpoint, table, now, itOptions{})
}

// itOptions change what newITEnvWith builds.
type itOptions struct {
	// config changes the proxy's configuration before it is built.
	config func(*proxy.Config)
	// upstream changes the fake upstream's options before it is built.
	upstream func(*fakeupstream.Options)
	// invocation, when set, gives every request's context this deadline,
	// as a Lambda invocation's context has.
	invocation time.Duration
}

// newITEnvWith is newITEnv with options.
func newITEnvWith(t *testing.T, endpoint, table string, now time.Time, opts itOptions) *itEnv {
	t.Helper()
	clock := testclock.Fixed(now)
	if now.IsZero() {
		clock = testclock.Running(testclock.Now(t))
	}
	upOpts := fakeupstream.Options{APIKey: itUpstreamKey, Interval: time.Millisecond, Chunks: itChunks}
	if opts.upstream != nil {
		opts.upstream(&upOpts)
	}
	st := teststack.Start(t, teststack.Options{
		Endpoint: endpoint, Table: table, Now: clock.Now, Upstream: upOpts,
		ProviderID: itProviderID, SecretID: itSecretID,
		// The stall tests set ReserveTimeout back to the production default.
		Proxy: opts.config, Invocation: opts.invocation,
	})
	e := &itEnv{
		t: t, store: st.Store, up: st.Upstream, upURL: st.UpstreamURL, proxy: st.Proxy, clock: clock,
		prices: st.Prices, tok: st.Tokenizer, inflight: st,
	}
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 60 * time.Second}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

// itKey is a stored key and its plaintext.
type itKey struct{ id, plain string }

func (e *itEnv) newKey(mutate func(*apikey.Key)) itKey {
	e.t.Helper()
	id, plain := apikey.Generate()
	k := &apikey.Key{ID: id, Name: "it-" + id[:6], Hash: apikey.Hash(plain), SettingIDs: []string{itProviderID}, CreatedAt: e.clock.Now().Unix()}
	if mutate != nil {
		mutate(k)
	}
	if err := e.store.CreateKey(context.Background(), k); err != nil {
		e.t.Fatal(err)
	}
	return itKey{id: id, plain: plain}
}

// noLowering turns max_tokens lowering off on a key.
func noLowering(k *apikey.Key) { f := false; k.LowerMaxTokens = &f }

// chatBody is a streamed chat request for itModel.
func chatBody(prompt string, maxTokens int64) []byte {
	b, _ := json.Marshal(map[string]any{
		"model": itModel, "stream": true, "max_tokens": maxTokens,
		"messages": []map[string]string{{"role": "user", "content": prompt}},
	})
	return b
}

// longPrompt has n words: the prompt then dominates what a request really
// costs, so floor(limit/actual) is a tight bound.
func longPrompt(n int) string {
	words := []string{"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs"}
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[i%len(words)])
	}
	return b.String()
}

// worst is what the proxy reserves for body: the tokenizer's prompt count
// plus max_tokens of output, at the real price.
func (e *itEnv) worst(body []byte, maxTokens int64) (money.Nanos, ledger.Usage) {
	e.t.Helper()
	price, ok := e.prices.Lookup(itModel)
	if !ok {
		e.t.Fatalf("%s has no price", itModel)
	}
	n, err := e.tok.Prompt(price.Encoding, itChatPath, body)
	if err != nil {
		e.t.Fatal(err)
	}
	u := ledger.Usage{PromptTokens: n, CompletionTokens: maxTokens}
	return price.Cost(u), u
}

// itResult is what a client saw.
type itResult struct {
	status     int
	code       string // error.code when not 200
	message    string
	retryAfter string
	reqID      string // X-Stipend-Request-Id
	lowered    string // X-Stipend-Max-Tokens-Lowered
	done       bool   // the stream reached data: [DONE]
	err        error
}

func (e *itEnv) do(ctx context.Context, key string, body []byte) itResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.proxy.URL+itChatPath, strings.NewReader(string(body)))
	if err != nil {
		return itResult{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return itResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := itResult{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"),
		reqID: resp.Header.Get("X-Stipend-Request-Id"), lowered: resp.Header.Get("X-Stipend-Max-Tokens-Lowered"), err: err}
	if resp.StatusCode == http.StatusOK {
		r.done = strings.Contains(string(b), "data: [DONE]")
		return r
	}
	var eb struct {
		Error struct{ Message, Code string }
	}
	if jerr := json.Unmarshal(b, &eb); jerr != nil && r.err == nil {
		r.err = fmt.Errorf("error body %q: %w", b, jerr)
	}
	r.code, r.message = eb.Error.Code, eb.Error.Message
	return r
}

// burst sends n requests at once, request i with keyFor(i), and returns
// when every client has its whole response and every proxy handler (and so
// every settlement) has returned.
func (e *itEnv) burst(n int, keyFor func(i int) string, body []byte) []itResult {
	e.t.Helper()
	out := make([]itResult, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = e.do(context.Background(), keyFor(i), body)
		}()
	}
	close(start)
	wg.Wait()
	e.inflight.Wait()
	for i, r := range out {
		if r.err != nil {
			e.t.Fatalf("request %d: %v", i, r.err)
		}
	}
	return out
}

// events returns every event of keys, by id.
func (e *itEnv) events(keys ...itKey) map[string]*ledger.Event {
	e.t.Helper()
	out := map[string]*ledger.Event{}
	for _, k := range keys {
		err := e.store.Events(context.Background(), k.id, time.Unix(0, 0), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), func(ev *ledger.Event) error {
			if _, dup := out[ev.ID]; dup {
				return fmt.Errorf("event %s stored twice", ev.ID)
			}
			out[ev.ID] = ev
			return nil
		})
		if err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// totals reads one counter's figures.
func (e *itEnv) totals(owner, counter string) ledger.Totals {
	e.t.Helper()
	tot, err := e.store.OwnerTotals(context.Background(), owner, counter)
	if err != nil {
		e.t.Fatal(err)
	}
	return tot
}

// noOpenReservations fails unless every reservation of the table was settled.
func (e *itEnv) noOpenReservations() {
	e.t.Helper()
	open, err := e.store.StaleReservations(context.Background(), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		e.t.Fatal(err)
	}
	if len(open) != 0 {
		e.t.Fatalf("%d reservations left open, first %+v", len(open), open[0])
	}
}

// budgetRun is what one burst against a spend limit produced.
type budgetRun struct {
	served, lowered int
	spent           money.Nanos
	actual          money.Nanos // what one request really cost (from the events)
}

// checkBudget sends n concurrent streamed requests over keys against one
// spend limit, whose counter is owner/counter, and checks every guarantee.
func (e *itEnv) checkBudget(what string, keys []itKey, n int, body []byte, limit, worst money.Nanos, owner, counter string) budgetRun {
	t := e.t
	t.Helper()
	begin := time.Now()
	results := e.burst(n, func(i int) string { return keys[i%len(keys)].plain }, body)
	elapsed := time.Since(begin)

	var run budgetRun
	served := map[string]bool{}
	for i, r := range results {
		switch {
		case r.status == http.StatusOK:
			if r.reqID == "" || !r.done {
				t.Fatalf("request %d: served without a request id (%q) or without [DONE] (%v)", i, r.reqID, r.done)
			}
			served[r.reqID] = true
			run.served++
			if r.lowered != "" {
				v, err := strconv.ParseInt(r.lowered, 10, 64)
				if err != nil || v < 16 || v >= 1000 {
					t.Fatalf("request %d: X-Stipend-Max-Tokens-Lowered %q", i, r.lowered)
				}
				run.lowered++
			}
		case r.status == http.StatusTooManyRequests && r.code == "insufficient_quota":
		default:
			t.Fatalf("request %d: status %d code %q (%s), want 200 or 429 insufficient_quota", i, r.status, r.code, r.message)
		}
	}

	// Every served request is exactly one event; nothing else is.
	evs := e.events(keys...)
	if len(evs) != run.served {
		t.Fatalf("%d events for %d served requests", len(evs), run.served)
	}
	var sum, minCost money.Nanos
	for id, ev := range evs {
		if !served[id] {
			t.Fatalf("event %s belongs to no served request", id)
		}
		if ev.Status != http.StatusOK || ev.Incomplete || ev.Overrun || ev.Estimated || ev.Cost > ev.ReservedCost {
			t.Fatalf("event %+v: want a complete, measured, reserved-for 200", ev)
		}
		sum += ev.Cost
		run.actual = max(run.actual, ev.Cost)
		if minCost == 0 || ev.Cost < minCost {
			minCost = ev.Cost
		}
	}

	// The limited counter: settled spend within the limit, equal to the
	// events, nothing still reserved.
	tot := e.totals(owner, counter)
	run.spent = tot.Cost
	if tot.Cost > limit {
		t.Errorf("OVERSHOOT: %s spent %s > limit %s", what, tot.Cost, limit)
	}
	if tot.Committed != tot.Cost {
		t.Errorf("%s: committed %s != settled %s: a reservation was left open", what, tot.Committed, tot.Cost)
	}
	if tot.Cost != sum || tot.Requests != int64(run.served) {
		t.Errorf("%s: counter says %s over %d requests, events say %s over %d", what, tot.Cost, tot.Requests, sum, run.served)
	}
	// Every key's own lifetime counter agrees too.
	var keySum money.Nanos
	for _, k := range keys {
		kt, err := e.store.KeyTotals(context.Background(), k.id)
		if err != nil {
			t.Fatal(err)
		}
		if kt.Committed != kt.Cost {
			t.Errorf("key %s: committed %s != settled %s", k.id, kt.Committed, kt.Cost)
		}
		keySum += kt.Cost
	}
	if keySum != sum {
		t.Errorf("keys' lifetime spend %s != events' %s", keySum, sum)
	}
	e.noOpenReservations()

	lo, hi := int(limit/worst), int(limit/max(run.actual, 1))
	t.Logf("%s: %d concurrent streams over %d key(s) in %v: served %d (%d lowered), refused %d; limit $%s, worst $%s, actual $%s..$%s; spent $%s (committed $%s, %.1f%% of limit); bounds [%d, %d]",
		what, n, len(keys), elapsed.Round(time.Millisecond), run.served, run.lowered, n-run.served, limit, worst, minCost, run.actual,
		tot.Cost, tot.Committed, 100*float64(tot.Cost)/float64(limit), lo, hi)
	if run.served < lo || run.served > hi {
		t.Errorf("%s: served %d, want between floor(limit/worst) = %d and floor(limit/actual) = %d", what, run.served, lo, hi)
	}
	return run
}

// drain sends body on k one request at a time until the key's spend limit
// refuses one, and says how many were served and lowered.
func (e *itEnv) drain(k itKey, body []byte) budgetRun {
	e.t.Helper()
	var run budgetRun
	for range 100 {
		r := e.do(context.Background(), k.plain, body)
		switch {
		case r.status == http.StatusOK && r.done:
			run.served++
			if r.lowered != "" {
				run.lowered++
			}
		case r.status == http.StatusTooManyRequests && r.code == "insufficient_quota":
			return run
		default:
			e.t.Fatalf("sequential request: status %d code %q (%s) err %v, want 200 or 429 insufficient_quota", r.status, r.code, r.message, r.err)
		}
	}
	e.t.Fatalf("100 sequential requests served: the limit never refused one")
	return run
}

// loweredUpstream counts the upstream requests since from whose max_tokens
// is not want.
func (e *itEnv) loweredUpstream(from int, want int64) (lowered, total int) {
	reqs := e.up.Requests()[from:]
	for _, r := range reqs {
		var b struct {
			MaxTokens int64 `json:"max_tokens"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			e.t.Fatal(err)
		}
		if b.MaxTokens != want {
			lowered++
		}
	}
	return lowered, len(reqs)
}

func TestIntegrationLimits(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	const maxTokens = 1000
	// A long prompt makes a request's actual cost a fair share of its worst
	// case (prompt + 1000 output tokens), so both bounds on the number
	// served mean something.
	budgetBody := chatBody(longPrompt(1000), maxTokens)
	midMonth := testclock.MonthStart(testclock.Now(t), 0).AddDate(0, 0, -8).Add(16*time.Hour + 5*time.Minute + 30*time.Second)

	t.Run("key lifetime budget, 200 streams", func(t *testing.T) {
		e := newITEnv(t, endpoint, "it-key-budget", time.Time{})
		worst, wu := e.worst(budgetBody, maxTokens)
		limit := worst * 21 / 2 // fits 10.5 worst cases
		t.Logf("worst case: %d prompt + %d output tokens = $%s; limit $%s", wu.PromptTokens, wu.CompletionTokens, worst, limit)

		off := e.newKey(func(k *apikey.Key) { k.CostLimitLifetime = limit; noLowering(k) })
		from := len(e.up.Requests())
		runOff := e.checkBudget("lowering off", []itKey{off}, 200, budgetBody, limit, worst, "KEY#"+off.id, budget.LifetimeCounter)
		if runOff.lowered != 0 {
			t.Errorf("lowering off, yet %d responses say max_tokens was lowered", runOff.lowered)
		}
		if l, n := e.loweredUpstream(from, maxTokens); l != 0 || n != runOff.served {
			t.Errorf("lowering off: upstream saw %d requests, %d with a changed max_tokens", n, l)
		}

		on := e.newKey(func(k *apikey.Key) { k.CostLimitLifetime = limit })
		from = len(e.up.Requests())
		runOn := e.checkBudget("lowering on", []itKey{on}, 200, budgetBody, limit, worst, "KEY#"+on.id, budget.LifetimeCounter)
		afterBurst := limit - runOn.spent

		// How many a concurrent burst serves depends on timing, so the two
		// bursts are not compared with each other. What lowering promises
		// is deterministic once requests come one at a time: without it a
		// key is refused while less than a worst case is left; with it,
		// while less than the prompt plus the smallest lowered cap is left.
		minLowered, _ := e.worst(budgetBody, 16)
		offTail := e.drain(off, budgetBody)
		if offTail.lowered != 0 {
			t.Errorf("lowering off: %d sequential responses say max_tokens was lowered", offTail.lowered)
		}
		if left := limit - e.totals("KEY#"+off.id, budget.LifetimeCounter).Cost; left >= worst {
			t.Errorf("lowering off: refused with $%s left, which pays for a worst case ($%s)", left, worst)
		}
		onTail := e.drain(on, budgetBody)
		left := limit - e.totals("KEY#"+on.id, budget.LifetimeCounter).Cost
		if left >= minLowered {
			t.Errorf("lowering on: refused with $%s left, which pays for the prompt and 16 output tokens ($%s)", left, minLowered)
		}
		if afterBurst >= minLowered && onTail.lowered == 0 {
			t.Errorf("lowering on: $%s was left after the burst, yet no sequential request was lowered", afterBurst)
		}
		lowered := runOn.lowered + onTail.lowered
		l, n := e.loweredUpstream(from, maxTokens)
		t.Logf("lowering on: burst served %d (%d lowered), then %d sequential (%d lowered), $%s left; lowering off: burst %d, then %d sequential; upstream saw %d requests, %d with a lowered max_tokens",
			runOn.served, runOn.lowered, onTail.served, onTail.lowered, left, runOff.served, offTail.served, n, l)
		if l != lowered || n != runOn.served+onTail.served+offTail.served {
			t.Errorf("lowered: %d responses carry the header, upstream saw %d lowered of %d", lowered, l, n)
		}
		if lowered == 0 && afterBurst >= minLowered {
			t.Error("lowering on never lowered a request")
		}
	})

	t.Run("user budget shared by 5 keys, 200 streams", func(t *testing.T) {
		e := newITEnv(t, endpoint, "it-user-budget", time.Time{})
		worst, _ := e.worst(budgetBody, maxTokens)
		limit := worst * 21 / 2
		u := &user.User{ID: "alice", UserID: "alice", Name: "Alice", CreatedAt: e.clock.Now().Unix(), CostLimitLifetime: limit}
		if err := e.store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		var keys []itKey
		for range 5 {
			keys = append(keys, e.newKey(func(k *apikey.Key) { k.UserID = "alice"; noLowering(k) }))
		}
		e.checkBudget("user lifetime", keys, 200, budgetBody, limit, worst, "USER#alice", budget.LifetimeCounter)
	})

	t.Run("organisation monthly budget over 10 keys, 120 streams", func(t *testing.T) {
		e := newITEnv(t, endpoint, "it-org-budget", midMonth)
		worst, _ := e.worst(budgetBody, maxTokens)
		limit := worst * 21 / 2
		org := &user.Org{CostLimitPerMonth: limit, CostLimitLifetime: 100 * limit}
		if err := e.store.PutOrg(ctx, org); err != nil {
			t.Fatal(err)
		}
		var keys []itKey
		for range 10 {
			keys = append(keys, e.newKey(noLowering))
		}
		run := e.checkBudget("organisation monthly", keys, 120, budgetBody, limit, worst, "ORG", budget.MonthCounter(midMonth))
		if life := e.totals("ORG", budget.LifetimeCounter); life.Cost != run.spent || life.Committed != life.Cost {
			t.Errorf("organisation lifetime counter %+v, month spent %s", life, run.spent)
		}
	})

	t.Run("rate limits are exact", func(t *testing.T) {
		// Mid-minute, so every request falls in one window: Retry-After 30.
		e := newITEnv(t, endpoint, "it-rate", midMonth)
		small := chatBody("Say hello", itChunks) // max_tokens = what the fake sends
		_, wu := e.worst(small, itChunks)
		w := wu.Total()
		tpmKey := e.newKey(func(k *apikey.Key) {
			k.ModelLimits = map[string]apikey.ModelLimit{itModel: {TPM: 3 * w}}
		})
		cases := []struct {
			name string
			key  itKey
			want int
		}{
			{"key 5 per minute", e.newKey(func(k *apikey.Key) { k.RateLimitOverTime, k.RateLimitUnit = 5, "m" }), 5},
			{"model 7 rpm", e.newKey(func(k *apikey.Key) {
				k.ModelLimits = map[string]apikey.ModelLimit{itModel: {RPM: 7}}
			}), 7},
			{fmt.Sprintf("model tpm %d (3 x %d worst-case tokens)", 3*w, w), tpmKey, 3},
		}
		for _, c := range cases {
			begin := time.Now()
			results := e.burst(50, func(int) string { return c.key.plain }, small)
			served, refused := 0, map[string]int{}
			for i, r := range results {
				switch {
				case r.status == http.StatusOK && r.done:
					served++
				case r.status == http.StatusTooManyRequests && r.code == "rate_limit_exceeded":
					secs, err := strconv.Atoi(r.retryAfter)
					if err != nil || secs < 1 || secs > 60 {
						t.Errorf("%s: request %d: Retry-After %q", c.name, i, r.retryAfter)
					}
					refused[r.retryAfter]++
				default:
					t.Errorf("%s: request %d: status %d code %q (%s)", c.name, i, r.status, r.code, r.message)
				}
			}
			evs := e.events(c.key)
			var tokens int64
			for _, ev := range evs {
				tokens += ev.Usage.Total()
			}
			t.Logf("%s: 50 concurrent in %v: served %d, refused %d (by Retry-After: %v), events %d, tokens used %d",
				c.name, time.Since(begin).Round(time.Millisecond), served, 50-served, refused, len(evs), tokens)
			if served != c.want || len(evs) != c.want {
				t.Errorf("%s: served %d with %d events, want exactly %d", c.name, served, len(evs), c.want)
			}
		}
		// Settled at actual tokens, the TPM window must still have no room
		// for a fourth worst case, or "exactly 3" would depend on timing.
		var used int64
		for _, ev := range e.events(tpmKey) {
			used += ev.Usage.Total()
		}
		if 3*w-used >= w {
			t.Errorf("tpm test is not exact: %d tokens left after settling, worst case %d", 3*w-used, w)
		}
		e.noOpenReservations()
	})

	t.Run("monthly budget resets on the 1st", func(t *testing.T) {
		dec := testclock.MonthStart(testclock.Now(t), 0) // "December": this month
		nov := dec.Add(-30 * time.Second)                // "November": the last seconds of the month before
		e := newITEnv(t, endpoint, "it-month", nov)
		body := chatBody("What is a budget?", maxTokens)
		worst, _ := e.worst(body, maxTokens)
		k := e.newKey(func(k *apikey.Key) { k.CostLimitPerMonth = worst; noLowering(k) }) // one request fills the month

		first := e.do(ctx, k.plain, body)
		second := e.do(ctx, k.plain, body)
		e.inflight.Wait()
		if first.status != http.StatusOK || !first.done {
			t.Fatalf("first request of November: %+v", first)
		}
		if second.status != http.StatusTooManyRequests || second.code != "insufficient_quota" || !strings.Contains(second.message, dec.Format(time.RFC3339)) {
			t.Fatalf("second request of November: %+v", second)
		}
		e.clock.Set(dec)
		third := e.do(ctx, k.plain, body)
		e.inflight.Wait()
		if third.status != http.StatusOK || !third.done {
			t.Fatalf("first request of December: %+v", third)
		}
		novT, decT := e.totals("KEY#"+k.id, budget.MonthCounter(nov)), e.totals("KEY#"+k.id, budget.MonthCounter(dec))
		life, _ := e.store.KeyTotals(ctx, k.id)
		t.Logf("monthly limit $%s (one worst case): November spent $%s in %d request(s), then %q; December 1st 00:00:00 served, spent $%s; lifetime $%s",
			worst, novT.Cost, novT.Requests, second.message, decT.Cost, life.Cost)
		if novT.Requests != 1 || decT.Requests != 1 || novT.Cost > worst || decT.Cost > worst ||
			novT.Committed != novT.Cost || decT.Committed != decT.Cost || life.Cost != novT.Cost+decT.Cost {
			t.Errorf("counters: November %+v, December %+v, lifetime %+v", novT, decT, life)
		}
		e.noOpenReservations()
	})

	t.Run("revoked key refused at the next request despite the key cache", func(t *testing.T) {
		e := newITEnv(t, endpoint, "it-revoke", time.Time{})
		body := chatBody("Hello there", 50)
		k := e.newKey(nil)
		if r := e.do(ctx, k.plain, body); r.status != http.StatusOK || !r.done {
			t.Fatalf("before revoking: %+v", r)
		}
		e.inflight.Wait()
		stored, err := e.store.GetKey(ctx, k.id)
		if err != nil {
			t.Fatal(err)
		}
		stored.Revoked, stored.RevokedReason = true, "integration test"
		if err := e.store.UpdateKey(ctx, stored); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		r := e.do(ctx, k.plain, body)
		e.inflight.Wait()
		tot, _ := e.store.KeyTotals(ctx, k.id)
		t.Logf("revoked %v after the key was cached: next request %d %q (%s); key totals: %d request(s), $%s settled, $%s committed",
			time.Since(begin).Round(time.Millisecond), r.status, r.code, r.message, tot.Requests, tot.Cost, tot.Committed)
		if r.status != http.StatusUnauthorized || r.code != "key_revoked" {
			t.Fatalf("after revoking: status %d code %q, want 401 key_revoked", r.status, r.code)
		}
		if tot.Requests != 1 || tot.Committed != tot.Cost || len(e.events(k)) != 1 {
			t.Errorf("the refused request left a trace: %+v", tot)
		}
		e.noOpenReservations()
	})

	t.Run("client disconnect mid-stream still settles", func(t *testing.T) {
		e := newITEnv(t, endpoint, "it-disconnect", time.Time{})
		body := chatBody("Tell me a long story fake:hang", maxTokens)
		worst, _ := e.worst(body, maxTokens)
		limit := 10 * worst
		k := e.newKey(func(k *apikey.Key) { k.CostLimitLifetime = limit })

		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, e.proxy.URL+itChatPath, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+k.plain)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		reqID := resp.Header.Get("X-Stipend-Request-Id")
		// Read until the first content chunk, then go away.
		sc := bufio.NewScanner(resp.Body)
		got := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "word1") {
				got = true
				break
			}
		}
		if !got {
			t.Fatalf("no content chunk before the stream ended: %v", sc.Err())
		}
		cancel()
		resp.Body.Close()

		waited := make(chan struct{})
		go func() { e.inflight.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(15 * time.Second):
			t.Fatal("the proxy handler did not return after the client went away")
		}
		evs := e.events(k)
		tot, _ := e.store.KeyTotals(ctx, k.id)
		ev := evs[reqID]
		if len(evs) != 1 || ev == nil {
			t.Fatalf("events %v, want one for %s", evs, reqID)
		}
		t.Logf("disconnect after the first chunk: event status %d, incomplete %v, estimated %v, error %q, usage %+v, cost $%s (reserved $%s); key settled $%s, committed $%s, limit $%s",
			ev.Status, ev.Incomplete, ev.Estimated, ev.ErrorCode, ev.Usage, ev.Cost, ev.ReservedCost, tot.Cost, tot.Committed, limit)
		if !ev.Incomplete || ev.Cost <= 0 || ev.Cost > ev.ReservedCost {
			t.Errorf("event %+v: want incomplete, with a cost within the reservation", ev)
		}
		if tot.Requests != 1 || tot.Committed != tot.Cost || tot.Cost != ev.Cost {
			t.Errorf("key totals %+v, event cost %s", tot, ev.Cost)
		}
		e.noOpenReservations()
	})
}

// Compile-time checks that the real store is what the proxy needs.
var (
	_ proxy.Keys      = (*dynamo.Store)(nil)
	_ proxy.Providers = (*dynamo.Store)(nil)
	_ proxy.Limiter   = (*dynamo.Store)(nil)
	_ proxy.Owners    = (*dynamo.Store)(nil)
	_ proxy.Tokenizer = (*tokenizer.Counter)(nil)
	_ proxy.Prices    = (*pricing.Table)(nil)
)
