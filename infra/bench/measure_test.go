package main

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
)

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"empty", nil, 50, math.NaN()},
		{"single", []float64{7}, 99, 7},
		{"median odd", []float64{1, 2, 3}, 50, 2},
		{"median even interpolates", []float64{1, 2, 3, 4}, 50, 2.5},
		{"p0 is min", []float64{1, 2, 3}, 0, 1},
		{"p100 is max", []float64{1, 2, 3}, 100, 3},
		{"p99 of 0..100", seq(101), 99, 99},
		{"p99 of 0..9 interpolates", seq(10), 99, 8.91},
		{"p90 of two", []float64{10, 20}, 90, 19},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := percentile(tt.sorted, tt.p)
			if math.IsNaN(tt.want) {
				if !math.IsNaN(got) {
					t.Fatalf("percentile = %v, want NaN", got)
				}
				return
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestQuantilesDoesNotReorder(t *testing.T) {
	xs := []float64{3, 1, 2}
	p50, p99 := quantiles(xs)
	if p50 != 2 || math.Abs(p99-2.98) > 1e-9 {
		t.Fatalf("quantiles = %v, %v; want 2, 2.98", p50, p99)
	}
	if !slices.Equal(xs, []float64{3, 1, 2}) {
		t.Fatalf("quantiles reordered its input: %v", xs)
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i)
	}
	return out
}

func TestSplitEvents(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"none", "", nil},
		{"one", "data: a\n\n", []string{"data: a\n\n"}},
		{"two", "data: a\n\ndata: b\n\n", []string{"data: a\n\n", "data: b\n\n"}},
		{"named multi-line", "event: x\ndata: a\ndata: b\n\n", []string{"event: x\ndata: a\ndata: b\n\n"}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"data: a\r\n\r\n", "data: b\r\n\r\n"}},
		{"stray blank lines skipped", "\n\ndata: a\n\n\ndata: b\n\n", []string{"data: a\n\n", "data: b\n\n"}},
		{"unterminated event left out", "data: a\n\ndata: b\n", []string{"data: a\n\n"}},
		{"unterminated line left out", "data: a\n\ndata: b", []string{"data: a\n\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range splitEvents([]byte(tt.body)) {
				got = append(got, tt.body[s.start:s.end])
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("splitEvents(%q) = %q, want %q", tt.body, got, tt.want)
			}
		})
	}
}

func TestSentUnixNano(t *testing.T) {
	tests := []struct {
		event string
		want  int64
		ok    bool
	}{
		{"data: {\"choices\":[],\"fake_sent_unix_nano\":1700000000123456789}\n\n", 1700000000123456789, true},
		{"data: {\"choices\":[]}\n\n", 0, false},
		{"data: [DONE]\n\n", 0, false},
		{"data: {\"fake_sent_unix_nano\":\"x\"}\n\n", 0, false},
		{"event: x\ndata: {\"fake_sent_unix_nano\":5}\n\n", 5, true},
	}
	for _, tt := range tests {
		got, ok := sentUnixNano([]byte(tt.event))
		if got != tt.want || ok != tt.ok {
			t.Errorf("sentUnixNano(%q) = %d, %v; want %d, %v", tt.event, got, ok, tt.want, tt.ok)
		}
	}
}

// content returns a content event sent at ns.
func content(ns int) string {
	return "data: {\"fake_sent_unix_nano\":" + strconv.Itoa(ns) + "}\n\n"
}

