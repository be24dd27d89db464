package reporting

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// Metrics is a key's usage over a time range (the seed's "metrics", and each
// data point's numbers). LatencyInMs is the median latency of the requests
// in a time series (one key's dataPoints and metrics, /reporting/events),
// and the mean where only sums are kept: the key listing and
// /reporting/events-by-day.
type Metrics struct {
	NumberOfRequests     int64       `json:"numberOfRequests"`
	SuccessCount         int64       `json:"successCount"`
	CostInUsd            money.Nanos `json:"costInUsd"`
	LatencyInMs          int64       `json:"latencyInMs"`
	PromptTokenCount     int64       `json:"promptTokenCount"`
	CompletionTokenCount int64       `json:"completionTokenCount"`
}

// DataPoint is the usage of one increment starting at TimeStamp.
type DataPoint struct {
	TimeStamp int64 `json:"timeStamp"`
	Metrics
}

// Bounds of the metrics query.
const (
	maxDataPoints = 10000
	// ListConcurrency bounds the event queries of one list request.
	ListConcurrency = 8
)

// MetricsQuery is the includeMetrics, start, end and increment of a GET.
type MetricsQuery struct {
	Include               bool  // includeMetrics: the rest is set only when true
	start, end, increment int64 // unix seconds; increment only for one key
}

// ParseMetricsQuery reads the query; withIncrement makes increment required
// along with start and end.
func ParseMetricsQuery(r *http.Request, withIncrement bool) (MetricsQuery, error) {
	var q MetricsQuery
	vals := r.URL.Query()
	if s := vals.Get("includeMetrics"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, request.MustBe("includeMetrics", "true or false")
		}
		q.Include = b
	}
	if !q.Include {
		return q, nil
	}
	num := func(name string) (int64, error) {
		s := vals.Get(name)
		if s == "" {
			return 0, request.Invalid(name, "%s is required when includeMetrics is true", name)
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 || v > request.MaxUnixTime {
			return 0, request.MustBe(name, "a time in whole seconds since the epoch")
		}
		return v, nil
	}
	var err error
	if q.start, err = num("start"); err != nil {
		return q, err
	}
	if q.end, err = num("end"); err != nil {
		return q, err
	}
	if q.end <= q.start {
		return q, request.Invalid("end", "end must be greater than start")
	}
	if !withIncrement {
		return q, nil
	}
	s := vals.Get("increment")
	if s == "" {
		return q, request.Invalid("increment", "increment is required when includeMetrics is true")
	}
	if q.increment, err = strconv.ParseInt(s, 10, 64); err != nil || q.increment <= 0 {
		return q, request.MustBe("increment", "a positive number of seconds")
	}
	if n := (q.end - q.start + q.increment - 1) / q.increment; n > maxDataPoints {
		return q, request.Invalid("increment", "increment is too small: (end - start) / increment must be at most %d data points, not %d", maxDataPoints, n)
	}
	return q, nil
}

// Usage is what the events of one key over a range add up to.
type Usage struct {
	Total       Metrics
	Points      []DataPoint // non-empty increments only, oldest first
	Median, P99 int64       // latencies
	Mean        int64       // mean latency
}

// acc adds up events.
type acc struct {
	m      Metrics
	lat    []int64
	latSum int64
}

func (a *acc) add(ev *ledger.Event) {
	a.m.NumberOfRequests++
	if ev.Success() {
		a.m.SuccessCount++
	}
	a.m.CostInUsd += ev.Cost
	a.m.PromptTokenCount += ev.Usage.PromptTokens
	a.m.CompletionTokenCount += ev.Usage.CompletionTokens
	a.lat = append(a.lat, ev.LatencyMs)
	a.latSum += ev.LatencyMs
}

// result returns the sums with the median latency; it sorts a.lat.
func (a *acc) result() Metrics {
	slices.Sort(a.lat)
	m := a.m
	m.LatencyInMs = percentile(a.lat, 50)
	return m
}

// percentile returns the nearest-rank p-th percentile of sorted (0 when
// empty): the smallest value with at least p% of the values at or below it.
// The median of an even count is thus the lower middle value, always one
// that was observed.
func percentile(sorted []int64, p int) int64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := (p*n + 99) / 100 // ceil(p/100 * n)
	return sorted[min(max(rank, 1), n)-1]
}

