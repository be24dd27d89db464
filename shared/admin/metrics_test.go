package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/admin/reporting"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

func (e *env) addEvent(keyID string, atMs int64, status int, cost money.Nanos, prompt, completion, latency int64) {
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	e.store.events = append(e.store.events, &ledger.Event{
		ID: fmt.Sprint(len(e.store.events)), KeyID: keyID, CreatedAt: atMs, Status: status, Cost: cost,
		Usage: ledger.Usage{PromptTokens: prompt, CompletionTokens: completion}, LatencyMs: latency,
	})
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	k1 := e.createKey(t, `{"name":"one","providerSettingIds":["p1"]}`)
	k2 := e.createKey(t, `{"name":"two","providerSettingIds":["p1"]}`)
	start := testNow.Unix()
	ms := start * 1000
	e.addEvent(k1.ID, ms+10_000, 200, 1*money.Micro*1000, 10, 5, 100)
	e.addEvent(k1.ID, ms+59_999, 200, 2*money.Micro*1000, 20, 10, 300)
	e.addEvent(k1.ID, ms+70_000, 500, 0, 0, 0, 50)
	e.addEvent(k1.ID, ms+130_000, 200, 500*money.Micro, 5, 1, 1000)
	e.addEvent(k1.ID, ms-1, 200, money.Dollar, 1, 1, 1)       // before start
	e.addEvent(k1.ID, ms+180_000, 200, money.Dollar, 1, 1, 1) // at end: excluded
	e.addEvent(k2.ID, ms+5_000, 200, 7*money.Cent, 3, 4, 42)

	total1 := reporting.Metrics{NumberOfRequests: 4, SuccessCount: 3, CostInUsd: 3500 * money.Micro, LatencyInMs: 100,
		PromptTokenCount: 35, CompletionTokenCount: 16}
	total2 := reporting.Metrics{NumberOfRequests: 1, SuccessCount: 1, CostInUsd: 7 * money.Cent, LatencyInMs: 42,
		PromptTokenCount: 3, CompletionTokenCount: 4}

	t.Run("list", func(t *testing.T) {
		rec := e.do(t, "GET", fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", start, start+180), "")
		var views []keyView
		decode(t, rec, 200, &views)
		got := map[string]reporting.Metrics{}
		for _, v := range views {
			if v.Metrics == nil {
				t.Fatalf("no metrics for %s", v.KeyID)
			}
			got[v.KeyID] = *v.Metrics
		}
		// The listing's latency is the mean (as from the daily
		// aggregates), the time series' the median.
		mean1 := total1
		mean1.LatencyInMs = (100 + 300 + 50 + 1000 + 2) / 4
		if !reflect.DeepEqual(got, map[string]reporting.Metrics{k1.ID: mean1, k2.ID: total2}) {
			t.Errorf("metrics = %+v", got)
		}
		if !strings.Contains(rec.Body.String(), `"costInUsd":0.0035,`) {
			t.Errorf("cost not exact decimal dollars: %s", rec.Body)
		}
		if strings.Contains(rec.Body.String(), "dataPoints") {
			t.Errorf("list has dataPoints")
		}
	})

	t.Run("one", func(t *testing.T) {
		rec := e.do(t, "GET", fmt.Sprintf("/api/v1/secret-keys/%s?includeMetrics=true&start=%d&end=%d&increment=60", k1.ID, start, start+180), "")
		var got []keyDetail
		decode(t, rec, 200, &got)
		if len(got) != 1 {
			t.Fatalf("want an array of one key, got %s", rec.Body)
		}
		d := got[0]
		want := []reporting.DataPoint{
			{TimeStamp: start, Metrics: reporting.Metrics{NumberOfRequests: 2, SuccessCount: 2, CostInUsd: 3 * money.Micro * 1000,
				LatencyInMs: 100, PromptTokenCount: 30, CompletionTokenCount: 15}},
			{TimeStamp: start + 60, Metrics: reporting.Metrics{NumberOfRequests: 1, LatencyInMs: 50}},
			{TimeStamp: start + 120, Metrics: reporting.Metrics{NumberOfRequests: 1, SuccessCount: 1, CostInUsd: 500 * money.Micro,
				LatencyInMs: 1000, PromptTokenCount: 5, CompletionTokenCount: 1}},
		}
		if !reflect.DeepEqual(d.DataPoints, want) {
			t.Errorf("dataPoints\n %+v\nwant\n %+v", d.DataPoints, want)
		}
		if d.Metrics == nil || *d.Metrics != total1 {
			t.Errorf("metrics = %+v", d.Metrics)
		}
		if d.LatencyInMsMedian != 100 || d.LatencyInMs99th != 1000 {
			t.Errorf("median %d, p99 %d", d.LatencyInMsMedian, d.LatencyInMs99th)
		}
		if d.KeyID != k1.ID || d.Name != "one" {
			t.Errorf("key fields = %+v", d.keyView)
		}
	})

	t.Run("only non-empty buckets", func(t *testing.T) {
		rec := e.do(t, "GET", fmt.Sprintf("/api/v1/secret-keys/%s?includeMetrics=true&start=%d&end=%d&increment=10", k2.ID, start, start+100), "")
		var got []keyDetail
		decode(t, rec, 200, &got)
		if len(got[0].DataPoints) != 1 || got[0].DataPoints[0].TimeStamp != start {
			t.Errorf("dataPoints = %+v", got[0].DataPoints)
		}
	})

	t.Run("no events", func(t *testing.T) {
		rec := e.do(t, "GET", fmt.Sprintf("/api/v1/secret-keys/%s?includeMetrics=true&start=1&end=100&increment=10", k2.ID), "")
		var raw []map[string]json.RawMessage
		decode(t, rec, 200, &raw)
		if string(raw[0]["dataPoints"]) != "[]" || string(raw[0]["latencyInMs99th"]) != "0" {
			t.Errorf("empty range = %s", rec.Body)
		}
	})

	t.Run("without includeMetrics", func(t *testing.T) {
		rec := e.do(t, "GET", "/api/v1/secret-keys/"+k1.ID+"?includeMetrics=false&start=x", "")
		decode(t, rec, 200, nil)
		if strings.Contains(rec.Body.String(), "metrics") || strings.Contains(rec.Body.String(), "dataPoints") {
			t.Errorf("metrics without includeMetrics: %s", rec.Body)
		}
	})
}

func TestMetricsQueryValidation(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	k := e.createKey(t, `{"name":"one","providerSettingIds":["p1"]}`)
	list, one := "/api/v1/secret-keys", "/api/v1/secret-keys/"+k.ID
	tests := []struct {
		name, path, param string
	}{
		{"bad includeMetrics", list + "?includeMetrics=maybe", "includeMetrics"},
		{"list missing start", list + "?includeMetrics=true&end=10", "start"},
		{"list missing end", list + "?includeMetrics=true&start=10", "end"},
		{"list start not a number", list + "?includeMetrics=true&start=yesterday&end=10", "start"},
		{"list negative start", list + "?includeMetrics=true&start=-5&end=10", "start"},
		{"list end before start", list + "?includeMetrics=true&start=10&end=5", "end"},
		{"list end equals start", list + "?includeMetrics=true&start=10&end=10", "end"},
		{"one missing start", one + "?includeMetrics=true&end=10&increment=1", "start"},
		{"one missing increment", one + "?includeMetrics=true&start=0&end=10", "increment"},
		{"one zero increment", one + "?includeMetrics=true&start=0&end=10&increment=0", "increment"},
		{"one too many points", one + "?includeMetrics=true&start=0&end=10001&increment=1", "increment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := wantError(t, e.do(t, "GET", tc.path, ""), 400, apierror.CodeInvalidRequest, tc.param)
			if !strings.Contains(b.Error.Message, tc.param) {
				t.Errorf("message %q does not name %s", b.Error.Message, tc.param)
			}
		})
	}
	// The most points allowed is fine.
	decode(t, e.do(t, "GET", one+"?includeMetrics=true&start=0&end=10000&increment=1", ""), 200, nil)
	decode(t, e.do(t, "GET", one+"?includeMetrics=1&start=0&end=10000&increment=1", ""), 200, nil)
}