func TestAnalyze(t *testing.T) {
	role := "data: {\"role\":\"assistant\"}\n\n"
	finish := "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n"
	done := "data: [DONE]\n\n"
	c1, c2 := content(1_000_000), content(21_000_000)
	tests := []struct {
		name  string
		parts []string // what each Read returned
		ats   []int64  // when each Read returned (Unix ns)
		want  streamStats
	}{
		{
			name:  "one read per event",
			parts: []string{role, c1, c2, done},
			ats:   []int64{500_000, 1_250_000, 22_000_000, 22_100_000},
			want: streamStats{events: 4, content: 2, reads: 4, delaysMs: []float64{0.25, 1},
				contentReads: 2, misdelivered: 0, lastSent: 21_000_000, done: true},
		},
		{
			name:  "split event takes the later read time",
			parts: []string{role + c1[:10], c1[10:], c2 + done},
			ats:   []int64{500_000, 3_000_000, 21_500_000},
			want: streamStats{events: 4, content: 2, reads: 3, delaysMs: []float64{2, 0.5},
				contentReads: 3, misdelivered: 1, lastSent: 21_000_000, done: true},
		},
		{
			name:  "two content events in one read",
			parts: []string{role, c1 + c2},
			ats:   []int64{500_000, 21_000_000},
			want: streamStats{events: 3, content: 2, reads: 2, delaysMs: []float64{20, 0},
				contentReads: 1, misdelivered: 2, lastSent: 21_000_000, done: false},
		},
		{
			name:  "sharing a read with role or finish events is fine",
			parts: []string{role + c1, c2 + finish + done},
			ats:   []int64{1_500_000, 21_500_000},
			want: streamStats{events: 5, content: 2, reads: 2, delaysMs: []float64{0.5, 0.5},
				contentReads: 2, misdelivered: 0, lastSent: 21_000_000, done: true},
		},
		{
			name:  "cut stream",
			parts: []string{role, c1[:12]},
			ats:   []int64{500_000, 2_000_000},
			want:  streamStats{events: 1, content: 0, reads: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			var reads []readMark
			for i, p := range tt.parts {
				body = append(body, p...)
				reads = append(reads, readMark{end: len(body), at: tt.ats[i]})
			}
			got := analyze(body, reads)
			if !slices.Equal(got.delaysMs, tt.want.delaysMs) {
				t.Errorf("delaysMs = %v, want %v", got.delaysMs, tt.want.delaysMs)
			}
			got.delaysMs, tt.want.delaysMs = nil, nil
			if got.events != tt.want.events || got.content != tt.want.content || got.reads != tt.want.reads ||
				got.contentReads != tt.want.contentReads || got.misdelivered != tt.want.misdelivered ||
				got.lastSent != tt.want.lastSent || got.done != tt.want.done {
				t.Errorf("analyze = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSpans(t *testing.T) {
	const ms = int64(time.Millisecond)
	tests := []struct {
		name      string
		sent, eof int64
		m         mark
		want      limitSpans
		wantErr   string
	}{
		{
			name: "in order", sent: 1 * ms, eof: 30 * ms, m: mark{enter: 2 * ms, arrive: 12 * ms, upDone: 15 * ms},
			want: limitSpans{before: 10, toUpstream: 11, after: 15},
		},
		{
			name: "equal times are zero spans", sent: 5 * ms, eof: 5 * ms, m: mark{enter: 5 * ms, arrive: 5 * ms, upDone: 5 * ms},
			want: limitSpans{},
		},
		{name: "not through the upstream", sent: 1, eof: 9, m: mark{enter: 2}, wantErr: "missing"},
		{name: "not through the proxy", sent: 1, eof: 9, m: mark{arrive: 3, upDone: 4}, wantErr: "missing"},
		{name: "no end of body", sent: 1, m: mark{enter: 2, arrive: 3, upDone: 4}, wantErr: "missing"},
		{name: "upstream before proxy", sent: 1, eof: 9, m: mark{enter: 4, arrive: 3, upDone: 5}, wantErr: "order"},
		{name: "body ended before upstream finished", sent: 1, eof: 4, m: mark{enter: 2, arrive: 3, upDone: 5}, wantErr: "order"},
		{name: "proxy before send", sent: 3, eof: 9, m: mark{enter: 2, arrive: 4, upDone: 5}, wantErr: "order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := spans(tt.sent, tt.eof, tt.m)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("spans error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("spans = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestOpStats(t *testing.T) {
	before := opStats{
		"GetItem":      {calls: 2, reported: 2, units: 2, elapsed: 2 * time.Millisecond},
		"BatchGetItem": {calls: 1, reported: 1, units: 6, elapsed: 5 * time.Millisecond},
	}
	after := opStats{
		"GetItem":                        {calls: 2, reported: 2, units: 2, elapsed: 2 * time.Millisecond},
		"BatchGetItem":                   {calls: 3, reported: 3, units: 18, elapsed: 13 * time.Millisecond},
		"TransactWriteItems (reserve)":   {calls: 2, reported: 2, units: 28, elapsed: 30 * time.Millisecond},
		"TransactWriteItems (unlabeled)": {calls: 1, reported: 0, units: 0, elapsed: time.Millisecond},
	}
	d := after.minus(before)
	want := opStats{
		"BatchGetItem":                   {calls: 2, reported: 2, units: 12, elapsed: 8 * time.Millisecond},
		"TransactWriteItems (reserve)":   {calls: 2, reported: 2, units: 28, elapsed: 30 * time.Millisecond},
		"TransactWriteItems (unlabeled)": {calls: 1, elapsed: time.Millisecond},
	}
	if len(d) != len(want) {
		t.Fatalf("minus = %v, want %v (operations without calls left out)", d, want)
	}
	for op, v := range want {
		if d[op] != v {
			t.Errorf("minus[%s] = %+v, want %+v", op, d[op], v)
		}
	}
	sum := opStats{}
	sum.add(d)
	sum.add(d)
	if got := sum["BatchGetItem"]; got != (opStat{calls: 4, reported: 4, units: 24, elapsed: 16 * time.Millisecond}) {
		t.Errorf("add twice: BatchGetItem = %+v", got)
	}
	if got := d.total(); got != (opStat{calls: 5, reported: 4, units: 40, elapsed: 39 * time.Millisecond}) {
		t.Errorf("total = %+v", got)
	}

	tests := []struct {
		name string
		s    opStats
		n    int
		want []string
	}{
		{"none", opStats{}, 10, []string{"none"}},
		{"no requests", d, 0, []string{"none"}},
		{"sorted by name, per request", d, 2, []string{
			"BatchGetItem 1.00 (6.00 CU, 4.00 ms/call)",
			"TransactWriteItems (reserve) 1.00 (14.00 CU, 15.00 ms/call)",
			"TransactWriteItems (unlabeled) 0.50 (n/a CU, 1.00 ms/call)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.perRequest(tt.n); !slices.Equal(got, tt.want) {
				t.Fatalf("perRequest(%d) =\n  %q\nwant\n  %q", tt.n, got, tt.want)
			}
		})
	}
}

func TestOpLabel(t *testing.T) {
	tests := []struct {
		name   string
		op     string
		params any
		want   string
	}{
		{"get item", "GetItem", &ddb.GetItemInput{}, "GetItem"},
		{"event alone", "PutItem", &ddb.PutItemInput{Item: map[string]ddb.AttributeValue{"fold": &ddb.AttributeValueMemberN{Value: "1"}}}, "PutItem (event)"},
		{"other put", "PutItem", &ddb.PutItemInput{Item: map[string]ddb.AttributeValue{"pk": &ddb.AttributeValueMemberS{Value: "KEY#k"}}}, "PutItem"},
		{"reserve starts with checks", "TransactWriteItems", &ddb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{
			{ConditionCheck: &ddb.ConditionCheck{}}, {Update: &ddb.Update{}}, {Put: &ddb.Put{}},
		}}, "TransactWriteItems (reserve)"},
		{"settle starts with the delete", "TransactWriteItems", &ddb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{
			{Delete: &ddb.Delete{}}, {Update: &ddb.Update{}}, {Put: &ddb.Put{}},
		}}, "TransactWriteItems (settle)"},
		{"event starts with its put", "TransactWriteItems", &ddb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{
			{Put: &ddb.Put{}}, {Update: &ddb.Update{}},
		}}, "TransactWriteItems (event)"},
		{"reserve with other owners starts with the ledger", "TransactWriteItems", &ddb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{
			{Update: &ddb.Update{UpdateExpression: aws.String("SET #n1 = if_not_exists(#n1, :v0) ADD #n2 :v1")}}, {Update: &ddb.Update{}},
		}}, "TransactWriteItems (reserve)"},
		{"settle with other owners starts with the ledger", "TransactWriteItems", &ddb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{
			{Update: &ddb.Update{ConditionExpression: aws.String("(begins_with(#n0, :v0))")}}, {Update: &ddb.Update{}},
		}}, "TransactWriteItems (settle)"},
		{"other transaction", "TransactWriteItems", &ddb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{
			{Update: &ddb.Update{UpdateExpression: aws.String("SET cfg = :v")}},
		}}, "TransactWriteItems"},
		{"reserve on the ledger", "UpdateItem", &ddb.UpdateItemInput{UpdateExpression: aws.String("SET #n1 = if_not_exists(#n1, :v0)")}, "UpdateItem (reserve)"},
		{"settle on the ledger", "UpdateItem", &ddb.UpdateItemInput{ConditionExpression: aws.String("(begins_with(#n0, :v0))")}, "UpdateItem (settle)"},
		{"other update", "UpdateItem", &ddb.UpdateItemInput{UpdateExpression: aws.String("REMOVE #n0")}, "UpdateItem"},
		{"the settle's read of the entry", "GetItem", &ddb.GetItemInput{ProjectionExpression: aws.String("#e")}, "GetItem (settle: entry)"},
		{"empty transaction", "TransactWriteItems", &ddb.TransactWriteItemsInput{}, "TransactWriteItems"},
		{"no parameters", "ListTables", nil, "ListTables"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := opLabel(tt.op, tt.params); got != tt.want {
				t.Fatalf("opLabel = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAskConsumedCapacity(t *testing.T) {
	get := &ddb.GetItemInput{}
	tx := &ddb.TransactWriteItemsInput{}
	batch := &ddb.BatchGetItemInput{}
	chosen := &ddb.QueryInput{ReturnConsumedCapacity: ddb.ReturnConsumedCapacityIndexes}
	tests := []struct {
		name   string
		params any
		known  bool
		field  func() ddb.ReturnConsumedCapacity
		want   ddb.ReturnConsumedCapacity
	}{
		{"get item", get, true, func() ddb.ReturnConsumedCapacity { return get.ReturnConsumedCapacity }, ddb.ReturnConsumedCapacityTotal},
		{"transaction", tx, true, func() ddb.ReturnConsumedCapacity { return tx.ReturnConsumedCapacity }, ddb.ReturnConsumedCapacityTotal},
		{"batch get", batch, true, func() ddb.ReturnConsumedCapacity { return batch.ReturnConsumedCapacity }, ddb.ReturnConsumedCapacityTotal},
		{"caller's choice kept", chosen, true, func() ddb.ReturnConsumedCapacity { return chosen.ReturnConsumedCapacity }, ddb.ReturnConsumedCapacityIndexes},
		{"unknown input", &ddb.DescribeTableInput{}, false, nil, ""},
		{"nil", nil, false, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := askConsumedCapacity(tt.params); got != tt.known {
				t.Fatalf("askConsumedCapacity = %v, want %v", got, tt.known)
			}
			if tt.field != nil && tt.field() != tt.want {
				t.Fatalf("ReturnConsumedCapacity = %q, want %q", tt.field(), tt.want)
			}
		})
	}
}

func TestConsumedUnits(t *testing.T) {
	cc := func(u float64) ddb.ConsumedCapacity { return ddb.ConsumedCapacity{CapacityUnits: aws.Float64(u)} }
	one := cc(1.5)
	tests := []struct {
		name     string
		result   any
		units    float64
		reported bool
	}{
		{"get item", &ddb.GetItemOutput{ConsumedCapacity: &one}, 1.5, true},
		{"get item without capacity", &ddb.GetItemOutput{}, 0, false},
		{"typed nil output (failed call)", (*ddb.GetItemOutput)(nil), 0, false},
		{"typed nil transaction", (*ddb.TransactWriteItemsOutput)(nil), 0, false},
		{"no output", nil, 0, false},
		{"transaction sums tables", &ddb.TransactWriteItemsOutput{ConsumedCapacity: []ddb.ConsumedCapacity{cc(10), cc(4)}}, 14, true},
		{"batch get", &ddb.BatchGetItemOutput{ConsumedCapacity: []ddb.ConsumedCapacity{cc(6)}}, 6, true},
		{"reported zero", &ddb.BatchGetItemOutput{ConsumedCapacity: []ddb.ConsumedCapacity{{}}}, 0, true},
		{"unknown output", &ddb.DescribeTableOutput{}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			units, reported := consumedUnits(tt.result)
			if units != tt.units || reported != tt.reported {
				t.Fatalf("consumedUnits = %v, %v; want %v, %v", units, reported, tt.units, tt.reported)
			}
		})
	}
}

func TestMarks(t *testing.T) {
	ms := newMarks()
	upstream := ms.upstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		_, _ = w.Write([]byte("ok"))
	}))
	// The "proxy" here calls the upstream handler directly, as a stand-in.
	proxied := ms.proxy(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		upstream.ServeHTTP(w, r)
	}))
	tests := []struct {
		name   string
		header string
		found  bool
	}{
		{"tagged", "req-1", true},
		{"untagged passes untouched", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
			if tt.header != "" {
				req.Header.Set(markHeader, tt.header)
			}
			rec := httptest.NewRecorder()
			proxied.ServeHTTP(rec, req)
			if rec.Body.String() != "ok" {
				t.Fatalf("body = %q", rec.Body.String())
			}
			m, ok := ms.take(tt.header)
			if ok != tt.found {
				t.Fatalf("take found = %v, want %v", ok, tt.found)
			}
			if !ok {
				return
			}
			if m.enter == 0 || m.arrive-m.enter < int64(time.Millisecond) || m.upDone-m.arrive < int64(time.Millisecond) {
				t.Fatalf("marks = %+v: want enter, then arrive and upDone at least 1 ms apart each", m)
			}
			if _, again := ms.take(tt.header); again {
				t.Fatal("take did not forget the marks")
			}
		})
	}
	if len(ms.m) != 0 {
		t.Fatalf("marks left behind: %v", ms.m)
	}
}

