package admin_test

// Reporting equals the events it summarises, for real traffic: the real
// proxy handler over DynamoDB Local and the fake upstream serves streams,
// non-streams, upstream errors, upstream cuts and client disconnects, with
// and without custom ids, for two keys, two models and two UTC days; then
// the real admin handler, on the same store, reports, and every figure is
// compared with the sum of Store.Events.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/teststack"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

const (
	rtUpstreamKey = "sk-fake-upstream-key"
	rtSecretID    = "arn:aws:secretsmanager:local:fake-upstream"
	rtProviderID  = "fake-openai"
	rtAdminKey    = "adm-reporting-integration-key-0123456789"
)

// rtClock is the proxy's clock: it runs at the real pace from the time it
// was last set to, so latencies are real while the traffic lands on the
// days the test chooses.
type rtClock struct {
	mu    sync.Mutex
	t     time.Time
	setAt time.Time
}

func (c *rtClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.Add(time.Since(c.setAt))
}

func (c *rtClock) Set(t time.Time) {
	c.mu.Lock()
	c.t, c.setAt = t, time.Now()
	c.mu.Unlock()
}

// rtEnv is the proxy and the admin API over one store (a teststack.Env).
type rtEnv struct {
	t        *testing.T
	store    *dynamo.Store
	proxy    *httptest.Server
	admin    *httptest.Server
	client   *http.Client
	clock    *rtClock
	inflight interface{ Wait() }
}

func newRTEnv(t *testing.T, start time.Time) *rtEnv {
	t.Helper()
	clock := &rtClock{t: start, setAt: time.Now()}
	st := teststack.Start(t, teststack.Options{
		Table: "reporting-it", Now: clock.Now,
		Upstream:   fakeupstream.Options{APIKey: rtUpstreamKey, Interval: time.Millisecond, Chunks: 8},
		ProviderID: rtProviderID, SecretID: rtSecretID, AdminKey: rtAdminKey,
		// The admin API keeps the real clock; only the proxy's is set.
		Admin: func(c *admin.Config) { c.Now, c.SecretPrefix = nil, "stipend/it/" },
	})
	return &rtEnv{
		t: t, store: st.Store, proxy: st.Proxy, admin: st.Admin, clock: clock, inflight: st,
		client: &http.Client{Timeout: 30 * time.Second},
	}
}

// newKey stores a key and returns its id and plaintext.
func (e *rtEnv) newKey() (id, plain string) {
	e.t.Helper()
	id, plain = apikey.Generate()
	k := &apikey.Key{ID: id, Name: "rt-" + id[:6], Hash: apikey.Hash(plain), SettingIDs: []string{rtProviderID}, CreatedAt: e.clock.Now().Unix()}
	if err := e.store.CreateKey(context.Background(), k); err != nil {
		e.t.Fatal(err)
	}
	return id, plain
}

// rtRequest is one request of the traffic.
type rtRequest struct {
	key, model, prompt string
	stream             bool
	customHeader       string // X-Custom-Id or X-Custom-Event-Id
	customID           string
	disconnect         bool // read the first content chunk, then go away
}

