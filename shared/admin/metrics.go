package admin

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/apikey"
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

// keyDetail is one key with its time series, for GET /api/v1/secret-keys/{keyId}.
type keyDetail struct {
	keyView
	DataPoints        []DataPoint `json:"dataPoints"`
	LatencyInMsMedian int64       `json:"latencyInMsMedian"`
	LatencyInMs99th   int64       `json:"latencyInMs99th"`
}

// Bounds of the metrics query.
const (
	maxDataPoints = 10000
	maxUnixTime   = 253402300799 // 9999-12-31T23:59:59Z
	// listConcurrency bounds the event queries of one list request.
	listConcurrency = 8
)

// metricsQuery is the includeMetrics, start, end and increment of a GET.
type metricsQuery struct {
	include               bool
	start, end, increment int64 // unix seconds; increment only for one key
}

// parseMetricsQuery reads the query; withIncrement makes increment required
// along with start and end.
func parseMetricsQuery(r *http.Request, withIncrement bool) (metricsQuery, error) {
	var q metricsQuery
	vals := r.URL.Query()
	if s := vals.Get("includeMetrics"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, mustBe("includeMetrics", "true or false")
		}
		q.include = b
	}
	if !q.include {
		return q, nil
	}
	num := func(name string) (int64, error) {
		s := vals.Get(name)
		if s == "" {
			return 0, invalid(name, "%s is required when includeMetrics is true", name)
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 || v > maxUnixTime {
			return 0, mustBe(name, "a time in whole seconds since the epoch")
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
		return q, invalid("end", "end must be greater than start")
	}
	if !withIncrement {
		return q, nil
	}
	s := vals.Get("increment")
	if s == "" {
		return q, invalid("increment", "increment is required when includeMetrics is true")
	}
	if q.increment, err = strconv.ParseInt(s, 10, 64); err != nil || q.increment <= 0 {
		return q, mustBe("increment", "a positive number of seconds")
	}
	if n := (q.end - q.start + q.increment - 1) / q.increment; n > maxDataPoints {
		return q, invalid("increment", "increment is too small: (end - start) / increment must be at most %d data points, not %d", maxDataPoints, n)
	}
	return q, nil
}

// usage is what the events of one key over a range add up to.
type usage struct {
	total       Metrics
	points      []DataPoint // non-empty increments only, oldest first
	median, p99 int64
	mean        int64 // mean latency
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

// usageOf reads the events of keyID in [q.start, q.end) and adds them up,
// per increment when q.increment > 0.
func (h *Handler) usageOf(ctx context.Context, keyID string, q metricsQuery) (usage, error) {
	startMs, endMs := q.start*1000, q.end*1000
	var total acc
	buckets := map[int64]*acc{}
	err := h.cfg.Store.Events(ctx, keyID, time.Unix(q.start, 0), time.Unix(q.end, 0), func(ev *ledger.Event) error {
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
		return usage{}, storeError(err, "events of secret key "+keyID)
	}
	u := usage{points: []DataPoint{}}
	idx := make([]int64, 0, len(buckets))
	for i := range buckets {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		u.points = append(u.points, DataPoint{TimeStamp: q.start + i*q.increment, Metrics: buckets[i].result()})
	}
	u.total = total.result()
	u.median, u.p99 = u.total.LatencyInMs, percentile(total.lat, 99)
	u.mean = meanLatency(total.latSum, total.m.NumberOfRequests)
	return u, nil
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) error {
	q, err := parseMetricsQuery(r, false)
	if err != nil {
		return err
	}
	list, err := h.cfg.Store.ListKeys(r.Context())
	if err != nil {
		return storeError(err, "secret keys")
	}
	if list, err = withoutArchived(r, list); err != nil {
		return err
	}
	views := make([]keyView, len(list))
	for i, k := range list {
		views[i] = viewOf(k)
	}
	if q.include {
		add := h.addMetrics
		if q.wholeDays() {
			add = h.addDailyMetrics
		}
		if err := add(r.Context(), list, views, q); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, views)
}

// wholeDays reports whether q's range starts and ends at 00:00 UTC. The
// listing then reads the keys' daily aggregates (one item per key, day and
// model) rather than their events: the same requests are counted either
// way, since an aggregate's day is that of its events' CreatedAt, the time
// the events query ranges over. One difference, in the aggregates' favour:
// they outlive the events, which expire after the retention. The latency is
// the mean either way (see addMetrics): the aggregates keep no medians.
func (q metricsQuery) wholeDays() bool {
	return q.start%secondsPerDay == 0 && q.end%secondsPerDay == 0
}

// addDailyMetrics sets views[i].Metrics to the usage of list[i] from the
// daily aggregates of the whole days in [q.start, q.end).
func (h *Handler) addDailyMetrics(ctx context.Context, list []*apikey.Key, views []keyView, q metricsQuery) error {
	ids := make([]string, len(list))
	for i, k := range list {
		ids[i] = k.ID
	}
	rows, err := h.cfg.Store.DailyAggregates(ctx, ids, time.Unix(q.start, 0), time.Unix(q.end, 0))
	if err != nil {
		return storeError(err, "daily usage")
	}
	type sums struct {
		m       Metrics
		latency int64
	}
	per := make(map[string]*sums, len(list))
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
		s.m.LatencyInMs = meanLatency(s.latency, s.m.NumberOfRequests)
		views[i].Metrics = &s.m
	}
	return nil
}

// addMetrics sets views[i].Metrics to the usage of list[i], reading the keys'
// events a few at a time; the first failure cancels the rest. The listing's
// latencyInMs is the mean latency, as from the daily aggregates
// (addDailyMetrics), so that it means the same whatever the range.
func (h *Handler) addMetrics(ctx context.Context, list []*apikey.Key, views []keyView, q metricsQuery) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		sem   = make(chan struct{}, listConcurrency)
	)
	for i, k := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				return
			}
			u, err := h.usageOf(ctx, k.ID, q)
			if err != nil {
				once.Do(func() { first = err; cancel() })
				return
			}
			m := u.total
			m.LatencyInMs = u.mean
			views[i].Metrics = &m
		}()
	}
	wg.Wait()
	return first
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("keyId")
	q, err := parseMetricsQuery(r, true)
	if err != nil {
		return err
	}
	k, err := h.cfg.Store.GetKey(r.Context(), id)
	if err != nil {
		return storeError(err, "secret key "+id)
	}
	// The seed answers "Fetch one" with an array of one key; clients written
	// for BricksAI read element [0], so stipend does the same.
	v := viewOf(k)
	if err := h.withStrikes(r.Context(), &v); err != nil {
		return err
	}
	if !q.include {
		return writeJSON(w, http.StatusOK, []keyView{v})
	}
	u, err := h.usageOf(r.Context(), k.ID, q)
	if err != nil {
		return err
	}
	d := keyDetail{keyView: v, DataPoints: u.points, LatencyInMsMedian: u.median, LatencyInMs99th: u.p99}
	d.Metrics = &u.total
	return writeJSON(w, http.StatusOK, []keyDetail{d})
}