func TestRoundTrips(t *testing.T) {
	tests := []struct {
		name             string
		spans            []callSpan
		from, to         int64
		wantCalls, trips int
	}{
		{name: "none", from: 0, to: 100},
		{name: "in turn", spans: []callSpan{{"", 10, 20}, {"", 20, 30}, {"", 31, 40}}, from: 0, to: 100, wantCalls: 3, trips: 3},
		{name: "concurrent are one", spans: []callSpan{{"", 10, 30}, {"", 12, 25}, {"", 40, 50}}, from: 0, to: 100, wantCalls: 3, trips: 2},
		{name: "a chain of overlaps is one", spans: []callSpan{{"", 25, 40}, {"", 10, 30}, {"", 38, 45}}, from: 0, to: 100, wantCalls: 3, trips: 1},
		{name: "outside the window left out", spans: []callSpan{{"", 5, 15}, {"", 10, 20}, {"", 100, 120}}, from: 10, to: 100, wantCalls: 1, trips: 1},
		{name: "skipped operations left out", spans: []callSpan{{"GetItem", 10, 20}, {"BatchGetItem", 20, 30}, {"UpdateItem (reserve)", 12, 18}}, from: 0, to: 100, wantCalls: 2, trips: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newOpCounter()
			c.spans = tt.spans
			calls, trips := c.roundTrips(tt.from, tt.to, "BatchGetItem")
			if calls != tt.wantCalls || trips != tt.trips {
				t.Errorf("roundTrips = %d calls, %d trips; want %d, %d", calls, trips, tt.wantCalls, tt.trips)
			}
		})
	}
}