// send sends r through the proxy and returns the status the client saw.
func (e *rtEnv) send(r rtRequest) int {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{
		"model": r.model, "stream": r.stream, "max_tokens": 200,
		"messages": []map[string]string{{"role": "user", "content": r.prompt}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.proxy.URL+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.key)
	req.Header.Set("Content-Type", "application/json")
	if r.customID != "" {
		req.Header.Set(r.customHeader, r.customID)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("request %+v: %v", r, err)
	}
	defer resp.Body.Close()
	if r.disconnect {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && !strings.Contains(sc.Text(), "word1") {
		}
		cancel()
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode
}

// call calls the admin API and decodes its answer.
func (e *rtEnv) call(method, path, body string, v any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.admin.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+rtAdminKey)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
}

// figures are the sums a report shows.
type figures struct {
	Requests, Successes, Prompt, Completion int64
	Cost                                    money.Nanos
	latencies                               []int64
}

func (f *figures) add(ev *ledger.Event) {
	f.Requests++
	if ev.Success() {
		f.Successes++
	}
	f.Cost += ev.Cost
	f.Prompt += ev.Usage.PromptTokens
	f.Completion += ev.Usage.CompletionTokens
	f.latencies = append(f.latencies, ev.LatencyMs)
}

func (f figures) mean() int64 {
	var sum int64
	for _, l := range f.latencies {
		sum += l
	}
	return (sum + f.Requests/2) / f.Requests
}

// median is the nearest-rank median, as the admin API computes it.
func median(l []int64) int64 {
	s := slices.Clone(l)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[(len(s)+1)/2-1]
}

// point is a data point of either report.
type point struct {
	TimeStamp            int64       `json:"timeStamp"`
	NumberOfRequests     int64       `json:"numberOfRequests"`
	SuccessCount         int64       `json:"successCount"`
	CostInUsd            money.Nanos `json:"costInUsd"`
	LatencyInMs          int64       `json:"latencyInMs"`
	PromptTokenCount     int64       `json:"promptTokenCount"`
	CompletionTokenCount int64       `json:"completionTokenCount"`
	Model                string      `json:"model"`
	KeyID                string      `json:"keyId"`
	CustomID             string      `json:"customId"`
}

func pointOf(ts int64, f figures, latency int64, model, keyID, customID string) point {
	return point{TimeStamp: ts, NumberOfRequests: f.Requests, SuccessCount: f.Successes, CostInUsd: f.Cost, LatencyInMs: latency,
		PromptTokenCount: f.Prompt, CompletionTokenCount: f.Completion, Model: model, KeyID: keyID, CustomID: customID}
}

func TestReportingEqualsEvents(t *testing.T) {
	day1 := testclock.Now(t).Truncate(24*time.Hour).AddDate(0, 0, -11)
	day2 := day1.AddDate(0, 0, 1)
	e := newRTEnv(t, day1.Add(23*time.Hour+59*time.Minute))
	k1, p1 := e.newKey()
	k2, p2 := e.newKey()
	keys := map[string]string{k1: p1, k2: p2}

	// The traffic: every kind of ending, for both keys and both models,
	// with custom ids through either header, on two days.
	kinds := []struct {
		prompt             string
		stream, disconnect bool
	}{
		{"Say hello", true, false},
		{"Say hello", false, false},
		{"Fail please fake:status=500", true, false},
		{"Fail please fake:status=500", false, false},
		{"Cut me off fake:cut", true, false},
		{"Tell me a long story fake:hang", true, true},
	}
	customs := []struct{ header, id string }{{"X-Custom-Id", "student-1"}, {"X-CUSTOM-EVENT-ID", "run#2"}, {"", ""}, {"X-Custom-Id", "ünïcode id"}}
	statuses := map[int]int{}
	n := 0
	for _, day := range []time.Time{day1.Add(23*time.Hour + 59*time.Minute), day2.Add(10 * time.Second)} {
		e.clock.Set(day)
		for _, keyID := range []string{k1, k2} {
			for _, model := range []string{"gpt-4o-mini", "gpt-4o"} {
				for _, k := range kinds {
					c := customs[n%len(customs)]
					n++
					statuses[e.send(rtRequest{key: keys[keyID], model: model, prompt: k.prompt, stream: k.stream,
						customHeader: c.header, customID: c.id, disconnect: k.disconnect})]++
				}
			}
		}
	}
	e.inflight.Wait()

	// The events, summed per key, day and model; per key, day, custom id
	// and model; per key and custom id.
	type dkm struct {
		day        int64
		key, model string
	}
	type dkcm struct {
		day                  int64
		key, customID, model string
	}
	byDay, byAll, byKey := map[dkm]*figures{}, map[dkcm]*figures{}, map[string]*figures{}
	customIDs := map[string][]string{}
	var all []int64
	kinds2 := map[string]int{}
	get := func(m map[dkm]*figures, k dkm) *figures {
		if m[k] == nil {
			m[k] = &figures{}
		}
		return m[k]
	}
	for _, keyID := range []string{k1, k2} {
		byKey[keyID] = &figures{}
		err := e.store.Events(context.Background(), keyID, day1, day2.AddDate(0, 0, 1), func(ev *ledger.Event) error {
			day := time.UnixMilli(ev.CreatedAt).UTC().Truncate(24 * time.Hour).Unix()
			get(byDay, dkm{day, keyID, ev.Model}).add(ev)
			a := dkcm{day, keyID, ev.CustomID, ev.Model}
			if byAll[a] == nil {
				byAll[a] = &figures{}
			}
			byAll[a].add(ev)
			byKey[keyID].add(ev)
			all = append(all, ev.LatencyMs)
			if ev.CustomID != "" && !slices.Contains(customIDs[keyID], ev.CustomID) {
				customIDs[keyID] = append(customIDs[keyID], ev.CustomID)
			}
			switch {
			case ev.Incomplete:
				kinds2["incomplete"]++
			case !ev.Success():
				kinds2[fmt.Sprint("status ", ev.Status)]++
			case ev.Stream:
				kinds2["stream"]++
			default:
				kinds2["plain"]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, f := range byKey {
		total += f.Requests
	}
	t.Logf("%d requests sent (client statuses %v); %d events: %v; latency median %d ms", n, statuses, total, kinds2, median(all))
	if total != int64(n) {
		t.Fatalf("%d events for %d requests", total, n)
	}
	if kinds2["incomplete"] == 0 || kinds2["status 500"] == 0 || kinds2["stream"] == 0 || kinds2["plain"] == 0 {
		t.Fatalf("the traffic lacks a kind of ending: %v", kinds2)
	}
	keyList := fmt.Sprintf(`[%q,%q]`, k1, k2)
	start, end := day1.Unix(), day2.AddDate(0, 0, 1).Unix()

	t.Run("events-by-day", func(t *testing.T) {
		var got struct {
			DataPoints        []point
			LatencyInMsMedian int64
		}
		e.call("POST", "/api/v1/reporting/events-by-day", fmt.Sprintf(`{"start":%d,"end":%d,"keyIds":%s}`, start, end, keyList), &got)
		want := map[dkm]point{}
		for k, f := range byDay {
			want[k] = pointOf(k.day, *f, f.mean(), k.model, k.key, "")
		}
		gotMap := map[dkm]point{}
		for _, p := range got.DataPoints {
			gotMap[dkm{p.TimeStamp, p.KeyID, p.Model}] = p
		}
		if !reflect.DeepEqual(gotMap, want) || len(got.DataPoints) != len(want) {
			t.Errorf("events-by-day differs from the events\n got %+v\nwant %+v", gotMap, want)
		}
	})

	t.Run("events by day, key, custom id and model", func(t *testing.T) {
		var got struct {
			DataPoints                         []point
			LatencyInMsMedian, LatencyInMs99th int64
		}
		e.call("POST", "/api/v1/reporting/events", fmt.Sprintf(`{"start":%d,"end":%d,"increment":86400,"keyIds":%s,"groupBy":["keyId","customId","model"]}`,
			start, end, keyList), &got)
		want := map[dkcm]point{}
		for k, f := range byAll {
			want[k] = pointOf(k.day, *f, median(f.latencies), k.model, k.key, k.customID)
		}
		gotMap := map[dkcm]point{}
		for _, p := range got.DataPoints {
			gotMap[dkcm{p.TimeStamp, p.KeyID, p.CustomID, p.Model}] = p
		}
		if !reflect.DeepEqual(gotMap, want) || len(got.DataPoints) != len(want) {
			t.Errorf("events report differs from the events\n got %+v\nwant %+v", gotMap, want)
		}
		if got.LatencyInMsMedian != median(all) {
			t.Errorf("latencyInMsMedian %d, events' median %d", got.LatencyInMsMedian, median(all))
		}
	})

	t.Run("events of one custom id, ungrouped", func(t *testing.T) {
		var got struct{ DataPoints []point }
		e.call("POST", "/api/v1/reporting/events", fmt.Sprintf(`{"start":%d,"end":%d,"increment":%d,"keyIds":%s,"customIds":["run#2"]}`,
			start, end, end-start, keyList), &got)
		var f figures
		for k, g := range byAll {
			if k.customID == "run#2" {
				f.Requests += g.Requests
				f.Successes += g.Successes
				f.Cost += g.Cost
				f.Prompt += g.Prompt
				f.Completion += g.Completion
				f.latencies = append(f.latencies, g.latencies...)
			}
		}
		want := []point{pointOf(start, f, median(f.latencies), "", "", "")}
		if !reflect.DeepEqual(got.DataPoints, want) {
			t.Errorf("custom id run#2\n got %+v\nwant %+v", got.DataPoints, want)
		}
	})

	t.Run("custom ids", func(t *testing.T) {
		for _, keyID := range []string{k1, k2} {
			var got struct{ CustomIDs []string }
			e.call("GET", "/api/v1/custom-ids?keyId="+keyID, "", &got)
			want := slices.Sorted(slices.Values(customIDs[keyID]))
			if !slices.Equal(got.CustomIDs, want) {
				t.Errorf("key %s: custom ids %q, events carry %q", keyID, got.CustomIDs, want)
			}
		}
	})

	t.Run("key listing, from aggregates and from events", func(t *testing.T) {
		for _, r := range []struct{ name, query string }{
			{"whole days (aggregates)", fmt.Sprintf("start=%d&end=%d", start, end)},
			{"not whole days (events)", fmt.Sprintf("start=%d&end=%d", start+1, end+1)},
		} {
			var views []struct {
				KeyID   string `json:"keyId"`
				Metrics *point `json:"metrics"`
			}
			e.call("GET", "/api/v1/secret-keys?includeMetrics=true&"+r.query, "", &views)
			if len(views) != 2 {
				t.Fatalf("%s: %d keys listed", r.name, len(views))
			}
			for _, v := range views {
				f := byKey[v.KeyID]
				want := pointOf(0, *f, f.mean(), "", "", "")
				if v.Metrics == nil || *v.Metrics != want {
					t.Errorf("%s: key %s metrics %+v, events %+v", r.name, v.KeyID, v.Metrics, want)
				}
			}
		}
	})
}