func TestMetricsManyKeys(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	const n = 3*reporting.ListConcurrency + 1
	want := map[string]int64{}
	for i := range n {
		k := e.createKey(t, `{"name":"k","providerSettingIds":["p1"]}`)
		for j := range i {
			e.addEvent(k.ID, testNow.UnixMilli()+int64(j), 200, money.Cent, 1, 1, int64(j))
		}
		want[k.ID] = int64(i)
	}
	path := fmt.Sprintf("/api/v1/secret-keys?includeMetrics=true&start=%d&end=%d", testNow.Unix(), testNow.Unix()+60)
	var views []keyView
	decode(t, e.do(t, "GET", path, ""), 200, &views)
	if len(views) != n {
		t.Fatalf("%d views, want %d", len(views), n)
	}
	for _, v := range views {
		if v.Metrics == nil || v.Metrics.NumberOfRequests != want[v.KeyID] || v.Metrics.CostInUsd != money.Nanos(want[v.KeyID])*money.Cent {
			t.Errorf("key %s: metrics %+v, want %d requests", v.KeyID, v.Metrics, want[v.KeyID])
		}
	}

	e.store.failEvents = errors.New("dynamodb: throttled")
	rec := e.do(t, "GET", path, "")
	wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
	if strings.Contains(rec.Body.String(), "throttled") {
		t.Errorf("cause leaked: %s", rec.Body)
	}
	wantError(t, e.do(t, "GET", "/api/v1/secret-keys/"+views[0].KeyID+"?includeMetrics=true&start=0&end=10&increment=1", ""),
		503, apierror.CodeServiceUnavailable, "")
}
