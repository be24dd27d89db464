package proxy

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
)

// fullWindows remembers, in this process, the keys whose request-rate
// window is full: a key's request counter only grows within its window (a
// request that was released stays counted), so while the key's
// configuration is the version the store refused, every later request of
// that key before the window ends would be refused too. The same holds from
// the moment a reserve of that version brought the counter to the limit (the
// store returns the counters it wrote, budget.Reservation.Reached): the
// window is noted full then, not only at the first refusal, so a burst's
// waiters need not wait for a refused write. Such a request is
// refused here, before its prompt is tokenized and without a write that
// would queue behind the others on the key's one ledger item — a burst on
// one key gets its 429s at once. Nothing is admitted that the store would
// refuse and nothing refused that it would admit, except that a raised
// limit applies from the key's next read (KeyTTL) in place of the next
// request. Only the key's own request counter (not a model's, whose limit
// may match by family, nor a user's, whose version the key does not carry)
// is remembered.
//
// The gates keep a burst on one key in one process from queueing all its
// reserves on the key's ledger at once: at most gateWidth requests of a key
// (of keys sharing a stripe) read their provider and reserve at a time; the
// others wait, and are refused the moment one of those filled the window or
// was refused on it. In Lambda an execution environment serves one request at a time
// and the gate never waits.
type fullWindows struct {
	mu    sync.Mutex
	full  map[string]fullWindow // by key id
	noted chan struct{}         // closed (and replaced) by each note: wakes the waiters

	gatesOnce sync.Once
	seed      maphash.Seed
	gates     []chan struct{}
}

const (
	gateStripes = 64
	gateWidth   = 8
	// gateWait bounds the wait at a gate: past it (a store that stalls
	// the requests ahead) a request goes on without a place.
	gateWait = time.Second
)

// enter waits for a place at k's gate and returns its release, or the
// charge k's request is refused on when k's window is (or, while it waits,
// becomes) full: then it holds no place.
func (f *fullWindows) enter(ctx context.Context, k *apikey.Key, now func() time.Time) (release func(), refused budget.Charge, full bool, err error) {
	f.gatesOnce.Do(func() {
		f.seed = maphash.MakeSeed()
		f.gates = make([]chan struct{}, gateStripes)
		for i := range f.gates {
			f.gates[i] = make(chan struct{}, gateWidth)
		}
	})
	g := f.gates[maphash.String(f.seed, k.ID)%gateStripes]
	wait := time.NewTimer(gateWait)
	defer wait.Stop()
	for {
		if c, ok := f.refused(k, now()); ok {
			return nil, c, true, nil
		}
		select {
		case g <- struct{}{}:
			// A refusal noted while this request waited: no need to enter.
			if c, ok := f.refused(k, now()); ok {
				<-g
				return nil, c, true, nil
			}
			return func() { <-g }, budget.Charge{}, false, nil
		case <-f.notes():
			// Some window was noted full: look again.
		case <-wait.C:
			return func() {}, budget.Charge{}, false, nil // a stalled store: go on without a place
		case <-ctx.Done():
			return nil, budget.Charge{}, false, ctx.Err()
		}
	}
}

// notes is closed at the next note.
func (f *fullWindows) notes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noted == nil {
		f.noted = make(chan struct{})
	}
	return f.noted
}

type fullWindow struct {
	version int64
	charge  budget.Charge
}

// maxFullWindows bounds the map: ended windows are dropped past it.
const maxFullWindows = 4096

// refused returns the charge k's request would be refused on at now.
func (f *fullWindows) refused(k *apikey.Key, now time.Time) (budget.Charge, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.full[k.ID]
	if !ok || w.version != k.Version || !now.Before(w.charge.Resets) {
		return budget.Charge{}, false
	}
	return w.charge, true
}

// note remembers a refusal of k's request on c, when c is k's own request
// window.
func (f *fullWindows) note(k *apikey.Key, c budget.Charge, now time.Time) {
	if c.Owner != budget.KeyOwner(k.ID) || c.Kind != budget.Requests || c.Model != "" || c.Resets.IsZero() || c.Limit <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full == nil {
		f.full = map[string]fullWindow{}
	}
	if len(f.full) >= maxFullWindows {
		for id, w := range f.full {
			if !now.Before(w.charge.Resets) {
				delete(f.full, id)
			}
		}
		if len(f.full) >= maxFullWindows {
			clear(f.full)
		}
	}
	f.full[k.ID] = fullWindow{version: k.Version, charge: c}
	if f.noted != nil {
		close(f.noted)
		f.noted = nil
	}
}
