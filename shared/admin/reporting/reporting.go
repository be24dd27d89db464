// Package reporting is the admin API's usage reports: the time series of
// POST /api/v1/reporting/events, the daily sums of
// /api/v1/reporting/events-by-day, custom ids, the events list (GET
// /api/v1/events and BricksLLM's GET /api/events), monthly statements, and
// the metrics of the key listing. Package admin wires the routes; this
// package reads through the small store interfaces below and answers.
//
// Usage reporting: the seed's "Proxy Secret Keys Usage" (POST
// /api/v1/reporting/events), "by Day" (POST /api/v1/reporting/events-by-day)
// and "Custom IDs" (GET /api/v1/custom-ids?keyId=).
//
// events-by-day and custom-ids read only the aggregates the proxy's settle
// transaction keeps beside each key (one item per key, UTC day and model;
// one per key and custom id), so they cost a few items whatever the
// traffic. The time series with an arbitrary increment reads the events —
// medians need them — page by page, a few keys at a time; it keeps one
// latency per event (8 bytes) and nothing else per event.
//
// Every report must fit one Lambda invocation: a report is gzipped when the
// client accepts it, and one that would still exceed what a buffered
// function URL can return (6 MB) is refused with a 400 that says how to
// narrow it, as is a time series that cannot be read before the
// invocation's deadline.
package reporting

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/user"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/storeerr"
)

// Aggregates are the sums the proxy's settle keeps beside each key;
// *dynamo.Store implements it.
type Aggregates interface {
	// DailyAggregates returns the sums of keyIDs' events per key, UTC day
	// and model, for every day that overlaps [start, end); days without
	// events have no rows.
	DailyAggregates(ctx context.Context, keyIDs []string, start, end time.Time) ([]ledger.DailyAggregate, error)
	// CustomIDs returns the custom ids keyID's events carried (empty when
	// none did).
	CustomIDs(ctx context.Context, keyID string) ([]string, error)
}

// Bounds of the reporting endpoints.
const (
	SecondsPerDay = 24 * 60 * 60
	// maxReportKeys bounds keyIds in one report.
	maxReportKeys = 1000
	// maxReportBytes is what a report may weigh as the Lambda response
	// carries it: a buffered function URL returns at most 6 MB, and some
	// room is left for the status and headers.
	maxReportBytes = 6_000_000
	// gzipMinBytes: smaller reports are not worth compressing.
	gzipMinBytes = 1 << 10
	// DeadlineReserve is the time a report keeps, before the invocation's
	// deadline, to encode and send its answer.
	DeadlineReserve = 2 * time.Second
)

// Owners reads the keys and users reports are about: a report's keyIds and
// a statement's owner must exist.
type Owners interface {
	ListKeys(ctx context.Context) ([]*apikey.Key, error)
	GetKey(ctx context.Context, id string) (*apikey.Key, error)
	GetUser(ctx context.Context, userID string) (*user.User, error)
}

// Config wires a Handler; every store is required.
type Config struct {
	Owners     Owners
	Events     Events
	Aggregates Aggregates
	Statements Statements
	Now        func() time.Time
}

