package main

import (
	"math"
	"slices"
	"strconv"
	"testing"
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
