package dynamo

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/testclock"
)

// foldRequest reserves and settles one request of keyID created at at,
// with a custom id and a cost that vary with n.
func foldRequest(ctx context.Context, s *Store, keyID string, n int, at time.Time) (*ledger.Event, error) {
	models := []string{"gpt-4o-mini", "gpt-4o"}
	cids := []string{"", "lab-1", "lab-2"}
	ev := &ledger.Event{ID: fmt.Sprintf("%s-%04d", keyID, n), KeyID: keyID, Model: models[n%2], Status: 200,
		Cost: money.Nanos(1000 + n), Usage: ledger.Usage{PromptTokens: int64(n), CompletionTokens: 3}, LatencyMs: int64(n % 7),
		CustomID: cids[n%3], CreatedAt: at.UnixMilli()}
	if n%5 == 0 {
		ev.Status, ev.ErrorCode = 500, "upstream_error"
	}
	req := budget.Request{KeyID: keyID, Key: budget.Limits{Lifetime: money.Dollar * 100}, Cost: money.Cent, Tokens: 1000, Model: ev.Model, Now: at}
	r := &budget.Reservation{ID: ev.ID, KeyID: keyID, Charges: budget.Plan(req), Cost: req.Cost, Deadline: at.Add(time.Hour), Event: *ev}
	if err := s.Reserve(ctx, r); err != nil {
		return nil, err
	}
	return ev, s.Settle(ctx, r, ev)
}

// reportOf is every figure the readers give for keyID over [start, end).
type reportOf struct {
	Days  []ledger.DailyAggregate
	CIDs  []ledger.CustomIDTotals
	Month ledger.Totals
}

func readReport(t *testing.T, s *Store, keyID string, start, end time.Time, month budget.Counter) reportOf {
	t.Helper()
	ctx := context.Background()
	var rep reportOf
	var err error
	if rep.Days, err = s.DailyAggregates(ctx, []string{keyID}, start, end); err != nil {
		t.Fatal(err)
	}
	if rep.CIDs, err = s.CustomIDTotals(ctx, keyID); err != nil {
		t.Fatal(err)
	}
	if rep.Month, err = s.keyWindowTotals(ctx, keyID, month); err != nil {
		t.Fatal(err)
	}
	rep.Month.Committed = 0
	return rep
}

// wantReport sums evs as every reader should.
func wantReport(keyID string, evs []*ledger.Event, month string) reportOf {
	days, cids := sumEvents(evs)
	var rep reportOf
	for dm, tot := range days {
		rep.Days = append(rep.Days, ledger.DailyAggregate{KeyID: keyID, Day: dm.day, Model: dm.model, Totals: tot})
	}
	for _, c := range cids[keyID] {
		rep.CIDs = append(rep.CIDs, c)
	}
	for _, ev := range evs {
		if time.UnixMilli(ev.CreatedAt).UTC().Format("200601") == month {
			addEvent(&rep.Month, ev)
		}
	}
	return rep
}

func sameReport(got, want reportOf) bool {
	norm := func(r reportOf) reportOf {
		days := map[string]ledger.DailyAggregate{}
		for _, d := range r.Days {
			days[fmt.Sprint(d.Day, d.Model)] = d
		}
		cids := map[string]ledger.CustomIDTotals{}
		for _, c := range r.CIDs {
			cids[c.CustomID] = c
		}
		return reportOf{Days: nil, CIDs: nil, Month: r.Month}.with(days, cids)
	}
	return reflect.DeepEqual(norm(got), norm(want))
}

