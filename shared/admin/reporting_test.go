package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/admin/reporting"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// ---- the fake store's reporting: aggregates computed from its events ----

// DailyAggregates sums the fake's events per key, UTC day and model, as the
// real store's settle transaction does.
func (s *fakeStore) DailyAggregates(_ context.Context, keyIDs []string, start, end time.Time) ([]ledger.DailyAggregate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	first := start.Unix() - start.Unix()%reporting.SecondsPerDay
	rows := map[[2]string]map[int64]*ledger.DailyAggregate{}
	for _, ev := range s.events {
		day := ev.CreatedAt / 1000 / reporting.SecondsPerDay * reporting.SecondsPerDay
		if !slices.Contains(keyIDs, ev.KeyID) || day < first || day >= end.Unix() {
			continue
		}
		id := [2]string{ev.KeyID, ev.Model}
		if rows[id] == nil {
			rows[id] = map[int64]*ledger.DailyAggregate{}
		}
		r := rows[id][day]
		if r == nil {
			r = &ledger.DailyAggregate{KeyID: ev.KeyID, Day: day, Model: ev.Model}
			rows[id][day] = r
		}
		r.Cost += ev.Cost
		r.Requests++
		if ev.Success() {
			r.Successes++
		}
		r.PromptTokens += ev.Usage.PromptTokens
		r.CachedTokens += ev.Usage.CachedTokens
		r.CompletionTokens += ev.Usage.CompletionTokens
		r.LatencyMs += ev.LatencyMs
	}
	var out []ledger.DailyAggregate
	for _, byDay := range rows {
		for _, r := range byDay {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(a, b ledger.DailyAggregate) int {
		return cmp.Or(cmp.Compare(slices.Index(keyIDs, a.KeyID), slices.Index(keyIDs, b.KeyID)),
			cmp.Compare(a.Day, b.Day), strings.Compare(a.Model, b.Model))
	})
	return out, nil
}

// CustomIDs lists the distinct custom ids of keyID's events, sorted.
func (s *fakeStore) CustomIDs(_ context.Context, keyID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var ids []string
	for _, ev := range s.events {
		if ev.KeyID == keyID && ev.CustomID != "" && !slices.Contains(ids, ev.CustomID) {
			ids = append(ids, ev.CustomID)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ---- harness ----

// repStart is the reports' start: 2023-11-15T00:00:00Z.
const repStart = int64(1_700_006_400)

// addKey stores a key with a fixed id directly.
func (e *env) addKey(id string) {
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	e.store.keys[id] = &apikey.Key{ID: id, Name: "key " + id, SettingIDs: []string{"p1"}, CreatedAt: repStart}
}

// addReportEvent stores an event offset seconds after repStart.
func (e *env) addReportEvent(keyID string, offset int64, model, customID string, status int, cost money.Nanos, prompt, completion, latency int64) {
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	e.store.events = append(e.store.events, &ledger.Event{
		ID: fmt.Sprint("r", len(e.store.events)), KeyID: keyID, Model: model, CustomID: customID, Status: status, Cost: cost,
		Usage: ledger.Usage{PromptTokens: prompt, CompletionTokens: completion}, LatencyMs: latency, CreatedAt: (repStart + offset) * 1000,
	})
}

// reportEnv has keys k1, k2 and k3 and these events (offsets from repStart):
//
//	k1 +10  m1 "a" 200 $0.000001  10+5 tokens 100 ms
//	k1 +20  m2 "b" 200 $0.000002  20+10       300 ms
//	k1 +70  m1 "a" 500 $0          0+0         50 ms
//	k2 +30  m1 ""  200 $0.000004   3+4         42 ms
//	k2 +130 m1 "a" 200 $0.000008   1+1          7 ms
//
// and, outside every report below, k1 at -1 and +180, and k3 at +15.
func reportEnv(t *testing.T) *env {
	e := newEnv(t)
	for _, id := range []string{"k1", "k2", "k3"} {
		e.addKey(id)
	}
	e.addReportEvent("k1", 10, "m1", "a", 200, 1000, 10, 5, 100)
	e.addReportEvent("k1", 20, "m2", "b", 200, 2000, 20, 10, 300)
	e.addReportEvent("k1", 70, "m1", "a", 500, 0, 0, 0, 50)
	e.addReportEvent("k2", 30, "m1", "", 200, 4000, 3, 4, 42)
	e.addReportEvent("k2", 130, "m1", "a", 200, 8000, 1, 1, 7)
	e.addReportEvent("k1", -1, "m1", "a", 200, money.Dollar, 1, 1, 1)
	e.addReportEvent("k1", 180, "m1", "a", 200, money.Dollar, 1, 1, 1)
	e.addReportEvent("k3", 15, "m1", "a", 200, money.Dollar, 1, 1, 1)
	return e
}

func TestReportEvents(t *testing.T) {
	e := reportEnv(t)
	m := func(n, ok int64, cost money.Nanos, lat, p, c int64) reporting.Metrics {
		return reporting.Metrics{NumberOfRequests: n, SuccessCount: ok, CostInUsd: cost, LatencyInMs: lat, PromptTokenCount: p, CompletionTokenCount: c}
	}
	t0, t1, t2 := repStart, repStart+60, repStart+120
	tests := []struct {
		name        string
		extra       string // more body fields
		want        []reporting.Point
		median, p99 int64
	}{
		{"everything together", ``, []reporting.Point{
			{TimeStamp: t0, Metrics: m(3, 3, 7000, 100, 33, 19)},
			{TimeStamp: t1, Metrics: m(1, 0, 0, 50, 0, 0)},
			{TimeStamp: t2, Metrics: m(1, 1, 8000, 7, 1, 1)},
		}, 50, 300},
		{"by key", `,"groupBy":["keyId"]`, []reporting.Point{
			{TimeStamp: t0, Metrics: m(2, 2, 3000, 100, 30, 15), KeyID: "k1"},
			{TimeStamp: t0, Metrics: m(1, 1, 4000, 42, 3, 4), KeyID: "k2"},
			{TimeStamp: t1, Metrics: m(1, 0, 0, 50, 0, 0), KeyID: "k1"},
			{TimeStamp: t2, Metrics: m(1, 1, 8000, 7, 1, 1), KeyID: "k2"},
		}, 50, 300},
		{"custom id a by custom id and model", `,"customIds":["a"],"groupBy":["customId","model"]`, []reporting.Point{
			{TimeStamp: t0, Metrics: m(1, 1, 1000, 100, 10, 5), CustomID: "a", Model: "m1"},
			{TimeStamp: t1, Metrics: m(1, 0, 0, 50, 0, 0), CustomID: "a", Model: "m1"},
			{TimeStamp: t2, Metrics: m(1, 1, 8000, 7, 1, 1), CustomID: "a", Model: "m1"},
		}, 50, 100},
		{"no custom id or b, by model", `,"customIds":["","b"],"groupBy":["model","model"]`, []reporting.Point{
			{TimeStamp: t0, Metrics: m(1, 1, 4000, 42, 3, 4), Model: "m1"},
			{TimeStamp: t0, Metrics: m(1, 1, 2000, 300, 20, 10), Model: "m2"},
		}, 42, 300},
		{"by everything", `,"groupBy":["model","customId","keyId"]`, []reporting.Point{
			{TimeStamp: t0, Metrics: m(1, 1, 1000, 100, 10, 5), KeyID: "k1", CustomID: "a", Model: "m1"},
			{TimeStamp: t0, Metrics: m(1, 1, 2000, 300, 20, 10), KeyID: "k1", CustomID: "b", Model: "m2"},
			{TimeStamp: t0, Metrics: m(1, 1, 4000, 42, 3, 4), KeyID: "k2", Model: "m1"},
			{TimeStamp: t1, Metrics: m(1, 0, 0, 50, 0, 0), KeyID: "k1", CustomID: "a", Model: "m1"},
			{TimeStamp: t2, Metrics: m(1, 1, 8000, 7, 1, 1), KeyID: "k2", CustomID: "a", Model: "m1"},
		}, 50, 300},
		{"empty groupBy and customIds mean none", `,"groupBy":[],"customIds":[]`, []reporting.Point{
			{TimeStamp: t0, Metrics: m(3, 3, 7000, 100, 33, 19)},
			{TimeStamp: t1, Metrics: m(1, 0, 0, 50, 0, 0)},
			{TimeStamp: t2, Metrics: m(1, 1, 8000, 7, 1, 1)},
		}, 50, 300},
		{"unknown custom id", `,"customIds":["zzz"]`, []reporting.Point{}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"start":%d,"end":%d,"increment":60,"keyIds":["k1","k2","k1"]%s}`, repStart, repStart+180, tc.extra)
			rec := e.do(t, "POST", "/api/v1/reporting/events", body)
			var got reporting.Report
			decode(t, rec, 200, &got)
			if !reflect.DeepEqual(got.DataPoints, tc.want) {
				t.Errorf("dataPoints\n %+v\nwant\n %+v", got.DataPoints, tc.want)
			}
			if got.LatencyInMsMedian != tc.median || got.LatencyInMs99th != tc.p99 {
				t.Errorf("median %d, p99 %d; want %d, %d", got.LatencyInMsMedian, got.LatencyInMs99th, tc.median, tc.p99)
			}
		})
	}

	t.Run("shape", func(t *testing.T) {
		body := fmt.Sprintf(`{"start":%d,"end":%d,"increment":300,"keyIds":["k2"],"groupBy":["keyId"]}`, repStart, repStart+600)
		rec := e.do(t, "POST", "/api/v1/reporting/events", body)
		var raw map[string]json.RawMessage
		decode(t, rec, 200, &raw)
		if keys := sortedKeys(raw); !slices.Equal(keys, []string{"dataPoints", "latencyInMs99th", "latencyInMsMedian"}) {
			t.Errorf("response fields %v", keys)
		}
		var points []map[string]json.RawMessage
		if err := json.Unmarshal(raw["dataPoints"], &points); err != nil || len(points) != 1 {
			t.Fatalf("dataPoints %s: %v", raw["dataPoints"], err)
		}
		want := map[string]string{
			"timeStamp": fmt.Sprint(repStart), "numberOfRequests": "2", "successCount": "2", "costInUsd": "0.000012",
			"latencyInMs": "7", "promptTokenCount": "4", "completionTokenCount": "5", "model": `""`, "keyId": `"k2"`, "customId": `""`,
		}
		got := map[string]string{}
		for k, v := range points[0] {
			got[k] = string(v)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("data point\n %v\nwant\n %v", got, want)
		}
		// The seed's field order.
		order := []string{"timeStamp", "numberOfRequests", "successCount", "costInUsd", "latencyInMs", "promptTokenCount", "completionTokenCount", "model", "keyId", "customId"}
		at := -1
		for _, f := range order {
			i := strings.Index(rec.Body.String(), `"`+f+`"`)
			if i < at {
				t.Errorf("field %s out of the seed's order: %s", f, rec.Body)
			}
			at = i
		}
	})

	t.Run("nothing in range", func(t *testing.T) {
		rec := e.do(t, "POST", "/api/v1/reporting/events", `{"start":1,"end":100,"increment":10,"keyIds":["k1"]}`)
		decode(t, rec, 200, nil)
		if got := strings.TrimSpace(rec.Body.String()); got != `{"dataPoints":[],"latencyInMsMedian":0,"latencyInMs99th":0}` {
			t.Errorf("empty report = %s", got)
		}
	})
}

func sortedKeys[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestReportEventsByDay(t *testing.T) {
	e := reportEnv(t)
	// A second day: k1 m1 twice, and a day later a k2 event.
	e.addReportEvent("k1", reporting.SecondsPerDay+5, "m1", "c", 200, 100, 7, 8, 11)
	e.addReportEvent("k1", 2*reporting.SecondsPerDay-1, "m1", "", 429, 0, 0, 0, 2)
	e.addReportEvent("k2", 2*reporting.SecondsPerDay, "m2", "", 200, 50, 1, 2, 3)
	m := func(n, ok int64, cost money.Nanos, lat, p, c int64) reporting.Metrics {
		return reporting.Metrics{NumberOfRequests: n, SuccessCount: ok, CostInUsd: cost, LatencyInMs: lat, PromptTokenCount: p, CompletionTokenCount: c}
	}
	d0, d1, d2 := repStart, repStart+reporting.SecondsPerDay, repStart+2*reporting.SecondsPerDay
	// k1's m1 on day 0: +10, +70 and +180 (-1 s is the day before).
	day0k1m1 := m(3, 2, money.Dollar+1000, reporting.MeanLatency(100+50+1, 3), 11, 6)
	tests := []struct {
		name       string
		start, end int64
		keys       string
		want       []reporting.DayPoint
	}{
		{"two whole days", d0, d2, `["k1","k2"]`, []reporting.DayPoint{
			{TimeStamp: d0, Metrics: day0k1m1, Model: "m1", KeyID: "k1"},
			{TimeStamp: d0, Metrics: m(1, 1, 2000, 300, 20, 10), Model: "m2", KeyID: "k1"},
			{TimeStamp: d0, Metrics: m(2, 2, 12000, reporting.MeanLatency(42+7, 2), 4, 5), Model: "m1", KeyID: "k2"},
			{TimeStamp: d1, Metrics: m(2, 1, 100, reporting.MeanLatency(11+2, 2), 7, 8), Model: "m1", KeyID: "k1"},
		}},
		{"a second of day 1 and one of day 2: both whole days", d1 + 10, d2 + 1, `["k2","k1"]`, []reporting.DayPoint{
			{TimeStamp: d1, Metrics: m(2, 1, 100, 7, 7, 8), Model: "m1", KeyID: "k1"},
			{TimeStamp: d2, Metrics: m(1, 1, 50, 3, 1, 2), Model: "m2", KeyID: "k2"},
		}},
		{"one key", d0, d0 + 1, `["k2"]`, []reporting.DayPoint{
			{TimeStamp: d0, Metrics: m(2, 2, 12000, 25, 4, 5), Model: "m1", KeyID: "k2"},
		}},
		{"no usage", d2 + reporting.SecondsPerDay, d2 + 10*reporting.SecondsPerDay, `["k1","k2","k3"]`, []reporting.DayPoint{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, "POST", "/api/v1/reporting/events-by-day", fmt.Sprintf(`{"start":%d,"end":%d,"keyIds":%s}`, tc.start, tc.end, tc.keys))
			var got reporting.DayReport
			decode(t, rec, 200, &got)
			if !reflect.DeepEqual(got.DataPoints, tc.want) {
				t.Errorf("dataPoints\n %+v\nwant\n %+v", got.DataPoints, tc.want)
			}
			var raw map[string]json.RawMessage
			_ = json.Unmarshal(rec.Body.Bytes(), &raw)
			if string(raw["latencyInMsMedian"]) != "0" || string(raw["latencyInMs99th"]) != "0" {
				t.Errorf("latencyInMsMedian/99th should be 0 (the seed's \"ignore\"): %s", rec.Body)
			}
		})
	}

	t.Run("shape", func(t *testing.T) {
		rec := e.do(t, "POST", "/api/v1/reporting/events-by-day", fmt.Sprintf(`{"start":%d,"end":%d,"keyIds":["k2"]}`, d0, d1))
		var raw struct{ DataPoints []map[string]json.RawMessage }
		decode(t, rec, 200, &raw)
		if len(raw.DataPoints) != 1 {
			t.Fatalf("%s", rec.Body)
		}
		want := []string{"completionTokenCount", "costInUsd", "keyId", "latencyInMs", "model", "numberOfRequests", "promptTokenCount", "successCount", "timeStamp"}
		if keys := sortedKeys(raw.DataPoints[0]); !slices.Equal(keys, want) {
			t.Errorf("data point fields %v, want the seed's %v", keys, want)
		}
	})
}

func TestCustomIDsEndpoint(t *testing.T) {
	e := reportEnv(t)
	e.addKey("quiet")
	tests := []struct {
		name, query string
		status      int
		want        string // body, or the error's param
	}{
		{"some", "?keyId=k1", 200, `{"customIds":["a","b"]}`},
		{"none", "?keyId=quiet", 200, `{"customIds":[]}`},
		{"missing keyId", "", 400, "keyId"},
		{"empty keyId", "?keyId=", 400, "keyId"},
		{"unknown key", "?keyId=nope", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(t, "GET", "/api/v1/custom-ids"+tc.query, "")
			switch tc.status {
			case 200:
				decode(t, rec, 200, nil)
				if got := strings.TrimSpace(rec.Body.String()); got != tc.want {
					t.Errorf("body %s, want %s", got, tc.want)
				}
			case 400:
				wantError(t, rec, 400, apierror.CodeInvalidRequest, tc.want)
			default:
				wantError(t, rec, tc.status, apierror.CodeNotFound, "")
			}
		})
	}
	if rec := e.do(t, "POST", "/api/v1/custom-ids?keyId=k1", ""); rec.Code != 405 {
		t.Errorf("POST custom-ids: %d", rec.Code)
	}
}

func TestReportValidation(t *testing.T) {
	e := reportEnv(t)
	ev, day := "/api/v1/reporting/events", "/api/v1/reporting/events-by-day"
	ok := fmt.Sprintf(`"start":%d,"end":%d`, repStart, repStart+60)
	tests := []struct {
		name, path, body, param string
	}{
		{"not an object", ev, `[1]`, ""},
		{"missing start", ev, `{"end":10,"increment":1,"keyIds":["k1"]}`, "start"},
		{"start not a number", ev, `{"start":"x","end":10,"increment":1,"keyIds":["k1"]}`, "start"},
		{"start a fraction", ev, `{"start":1.5,"end":10,"increment":1,"keyIds":["k1"]}`, "start"},
		{"negative start", ev, `{"start":-1,"end":10,"increment":1,"keyIds":["k1"]}`, "start"},
		{"missing end", ev, `{"start":0,"increment":1,"keyIds":["k1"]}`, "end"},
		{"end past 9999", ev, `{"start":0,"end":253402300800,"increment":1,"keyIds":["k1"]}`, "end"},
		{"end before start", ev, `{"start":10,"end":5,"increment":1,"keyIds":["k1"]}`, "end"},
		{"end equals start", ev, `{"start":10,"end":10,"increment":1,"keyIds":["k1"]}`, "end"},
		{"missing increment", ev, `{` + ok + `,"keyIds":["k1"]}`, "increment"},
		{"zero increment", ev, `{` + ok + `,"increment":0,"keyIds":["k1"]}`, "increment"},
		{"negative increment", ev, `{` + ok + `,"increment":-60,"keyIds":["k1"]}`, "increment"},
		{"too many points", ev, `{"start":0,"end":10001,"increment":1,"keyIds":["k1"]}`, "increment"},
		{"missing keyIds", ev, `{` + ok + `,"increment":60}`, "keyIds"},
		{"empty keyIds", ev, `{` + ok + `,"increment":60,"keyIds":[]}`, "keyIds"},
		{"keyIds a string", ev, `{` + ok + `,"increment":60,"keyIds":"k1"}`, "keyIds"},
		{"an empty key id", ev, `{` + ok + `,"increment":60,"keyIds":["k1",""]}`, "keyIds"},
		{"unknown key", ev, `{` + ok + `,"increment":60,"keyIds":["k1","nope"]}`, "keyIds"},
		{"customIds a string", ev, `{` + ok + `,"increment":60,"keyIds":["k1"],"customIds":"a"}`, "customIds"},
		{"groupBy unknown field", ev, `{` + ok + `,"increment":60,"keyIds":["k1"],"groupBy":["keyId","user"]}`, "groupBy"},
		{"groupBy a string", ev, `{` + ok + `,"increment":60,"keyIds":["k1"],"groupBy":"keyId"}`, "groupBy"},
		{"by day: missing start", day, `{"end":10,"keyIds":["k1"]}`, "start"},
		{"by day: end before start", day, `{"start":10,"end":9,"keyIds":["k1"]}`, "end"},
		{"by day: missing keyIds", day, `{` + ok + `}`, "keyIds"},
		{"by day: unknown key", day, `{` + ok + `,"keyIds":["nope"]}`, "keyIds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := wantError(t, e.do(t, "POST", tc.path, tc.body), 400, apierror.CodeInvalidRequest, tc.param)
			if tc.param != "" && !strings.Contains(b.Error.Message, tc.param) {
				t.Errorf("message %q does not name %s", b.Error.Message, tc.param)
			}
		})
	}
	// The limits themselves are fine; by day takes no increment.
	decode(t, e.do(t, "POST", ev, `{"start":0,"end":10000,"increment":1,"keyIds":["k1"]}`), 200, nil)
	decode(t, e.do(t, "POST", day, `{`+ok+`,"keyIds":["k1"]}`), 200, nil)

	t.Run("store unavailable", func(t *testing.T) {
		e.store.fail = errors.New("dynamodb: throttled")
		defer func() { e.store.fail = nil }()
		for _, path := range []string{ev, day} {
			rec := e.do(t, "POST", path, `{`+ok+`,"increment":60,"keyIds":["k1"]}`)
			wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
			if strings.Contains(rec.Body.String(), "throttled") {
				t.Errorf("cause leaked: %s", rec.Body)
			}
		}
		wantError(t, e.do(t, "GET", "/api/v1/custom-ids?keyId=k1", ""), 503, apierror.CodeServiceUnavailable, "")
	})

	t.Run("no admin key", func(t *testing.T) {
		for _, path := range []string{ev, day} {
			wantError(t, e.doAuth(t, "POST", path, `{`+ok+`,"increment":60,"keyIds":["k1"]}`, ""), 401, apierror.CodeInvalidAPIKey, "")
		}
		wantError(t, e.doAuth(t, "GET", "/api/v1/custom-ids?keyId=k1", "", "Bearer nope"), 401, apierror.CodeInvalidAPIKey, "")
	})
}

// slowEvents is a store whose event reads last until their context ends,
// like a range too large to read in one invocation.
type slowEvents struct{ *fakeStore }

func (slowEvents) Events(ctx context.Context, _ string, _, _ time.Time, _ func(*ledger.Event) error) error {
	<-ctx.Done()
	return fmt.Errorf("query events: %w", ctx.Err())
}

func TestReportEventsDeadline(t *testing.T) {
	e := reportEnv(t)
	h := New(Config{Store: slowEvents{e.store}, Secrets: e.secrets, AdminKey: func(context.Context) (string, error) { return adminKey, nil }})
	// The invocation has 2.3 s left: the report stops 2 s before that.
	ctx, cancel := context.WithTimeout(context.Background(), reporting.DeadlineReserve+300*time.Millisecond)
	defer cancel()
	body := fmt.Sprintf(`{"start":%d,"end":%d,"increment":60,"keyIds":["k1","k2"]}`, repStart, repStart+60)
	req := httptest.NewRequest("POST", "/api/v1/reporting/events", strings.NewReader(body)).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	rec := httptest.NewRecorder()
	begin := time.Now()
	h.ServeHTTP(rec, req)
	b := wantError(t, rec, 400, apierror.CodeInvalidRequest, "end")
	if took := time.Since(begin); took > time.Second || ctx.Err() != nil {
		t.Errorf("answered after %v (context: %v), want before the reserve", took, ctx.Err())
	}
	if !strings.Contains(b.Error.Message, "events-by-day") {
		t.Errorf("message %q does not point to events-by-day", b.Error.Message)
	}
}

func TestListMetricsFromAggregates(t *testing.T) {
	e := reportEnv(t)
	// Whole days: the listing must not read events.
	e.store.failEvents = errors.New("events must not be read for whole days")
	path := fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", repStart, repStart+reporting.SecondsPerDay)
	var views []keyView
	decode(t, e.do(t, "GET", path, ""), 200, &views)
	got := map[string]reporting.Metrics{}
	for _, v := range views {
		if v.Metrics == nil {
			t.Fatalf("key %s has no metrics", v.KeyID)
		}
		got[v.KeyID] = *v.Metrics
	}
	want := map[string]reporting.Metrics{
		// +10, +20, +70 and +180 (the same day), the mean latency.
		"k1": {NumberOfRequests: 4, SuccessCount: 3, CostInUsd: money.Dollar + 3000, LatencyInMs: reporting.MeanLatency(100+300+50+1, 4), PromptTokenCount: 31, CompletionTokenCount: 16},
		"k2": {NumberOfRequests: 2, SuccessCount: 2, CostInUsd: 12000, LatencyInMs: reporting.MeanLatency(42+7, 2), PromptTokenCount: 4, CompletionTokenCount: 5},
		"k3": {NumberOfRequests: 1, SuccessCount: 1, CostInUsd: money.Dollar, LatencyInMs: 1, PromptTokenCount: 1, CompletionTokenCount: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metrics from aggregates\n %+v\nwant\n %+v", got, want)
	}

	// The same requests read from events (a range one second shorter, so
	// not whole days) add up to the same.
	e.store.failEvents = nil
	var fromEvents []keyView
	decode(t, e.do(t, "GET", fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", repStart, repStart+reporting.SecondsPerDay-1), ""), 200, &fromEvents)
	for _, v := range fromEvents {
		if *v.Metrics != want[v.KeyID] {
			t.Errorf("key %s: from events %+v, from aggregates %+v", v.KeyID, *v.Metrics, want[v.KeyID])
		}
	}

	// A range that is not whole days reads events.
	e.store.failEvents = errors.New("dynamodb: throttled")
	wantError(t, e.do(t, "GET", fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", repStart+1, repStart+reporting.SecondsPerDay), ""),
		503, apierror.CodeServiceUnavailable, "")
}

func TestReportGzipOverHTTP(t *testing.T) {
	e := reportEnv(t)
	for i := range 200 {
		e.addReportEvent("k1", int64(i), "m1", fmt.Sprint("c", i), 200, 1, 1, 1, int64(i))
	}
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	body := fmt.Sprintf(`{"start":%d,"end":%d,"increment":1,"keyIds":["k1"],"groupBy":["customId"]}`, repStart, repStart+200)
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/reporting/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got reporting.Report
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !resp.Uncompressed || len(got.DataPoints) < 200 {
		t.Errorf("uncompressed by the client: %v, %d points", resp.Uncompressed, len(got.DataPoints))
	}
}