// TestWriteEstimate: the AWS estimate counts every write: 2 units per KB
// per transaction item, 1 per KB outside a transaction, 1 per KB per index
// entry a Put writes.
func TestWriteEstimate(t *testing.T) {
	event := map[string]ddb.AttributeValue{
		"pk": &ddb.AttributeValueMemberS{Value: "EV#k"}, "gsi1pk": &ddb.AttributeValueMemberS{Value: "x"},
		"data": &ddb.AttributeValueMemberS{Value: strings.Repeat("d", 1500)}, // 2 KB
	}
	var tx txItems
	ctx := context.Background()
	next := func(context.Context) (any, error) { return nil, nil }
	calls := []any{
		&ddb.TransactWriteItemsInput{TransactItems: []ddb.TransactWriteItem{{Put: &ddb.Put{Item: event}}, {Update: &ddb.Update{}}}}, // 2×2 + 2 + 2×1
		&ddb.PutItemInput{Item: event}, // 2 + 2
		&ddb.UpdateItemInput{},         // 1
		&ddb.DeleteItemInput{},         // 1
		&ddb.GetItemInput{},            // 0
	}
	for _, in := range calls {
		if _, err := tx.count(ctx, "", in, next); err != nil {
			t.Fatal(err)
		}
	}
	got := tx.snapshot()
	if got.estWCU != 14 || got.calls != 1 || got.items != 2 || got.puts != 1 || got.indexPuts != 2 {
		t.Fatalf("estimate %v WCU, %d transactions of %d items, %d puts in them, %d index entries; want 14 WCU, 1 transaction of 2 items, 1 put in it, 2 index entries",
			got.estWCU, got.calls, got.items, got.puts, got.indexPuts)
	}
}