// with is r with its rows in a canonical order (maps compare by content).
func (r reportOf) with(days map[string]ledger.DailyAggregate, cids map[string]ledger.CustomIDTotals) reportOf {
	for _, k := range sortedKeys(days) {
		r.Days = append(r.Days, days[k])
	}
	for _, k := range sortedKeys(cids) {
		r.CIDs = append(r.CIDs, cids[k])
	}
	return r
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestFoldedAndUnfolded: reports over events of which some are folded and
// some not, at every stage of the fold (none, part, all, a repeated fold,
// in steps smaller than the events' aggregates), equal the sums of the
// events; the watermark only moves forward; a reserve created before the
// fence is refused; a released reservation's late event is never counted.
func TestFoldedAndUnfolded(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "fold")
	const keyID = "kf"
	base := testclock.Now(t).Truncate(24*time.Hour).AddDate(0, 0, -3).Add(22 * time.Hour) // spans a day's end
	month := budget.Counter{Kind: budget.Spend, Unit: budget.Month, Window: base.Format("200601")}
	var evs []*ledger.Event
	for n := range 120 {
		ev, err := foldRequest(ctx, s, keyID, n, base.Add(time.Duration(n)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	start, end := base.Add(-48*time.Hour), base.Add(72*time.Hour)
	check := func(stage string) {
		t.Helper()
		if got, want := readReport(t, s, keyID, start, end, month), wantReport(keyID, evs, month.Window); !sameReport(got, want) {
			t.Fatalf("%s: report\n %+v\nwant\n %+v", stage, got, want)
		}
	}
	watermark := func() int64 {
		st, err := s.readFold(ctx, keyID)
		if err != nil {
			t.Fatal(err)
		}
		return st.w
	}
	check("nothing folded")
	var furthest time.Duration
	for _, at := range []time.Duration{30, 61, 61, 45, 200} { // minutes after base; 45 is behind: no change
		if _, err := s.FoldKey(ctx, keyID, base.Add(at*time.Minute+foldMargin)); err != nil {
			t.Fatal(err)
		}
		furthest = max(furthest, at)
		// Never past the newest event (at +119m): a quiet key's fence stays behind its traffic.
		if w, want := watermark(), min(base.Add(furthest*time.Minute).UnixMilli(), evs[len(evs)-1].CreatedAt+1); w != want {
			t.Fatalf("after a fold at +%dm the watermark is %d, want %d", at, w, want)
		}
		check(fmt.Sprintf("folded to +%dm", at))
	}
	// A reserve created before the fence is refused.
	if _, err := foldRequest(ctx, s, keyID, 999, base.Add(100*time.Minute)); !errors.Is(err, errFenced) {
		t.Fatalf("reserve behind the fence: %v, want errFenced", err)
	}
	// More traffic after the fold, a released reservation settled late
	// (its event taken back), then a fold in small steps.
	late := base.Add(4 * time.Hour)
	for n := 120; n < 160; n++ {
		ev, err := foldRequest(ctx, s, keyID, n, late.Add(time.Duration(n)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	req := budget.Request{KeyID: keyID, Cost: money.Cent, Now: late}
	rel := &budget.Reservation{ID: "released", KeyID: keyID, Charges: budget.Plan(req), Cost: money.Cent, Deadline: late.Add(time.Hour),
		Event: ledger.Event{ID: "released", KeyID: keyID, Model: "gpt-4o", Status: 200, Cost: money.Cent, CustomID: "lab-1", CreatedAt: late.Add(time.Second).UnixMilli()}}
	if err := s.Reserve(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, rel); err != nil {
		t.Fatal(err)
	}
	relEv := rel.Event
	if err := s.Settle(ctx, rel, &relEv); !errors.Is(err, budget.ErrSettled) {
		t.Fatalf("late settle of a released reservation: %v", err)
	}
	check("new traffic unfolded")
	if _, err := s.FoldKey(ctx, keyID, late.Add(3*time.Minute+foldMargin)); err != nil {
		t.Fatal(err)
	}
	check("new traffic half folded")
	complete, err := s.FoldKey(ctx, keyID, late.Add(time.Hour))
	if err != nil || !complete {
		t.Fatalf("fold all: complete %v, %v", complete, err)
	}
	check("all folded")
	if w := watermark(); w != evs[len(evs)-1].CreatedAt+1 {
		t.Fatalf("watermark %d after folding all", w)
	}
}

// TestFoldBatch: a step stops where the aggregates would exceed a
// transaction, and never inside a millisecond.
func TestFoldBatch(t *testing.T) {
	var evs []*ledger.Event
	for i := range 300 {
		evs = append(evs, &ledger.Event{ID: fmt.Sprint(i), Model: fmt.Sprint("m", i), CreatedAt: int64(1000 + i/2)})
	}
	upto, sums := foldBatch(evs, nil, 5000, false)
	if sums.size() > foldItems || sums.size() < foldItems-1 || upto != evs[sums.size()].CreatedAt || sums.size()%2 != 0 {
		t.Fatalf("first step: upto %d with %d aggregates", upto, sums.size())
	}
	upto, sums = foldBatch(evs[:10], map[string]bool{"3": true}, 5000, false)
	if upto != 5000 || sums.size() != 9 {
		t.Fatalf("short step: upto %d, %d aggregates", upto, sums.size())
	}
	upto, sums = foldBatch(evs[:10], nil, 5000, true)
	if upto != evs[8].CreatedAt || sums.size() != 8 {
		t.Fatalf("step with more to come: upto %d, %d aggregates (the last millisecond waits)", upto, sums.size())
	}
}

// TestFoldRacesSettles: folds racing each other, settles and late settles
// of released reservations leave reports equal to the sum of the stored
// events, and every report read while they ran counted each settled event
// once (between the settles done before it and those started after it).
func TestFoldRacesSettles(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "foldrace")
	const keyID = "kr"
	base := testclock.Now(t).Add(-time.Hour)
	month := budget.Counter{Kind: budget.Spend, Unit: budget.Month, Window: base.Format("200601")}
	var (
		seq, started, done atomic.Int64
		mu                 sync.Mutex
		evs                []*ledger.Event
		wg                 sync.WaitGroup
		stop               = make(chan struct{})
		errs               = make(chan error, 64)
	)
	at := func(n int64) time.Time { return base.Add(time.Duration(n) * time.Second) }
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := seq.Add(1)
				if n > 150 {
					return
				}
				if n%10 == 0 { // released, then settled late: no event
					r := &budget.Reservation{ID: fmt.Sprint("rel-", n), KeyID: keyID, Cost: money.Cent, Deadline: at(n).Add(time.Hour),
						Charges: budget.Plan(budget.Request{KeyID: keyID, Cost: money.Cent, Now: at(n)}),
						Event:   ledger.Event{ID: fmt.Sprint("rel-", n), KeyID: keyID, Model: "m", Status: 200, Cost: money.Cent, CreatedAt: at(n).UnixMilli()}}
					if err := s.Reserve(ctx, r); errors.Is(err, errFenced) {
						continue
					} else if err != nil {
						errs <- err
						return
					}
					ev := r.Event
					// Its event is stored for a moment before it is taken back.
					started.Add(1)
					if err := s.Release(ctx, r); err != nil {
						errs <- err
						return
					}
					if err := s.Settle(ctx, r, &ev); !errors.Is(err, budget.ErrSettled) {
						errs <- fmt.Errorf("late settle: %v", err)
						return
					}
					continue
				}
				started.Add(1)
				ev, err := foldRequest(ctx, s, keyID, int(n), at(n))
				switch {
				case errors.Is(err, errFenced):
					continue // refused before anything was stored
				case err != nil:
					errs <- err
					return
				}
				mu.Lock()
				evs = append(evs, ev)
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	var folders sync.WaitGroup
	for range 2 {
		folders.Add(1)
		go func() {
			defer folders.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// The fold's clock trails the requests' by a margin and a few seconds.
				if _, err := s.FoldKey(ctx, keyID, at(seq.Load()-5).Add(foldMargin)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	folders.Add(1)
	go func() {
		defer folders.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			lo := done.Load()
			days, err := s.DailyAggregates(ctx, []string{keyID}, base.Add(-24*time.Hour), base.Add(24*time.Hour))
			hi := started.Load()
			if err != nil {
				errs <- err
				return
			}
			var n int64
			for _, d := range days {
				n += d.Requests
			}
			if n < lo || n > hi {
				errs <- fmt.Errorf("a report counted %d requests, with %d done before it and %d started after", n, lo, hi)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	folders.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(evs) < 100 {
		t.Fatalf("only %d of the requests settled", len(evs))
	}
	check := func(stage string) {
		t.Helper()
		var stored []*ledger.Event
		if err := s.Events(ctx, keyID, base.Add(-time.Hour), base.Add(24*time.Hour), func(ev *ledger.Event) error {
			stored = append(stored, ev)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(stored) != len(evs) {
			t.Fatalf("%s: %d events stored, %d settled", stage, len(stored), len(evs))
		}
		got := readReport(t, s, keyID, base.Add(-24*time.Hour), base.Add(24*time.Hour), month)
		if want := wantReport(keyID, evs, month.Window); !sameReport(got, want) {
			t.Fatalf("%s: report\n %+v\nwant\n %+v", stage, got, want)
		}
	}
	check("after the race")
	if complete, err := s.FoldKey(ctx, keyID, at(1000).Add(foldMargin)); err != nil || !complete {
		t.Fatalf("final fold: complete %v, %v", complete, err)
	}
	check("all folded")
}

// TestSweepKeepsUnfoldedKeys: the sweep takes an idle ledger out of its
// index (the fold's list of keys with traffic) only once the key's events
// are all folded; until then the next run folds it again.
func TestSweepKeepsUnfoldedKeys(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "foldsweep")
	at := testclock.Now(t).Add(-time.Hour)
	ev := &ledger.Event{ID: "e1", KeyID: "ks", Model: "m", Status: 200, Cost: money.Cent, CreatedAt: at.UnixMilli()}
	r := &budget.Reservation{ID: "e1", KeyID: "ks", Charges: budget.Plan(budget.Request{KeyID: "ks", Cost: money.Cent, Now: at}),
		Cost: money.Cent, Deadline: at.Add(10 * time.Second), Event: *ev}
	if err := s.Reserve(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, r, ev); err != nil {
		t.Fatal(err)
	}
	indexed := func() int {
		t.Helper()
		n, err := s.Fold(ctx, at.Add(30*time.Second)) // a fold too early to fold anything
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i, step := range []struct {
		now     time.Duration
		indexed int
	}{
		{30 * time.Second, 1}, // the event is within the fold's margin: not folded, the key stays
		{5 * time.Minute, 0},  // folded, then taken out
	} {
		if stale, err := s.StaleReservations(ctx, at.Add(step.now)); err != nil || len(stale) != 0 {
			t.Fatalf("sweep %d: %d stale, %v", i, len(stale), err)
		}
		if n := indexed(); n != step.indexed {
			t.Fatalf("after sweep %d, %d ledgers indexed, want %d", i, n, step.indexed)
		}
	}
	days, err := s.DailyAggregates(ctx, []string{"ks"}, at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil || len(days) != 1 || days[0].Requests != 1 || days[0].Cost != money.Cent {
		t.Fatalf("aggregates %+v, %v", days, err)
	}
	if st, err := s.readFold(ctx, "ks"); err != nil || st.w <= ev.CreatedAt {
		t.Fatalf("watermark %+v, %v: the event is not folded", st, err)
	}
}

// TestFoldLeavesEarlierEvents: events stored with their aggregates (by
// earlier versions, the legacy sweep, or imported) are not marked for the
// fold: reports count them once, through the aggregates, before and after
// a fold, beside the marked events of new settles.
func TestFoldLeavesEarlierEvents(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "foldold")
	const keyID = "ko"
	base := testclock.Now(t).Truncate(24*time.Hour).AddDate(0, 0, -2).Add(time.Hour)
	month := budget.Counter{Kind: budget.Spend, Unit: budget.Month, Window: base.Format("200601")}
	var evs []*ledger.Event
	// An earlier version's: the event and its aggregates, one at a time.
	for n := range 5 {
		ev := &ledger.Event{ID: fmt.Sprint("old-", n), KeyID: keyID, Model: "gpt-4o", Status: 200, Cost: money.Nanos(500 + n),
			CustomID: "lab-1", CreatedAt: base.Add(time.Duration(n) * time.Minute).UnixMilli()}
		sums := newAggSums()
		sums.add(ev)
		if err := s.ImportEvents(ctx, []*ledger.Event{ev}); err != nil {
			t.Fatal(err)
		}
		if err := s.transact(ctx, s.aggregateUpdates(keyID, sums), "old settle"); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for n := range 10 {
		ev, err := foldRequest(ctx, s, keyID, n, base.Add(time.Duration(3+n)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	for _, stage := range []string{"before the fold", "after the fold"} {
		if got, want := readReport(t, s, keyID, base.Add(-24*time.Hour), base.Add(24*time.Hour), month), wantReport(keyID, evs, month.Window); !sameReport(got, want) {
			t.Fatalf("%s: report\n %+v\nwant\n %+v", stage, got, want)
		}
		if _, err := s.FoldKey(ctx, keyID, base.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFoldOfAQuietKeyWritesNothing: once a key's events are folded, the
// folds that visit it again until the sweep takes it out of the index
// (every run of the schedule) read its ledger but write nothing: a
// conditional write that fails still costs a write unit.
func TestFoldOfAQuietKeyWritesNothing(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	var writes atomic.Int64
	count := func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
		switch op {
		case "UpdateItem", "PutItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem":
			writes.Add(1)
		}
		return next(ctx)
	}
	s := New(ddb.NewAt(localtest.AWSConfig(), endpoint), "foldquiet", 0, WithMiddleware(count))
	if err := s.CreateTable(ctx, WithoutTTL()); err != nil {
		t.Fatal(err)
	}
	at := testclock.Now(t).Add(-time.Hour)
	if _, err := foldRequest(ctx, s, "kq", 1, at); err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		after      time.Duration
		wantWrites bool
	}{
		{5 * time.Minute, true},   // the fence and the fold's transaction
		{10 * time.Minute, false}, // nothing new: a read
		{15 * time.Minute, false},
	} {
		before := writes.Load()
		complete, err := s.FoldKey(ctx, "kq", at.Add(step.after))
		if err != nil || !complete {
			t.Fatalf("fold %d: complete %v, %v", i, complete, err)
		}
		if n := writes.Load() - before; (n > 0) != step.wantWrites {
			t.Fatalf("fold %d made %d writes; want writes: %v", i, n, step.wantWrites)
		}
	}
	days, err := s.DailyAggregates(ctx, []string{"kq"}, at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil || len(days) != 1 || days[0].Requests != 1 {
		t.Fatalf("aggregates %+v, %v", days, err)
	}
}
