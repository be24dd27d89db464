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
// was refused on it. Once a reserve returned how many places its window has
// left, no more of the key's requests hold a place at once than that: the
// others wait for those to end, so a burst's last places are not raced by
// reserves the store would refuse, and they are refused when the window
// fills (or enter when a request holding a place failed). Waiting changes
// when, never whether, a request is admitted. In Lambda an execution
// environment serves one request at a time and the gate never waits.
type fullWindows struct {
	mu    sync.Mutex
	full  map[string]fullWindow // by key id
	noted chan struct{}         // closed (and replaced) by each note or leave: wakes the waiters
	// room is the places each key's request window had left after its
	// latest reserve; inside, the key's requests holding a place.
	room   map[string]windowRoom
	inside map[string]int

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
		changed := f.notes()
		var place chan<- struct{} // nil (never ready) while the window has no room for one more
		if f.hasRoom(k, now()) {
			place = g
		}
		select {
		case place <- struct{}{}:
			// A refusal noted while this request waited: no need to enter.
			if c, ok := f.refused(k, now()); ok {
				<-g
				return nil, c, true, nil
			}
			if !f.take(k, now()) {
				<-g // the room went to another: wait for it to end
				continue
			}
			return func() { <-g; f.leave(k) }, budget.Charge{}, false, nil
		case <-changed:
			// Some window was noted full, or a request left: look again.
		case <-wait.C:
			return func() {}, budget.Charge{}, false, nil // a stalled store: go on without a place
		case <-ctx.Done():
			return nil, budget.Charge{}, false, ctx.Err()
		}
	}
}

// windowRoom is the places a key's request window had left after a reserve.
type windowRoom struct {
	version int64
	resets  time.Time
	left    int64
}

// roomLocked reports whether one more of k's requests may hold a place:
// while no reserve told how many places its window has left, always.
func (f *fullWindows) roomLocked(k *apikey.Key, now time.Time) bool {
	r, ok := f.room[k.ID]
	if !ok || r.version != k.Version || !now.Before(r.resets) {
		return true
	}
	return int64(f.inside[k.ID]) < r.left
}

func (f *fullWindows) hasRoom(k *apikey.Key, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.roomLocked(k, now)
}

// take counts one more of k's requests holding a place, if there is room.
func (f *fullWindows) take(k *apikey.Key, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.roomLocked(k, now) {
		return false
	}
	if f.inside == nil {
		f.inside = map[string]int{}
	}
	f.inside[k.ID]++
	return true
}

// leave ends a place of k's taken by take, and wakes the waiters.
func (f *fullWindows) leave(k *apikey.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inside[k.ID]--; f.inside[k.ID] <= 0 {
		delete(f.inside, k.ID)
	}
	f.wakeLocked()
}

// reserved learns from a reserve of k that returned its counters
// (budget.Reservation.Counted) how many places k's own request window has
// left, and notes the window full when none.
func (f *fullWindows) reserved(k *apikey.Key, res *budget.Reservation, now time.Time) {
	if len(res.Counted) != len(res.Charges) {
		return
	}
	for i, c := range res.Charges {
		if !ownRequests(k, c) || res.Counted[i] < 0 {
			continue
		}
		if res.Counted[i] >= c.Limit {
			f.note(k, c, now)
			continue
		}
		f.mu.Lock()
		if f.room == nil {
			f.room = map[string]windowRoom{}
		}
		if len(f.room) >= maxFullWindows {
			for id, r := range f.room {
				if !now.Before(r.resets) {
					delete(f.room, id)
				}
			}
			if len(f.room) >= maxFullWindows {
				clear(f.room)
			}
		}
		left := c.Limit - res.Counted[i]
		// Reserves return out of order: the window's fewest places left
		// is the latest news.
		if r, ok := f.room[k.ID]; !ok || r.version != k.Version || !r.resets.Equal(c.Resets) || left < r.left {
			f.room[k.ID] = windowRoom{version: k.Version, resets: c.Resets, left: left}
		}
		f.mu.Unlock()
	}
}

// ownRequests reports whether c is k's own request window (not a model's,
// whose limit may match by family, nor a user's, whose version the key
// does not carry).
func ownRequests(k *apikey.Key, c budget.Charge) bool {
	return c.Owner == budget.KeyOwner(k.ID) && c.Kind == budget.Requests && c.Model == "" && !c.Resets.IsZero() && c.Limit > 0
}

// notes is closed at the next note or leave.
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
	if !ownRequests(k, c) {
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
	f.wakeLocked()
}

// wakeLocked wakes every waiter to look again.
func (f *fullWindows) wakeLocked() {
	if f.noted != nil {
		close(f.noted)
		f.noted = nil
	}
}