// TestPairRatios: each pair's ratio is the second run's throughput over
// the first's; a run that served nothing leaves no ratio to report.
func TestPairRatios(t *testing.T) {
	run := func(ok int, wall time.Duration) *scaleLoad { return &scaleLoad{ok: ok, wall: wall} }
	pairs := [][2]*scaleLoad{
		{run(1000, 10*time.Second), run(1000, 20*time.Second)}, // 100 vs 50 req/s
		{run(1000, 10*time.Second), run(800, 10*time.Second)},  // 100 vs 80
		{run(500, 5*time.Second), run(900, 10*time.Second)},    // 100 vs 90
	}
	got := pairRatios(pairs)
	if want := []float64{0.5, 0.8, 0.9}; !slices.Equal(got, want) {
		t.Fatalf("ratios %v, want %v", got, want)
	}
	if m := median(got); m != 0.8 {
		t.Fatalf("median %v, want 0.8", m)
	}
	if got := formatRatios(got); got != "0.50, 0.80, 0.90" {
		t.Fatalf("formatted %q", got)
	}
	if got := pairRatios(append(pairs, [2]*scaleLoad{run(0, time.Second), run(10, time.Second)})); got != nil {
		t.Fatalf("a pair whose first run served nothing: %v, want nil", got)
	}
}