// Usage reads the events of keyID in [q.start, q.end) and adds them up,
// per increment when q.increment > 0.
func (h *Handler) Usage(ctx context.Context, keyID string, q MetricsQuery) (Usage, error) {
	startMs, endMs := q.start*1000, q.end*1000
	var total acc
	buckets := map[int64]*acc{}
	err := h.cfg.Events.Events(ctx, keyID, time.Unix(q.start, 0), time.Unix(q.end, 0), func(ev *ledger.Event) error {
		if ev.CreatedAt < startMs || ev.CreatedAt >= endMs {
			return nil
		}
		total.add(ev)
		if q.increment > 0 {
			i := (ev.CreatedAt - startMs) / (q.increment * 1000)
			b := buckets[i]
			if b == nil {
				b = &acc{}
				buckets[i] = b
			}
			b.add(ev)
		}
		return nil
	})
	if err != nil {
		return Usage{}, response.StoreError(err, "events of secret key "+keyID)
	}
	u := Usage{Points: []DataPoint{}}
	idx := make([]int64, 0, len(buckets))
	for i := range buckets {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		u.Points = append(u.Points, DataPoint{TimeStamp: q.start + i*q.increment, Metrics: buckets[i].result()})
	}
	u.Total = total.result()
	u.Median, u.P99 = u.Total.LatencyInMs, percentile(total.lat, 99)
	u.Mean = MeanLatency(total.latSum, total.m.NumberOfRequests)
	return u, nil
}

// wholeDays reports whether q's range starts and ends at 00:00 UTC. The
// listing then reads the keys' daily aggregates (one item per key, day and
// model) rather than their events: the same requests are counted either
// way, since an aggregate's day is that of its events' CreatedAt, the time
// the events query ranges over. One difference, in the aggregates' favour:
// they outlive the events, which expire after the retention. The latency is
// the mean either way (see addMetrics): the aggregates keep no medians.
func (q MetricsQuery) wholeDays() bool {
	return q.start%SecondsPerDay == 0 && q.end%SecondsPerDay == 0
}

// KeyMetrics returns the usage of each of ids over q's range (q.Include
// set), for the key listing: from the daily aggregates when the range is
// whole UTC days (wholeDays), else from the events. Its latencyInMs is the
// mean latency either way.
func (h *Handler) KeyMetrics(ctx context.Context, ids []string, q MetricsQuery) ([]Metrics, error) {
	out := make([]Metrics, len(ids))
	add := h.addMetrics
	if q.wholeDays() {
		add = h.addDailyMetrics
	}
	if err := add(ctx, ids, out, q); err != nil {
		return nil, err
	}
	return out, nil
}

// addDailyMetrics sets out[i] to the usage of ids[i] from the daily
// aggregates of the whole days in [q.start, q.end).
func (h *Handler) addDailyMetrics(ctx context.Context, ids []string, out []Metrics, q MetricsQuery) error {
	rows, err := h.cfg.Aggregates.DailyAggregates(ctx, ids, time.Unix(q.start, 0), time.Unix(q.end, 0))
	if err != nil {
		return response.StoreError(err, "daily usage")
	}
	type sums struct {
		m       Metrics
		latency int64
	}
	per := make(map[string]*sums, len(ids))
	for _, id := range ids {
		per[id] = &sums{}
	}
	for _, row := range rows {
		if s := per[row.KeyID]; s != nil {
			addTotals(&s.m, row.Totals)
			s.latency += row.LatencyMs
		}
	}
	for i, id := range ids {
		s := per[id]
		s.m.LatencyInMs = MeanLatency(s.latency, s.m.NumberOfRequests)
		out[i] = s.m
	}
	return nil
}

// addMetrics sets out[i] to the usage of ids[i], reading the keys'
// events a few at a time; the first failure cancels the rest. The listing's
// latencyInMs is the mean latency, as from the daily aggregates
// (addDailyMetrics), so that it means the same whatever the range.
func (h *Handler) addMetrics(ctx context.Context, ids []string, out []Metrics, q MetricsQuery) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		sem   = make(chan struct{}, ListConcurrency)
	)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				return
			}
			u, err := h.Usage(ctx, id, q)
			if err != nil {
				once.Do(func() { first = err; cancel() })
				return
			}
			m := u.Total
			m.LatencyInMs = u.Mean
			out[i] = m
		}()
	}
	wg.Wait()
	return first
}