// Handler answers the reporting routes; each method answers one route and
// returns its error for package admin's one error writer. It is safe for
// concurrent use.
type Handler struct {
	cfg Config
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler { return &Handler{cfg: cfg} }

// reportBody is the request body of both reporting POSTs.
type reportBody struct {
	Start     *request.WholeNumber `json:"start" rule:"a time in whole seconds since the epoch"`
	End       *request.WholeNumber `json:"end" rule:"a time in whole seconds since the epoch"`
	Increment *request.WholeNumber `json:"increment" rule:"a positive whole number of seconds"`
	KeyIDs    *[]string            `json:"keyIds" rule:"a non-empty list of secret key ids"`
	CustomIDs *[]string            `json:"customIds" rule:"a list of custom ids"`
	GroupBy   *[]string            `json:"groupBy" rule:"a list of keyId, customId and model"`
}

// reportQuery is a validated reportBody.
type reportQuery struct {
	start, end, increment int64    // unix seconds
	keyIDs                []string // distinct, in the order given
	customIDs             map[string]bool
	byKey, byCustomID     bool
	byModel               bool
}

// parseReport validates the body; withIncrement is the time series, which
// also takes increment, customIds and groupBy.
func (h *Handler) parseReport(w http.ResponseWriter, r *http.Request, withIncrement bool) (reportQuery, error) {
	var b reportBody
	var q reportQuery
	if err := request.Decode(w, r, &b); err != nil {
		return q, err
	}
	timeField := func(name string, v *request.WholeNumber) (int64, error) {
		if v == nil {
			return 0, request.Invalid(name, "%s is required", name)
		}
		if *v < 0 || *v > request.MaxUnixTime {
			return 0, request.MustBe(name, "a time in whole seconds since the epoch")
		}
		return int64(*v), nil
	}
	var err error
	if q.start, err = timeField("start", b.Start); err != nil {
		return q, err
	}
	if q.end, err = timeField("end", b.End); err != nil {
		return q, err
	}
	if q.end <= q.start {
		return q, request.Invalid("end", "end must be greater than start")
	}
	if withIncrement {
		if b.Increment == nil {
			return q, request.Invalid("increment", "increment is required")
		}
		if q.increment = int64(*b.Increment); q.increment <= 0 {
			return q, request.MustBe("increment", "a positive whole number of seconds")
		}
		if n := (q.end - q.start + q.increment - 1) / q.increment; n > maxDataPoints {
			return q, request.Invalid("increment", "increment is too small: (end - start) / increment must be at most %d data points, not %d", maxDataPoints, n)
		}
	}
	if b.KeyIDs == nil || len(*b.KeyIDs) == 0 {
		return q, request.Invalid("keyIds", "keyIds is required and must be a non-empty list of secret key ids")
	}
	for _, id := range *b.KeyIDs {
		if id == "" {
			return q, request.MustBe("keyIds", "a list of secret key ids, none empty")
		}
		if !slices.Contains(q.keyIDs, id) {
			q.keyIDs = append(q.keyIDs, id)
		}
	}
	if len(q.keyIDs) > maxReportKeys {
		return q, request.Invalid("keyIds", "keyIds must hold at most %d secret key ids, not %d", maxReportKeys, len(q.keyIDs))
	}
	if !withIncrement {
		return q, nil
	}
	if b.CustomIDs != nil && len(*b.CustomIDs) > 0 {
		q.customIDs = map[string]bool{}
		for _, id := range *b.CustomIDs {
			q.customIDs[id] = true
		}
	}
	if b.GroupBy != nil {
		for _, f := range *b.GroupBy {
			switch f {
			case "keyId":
				q.byKey = true
			case "customId":
				q.byCustomID = true
			case "model":
				q.byModel = true
			default:
				return q, request.Invalid("groupBy", `groupBy must hold only "keyId", "customId" or "model", not %q`, f)
			}
		}
	}
	return q, nil
}

// checkKeys fails with a 400 naming keyIds unless every id is a stored
// key. One listing answers most; an id it misses (the listing's index is
// eventually consistent) is read by id before it counts as unknown.
func (h *Handler) checkKeys(ctx context.Context, ids []string) error {
	list, err := h.cfg.Owners.ListKeys(ctx)
	if err != nil {
		return response.StoreError(err, "secret keys")
	}
	known := make(map[string]bool, len(list))
	for _, k := range list {
		known[k.ID] = true
	}
	for _, id := range ids {
		if known[id] {
			continue
		}
		_, err := h.cfg.Owners.GetKey(ctx, id)
		if storeerr.IsNotFound(err) {
			return request.Invalid("keyIds", "keyIds: there is no secret key %q", id)
		}
		if err != nil {
			return response.StoreError(err, "secret key "+id)
		}
	}
	return nil
}

// Point is one data point of /reporting/events: the usage of one
// increment starting at TimeStamp, for one group. A field not grouped by
// is "".
type Point struct {
	TimeStamp int64 `json:"timeStamp"`
	Metrics
	Model    string `json:"model"`
	KeyID    string `json:"keyId"`
	CustomID string `json:"customId"`
}

// Report is the answer of /reporting/events.
type Report struct {
	DataPoints        []Point `json:"dataPoints"`
	LatencyInMsMedian int64   `json:"latencyInMsMedian"`
	LatencyInMs99th   int64   `json:"latencyInMs99th"`
}

// group is one data point's identity: its increment and grouped fields.
type group struct {
	bucket                 int64
	keyID, customID, model string
}

// ReportEvents answers POST /api/v1/reporting/events from the events: per
// increment (only those with events) and per group, the sums and the
// median latency; over everything, the median and 99th percentile latency.
func (h *Handler) ReportEvents(w http.ResponseWriter, r *http.Request) error {
	q, err := h.parseReport(w, r, true)
	if err != nil {
		return err
	}
	if err := h.checkKeys(r.Context(), q.keyIDs); err != nil {
		return err
	}
	groups, err := h.readGroups(r.Context(), q)
	if err != nil {
		return err
	}
	resp := Report{DataPoints: make([]Point, 0, len(groups))}
	var all []int64
	for g, a := range groups {
		all = append(all, a.lat...)
		resp.DataPoints = append(resp.DataPoints, Point{
			TimeStamp: q.start + g.bucket*q.increment, Metrics: a.result(),
			Model: g.model, KeyID: g.keyID, CustomID: g.customID,
		})
	}
	slices.SortFunc(resp.DataPoints, func(a, b Point) int {
		return cmp.Or(cmp.Compare(a.TimeStamp, b.TimeStamp), strings.Compare(a.KeyID, b.KeyID),
			strings.Compare(a.CustomID, b.CustomID), strings.Compare(a.Model, b.Model))
	})
	slices.Sort(all)
	resp.LatencyInMsMedian, resp.LatencyInMs99th = percentile(all, 50), percentile(all, 99)
	return writeReport(w, r, resp)
}

// readGroups reads the events of q's keys, a few keys at a time, and adds
// each one in range (and, with customIds, carrying one of them) to its
// group.
func (h *Handler) readGroups(ctx context.Context, q reportQuery) (map[group]*acc, error) {
	ctx, cancel := withDeadlineReserve(ctx)
	defer cancel()
	var (
		mu     sync.Mutex
		groups = map[group]*acc{}
	)
	startMs, endMs, incMs := q.start*1000, q.end*1000, q.increment*1000
	err := forKeys(ctx, q.keyIDs, func(ctx context.Context, keyID string) error {
		local := map[group]*acc{}
		err := h.cfg.Events.Events(ctx, keyID, time.Unix(q.start, 0), time.Unix(q.end, 0), func(ev *ledger.Event) error {
			if ev.CreatedAt < startMs || ev.CreatedAt >= endMs || (q.customIDs != nil && !q.customIDs[ev.CustomID]) {
				return nil
			}
			g := group{bucket: (ev.CreatedAt - startMs) / incMs}
			if q.byKey {
				g.keyID = keyID
			}
			if q.byCustomID {
				g.customID = ev.CustomID
			}
			if q.byModel {
				g.model = ev.Model
			}
			a := local[g]
			if a == nil {
				a = &acc{}
				local[g] = a
			}
			a.add(ev)
			return nil
		})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for g, a := range local {
			if into := groups[g]; into != nil {
				into.merge(a)
			} else {
				groups[g] = a
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(context.Cause(ctx), errReserveReached) {
			return nil, request.Invalid("end", "the range holds more events than one request can read in time: "+
				"narrow start and end or pass fewer keyIds, or use /api/v1/reporting/events-by-day")
		}
		return nil, response.StoreError(err, "events")
	}
	return groups, nil
}

// errReserveReached is the cause of a report's context ending
// DeadlineReserve before the invocation's deadline.
var errReserveReached = errors.New("report deadline reached")

// withDeadlineReserve returns ctx ending DeadlineReserve before ctx's own
// deadline (a Lambda invocation's), if it has one.
func withDeadlineReserve(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, d.Add(-DeadlineReserve), errReserveReached)
}

// forKeys calls fn for each key id, ListConcurrency at a time; the first
// error cancels the rest and is returned.
func forKeys(ctx context.Context, ids []string, fn func(ctx context.Context, keyID string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		sem   = make(chan struct{}, ListConcurrency)
	)
	for _, id := range ids {
		sem <- struct{}{}
		if ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, id); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}

// DayPoint is one data point of /reporting/events-by-day: one key's usage
// of one model on one UTC day starting at TimeStamp. LatencyInMs is the
// mean latency of its requests: the daily aggregates keep sums, not
// distributions.
type DayPoint struct {
	TimeStamp int64 `json:"timeStamp"`
	Metrics
	Model string `json:"model"`
	KeyID string `json:"keyId"`
}

// DayReport is the answer of /reporting/events-by-day. The seed marks
// latencyInMsMedian and latencyInMs99th "ignore": they are always 0.
type DayReport struct {
	DataPoints        []DayPoint `json:"dataPoints"`
	LatencyInMsMedian int64      `json:"latencyInMsMedian"`
	LatencyInMs99th   int64      `json:"latencyInMs99th"`
}

// EventsByDay answers POST /api/v1/reporting/events-by-day from the
// daily aggregates: one point per key, UTC day and model with usage, for
// every day that overlaps [start, end) — whole days, so the first point
// may start before start. Ordered by day, key and model.
func (h *Handler) EventsByDay(w http.ResponseWriter, r *http.Request) error {
	q, err := h.parseReport(w, r, false)
	if err != nil {
		return err
	}
	if err := h.checkKeys(r.Context(), q.keyIDs); err != nil {
		return err
	}
	rows, err := h.cfg.Aggregates.DailyAggregates(r.Context(), q.keyIDs, time.Unix(q.start, 0), time.Unix(q.end, 0))
	if err != nil {
		return response.StoreError(err, "daily usage")
	}
	resp := DayReport{DataPoints: make([]DayPoint, 0, len(rows))}
	for _, row := range rows {
		resp.DataPoints = append(resp.DataPoints, DayPoint{TimeStamp: row.Day, Metrics: metricsOf(row.Totals), Model: row.Model, KeyID: row.KeyID})
	}
	slices.SortFunc(resp.DataPoints, func(a, b DayPoint) int {
		return cmp.Or(cmp.Compare(a.TimeStamp, b.TimeStamp), strings.Compare(a.KeyID, b.KeyID), strings.Compare(a.Model, b.Model))
	})
	return writeReport(w, r, resp)
}

// metricsOf turns aggregated totals into Metrics, with the mean latency.
func metricsOf(t ledger.Totals) Metrics {
	return Metrics{
		NumberOfRequests: t.Requests, SuccessCount: t.Successes, CostInUsd: t.Cost,
		LatencyInMs: MeanLatency(t.LatencyMs, t.Requests), PromptTokenCount: t.PromptTokens, CompletionTokenCount: t.CompletionTokens,
	}
}

// addTotals adds aggregated totals to m's sums (not its latency).
func addTotals(m *Metrics, t ledger.Totals) {
	m.NumberOfRequests += t.Requests
	m.SuccessCount += t.Successes
	m.CostInUsd += t.Cost
	m.PromptTokenCount += t.PromptTokens
	m.CompletionTokenCount += t.CompletionTokens
}

// MeanLatency is sum / n rounded to the nearest millisecond (0 when n is 0).
func MeanLatency(sum, n int64) int64 {
	if n <= 0 {
		return 0
	}
	return (sum + n/2) / n
}

// customIDsResponse is the answer of GET /api/v1/custom-ids.
type customIDsResponse struct {
	CustomIDs []string `json:"customIds"`
}

// CustomIDs answers GET /api/v1/custom-ids?keyId=: the custom ids the
// key's requests carried, in byte order.
func (h *Handler) CustomIDs(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("keyId")
	if id == "" {
		return request.Invalid("keyId", "keyId is required")
	}
	if _, err := h.cfg.Owners.GetKey(r.Context(), id); err != nil {
		return response.StoreError(err, "secret key "+id)
	}
	ids, err := h.cfg.Aggregates.CustomIDs(r.Context(), id)
	if err != nil {
		return response.StoreError(err, "custom ids of secret key "+id)
	}
	return writeReport(w, r, customIDsResponse{CustomIDs: response.NonEmpty(ids)})
}

// writeReport sends v as JSON with status 200, gzipped when the client
// accepts gzip and it is worth it. A report heavier than maxReportBytes as
// the Lambda response would carry it is refused with a 400 instead.
func writeReport(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	b = append(b, '\n')
	gz := len(b) >= gzipMinBytes && acceptsGzip(r)
	if gz {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // a valid level never fails
		_, _ = zw.Write(b)                                 // writes to a bytes.Buffer never fail
		if err := zw.Close(); err != nil {
			return fmt.Errorf("compress report: %w", err)
		}
		b = buf.Bytes()
	}
	if n := lambdaBodySize(b, gz); n > maxReportBytes {
		hint := ""
		if !gz {
			hint = " (sending Accept-Encoding: gzip makes it about ten times smaller)"
		}
		return request.Invalid("end", "the report would be %d bytes, more than the %d one response may carry%s: "+
			"narrow start and end, pass fewer keyIds, a larger increment or fewer groupBy fields", n, maxReportBytes, hint)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Add("Vary", "Accept-Encoding")
	if gz {
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") &&
				strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

// lambdaBodySize is how many bytes body takes in the function URL's
// response: base64 for a binary (gzipped) body, else a JSON string in which
// quotes and backslashes are escaped, and <, > and & too (\u003c).
func lambdaBodySize(body []byte, binary bool) int {
	if binary {
		return (len(body) + 2) / 3 * 4
	}
	n := len(body)
	for _, c := range body {
		switch c {
		case '"', '\\', '\n':
			n++
		case '<', '>', '&':
			n += 5
		}
	}
	return n
}

// merge adds b's events to a.
func (a *acc) merge(b *acc) {
	a.m.NumberOfRequests += b.m.NumberOfRequests
	a.m.SuccessCount += b.m.SuccessCount
	a.m.CostInUsd += b.m.CostInUsd
	a.m.PromptTokenCount += b.m.PromptTokenCount
	a.m.CompletionTokenCount += b.m.CompletionTokenCount
	a.latSum += b.latSum
	a.lat = append(a.lat, b.lat...)
}
