package reporting

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/ledger"
)

// Events lists the events requests left; *dynamo.Store implements it.
type Events interface {
	// ListEvents returns one page of the events q selects, newest first,
	// and the next page's cursor ("" after the last page). A cursor that
	// was altered or belongs to another query is ledger.ErrBadCursor, a
	// query it cannot answer ledger.ErrInvalidQuery (both wrapped).
	ListEvents(ctx context.Context, q ledger.EventQuery) ([]*ledger.Event, string, error)
	// Events calls each for every event of keyID created in [start, end),
	// oldest first (metrics and time series read them).
	Events(ctx context.Context, keyID string, start, end time.Time, each func(*ledger.Event) error) error
}

// Bounds of the events API.
const (
	// defaultEventRange is the time range listed when start is absent:
	// the default retention of events.
	defaultEventRange = 30 * 24 * time.Hour
	// EventBodyBudget bounds the bodies one response carries: the admin
	// API answers through a buffered function URL, whose responses are at
	// most 6 MB, and JSON escaping can grow a body (a quote becomes \").
	EventBodyBudget = 2 << 20
	// MaxEventFilterLen bounds keyId, userId and customId (the proxy
	// accepts custom ids of up to 256 bytes).
	MaxEventFilterLen = 256
	// MaxLegacyKeyIDs bounds the keyIds of GET /api/events.
	MaxLegacyKeyIDs = 20
)

// eventView is an event as the admin API shows it: ledger.Event's fields,
// with createdAt in seconds like every time of this API, and the exact
// millisecond beside it.
type eventView struct {
	*ledger.Event
	CreatedAt   int64 `json:"createdAt"`
	CreatedAtMs int64 `json:"createdAtMs"`
}

func viewEvents(list []*ledger.Event) []eventView {
	out := make([]eventView, len(list))
	for i, ev := range list {
		out[i] = eventView{Event: ev, CreatedAt: ev.CreatedAt / 1000, CreatedAtMs: ev.CreatedAt}
	}
	return out
}

// eventPage is the answer of GET /api/v1/events. NextCursor is null after
// the last page.
type eventPage struct {
	Events     []eventView `json:"events"`
	NextCursor *string     `json:"nextCursor"`
}

// ListEvents answers GET /api/v1/events: the events of a key, a user, a
// custom id (any combination: events must match them all), or all=true for
// every event, created in [start, end) (seconds; default: the 30 days up to
// now), newest first, limit (default 50, at most 500) a page. Each event
// carries the request and response bodies its key logged, unless
// includeBodies=false; a page with many bodies may end before limit (with a
// cursor). cursor is the previous page's nextCursor, with the same query.
func (h *Handler) ListEvents(w http.ResponseWriter, r *http.Request) error {
	vals := r.URL.Query()
	var q ledger.EventQuery
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"keyId", &q.KeyID}, {"userId", &q.UserID}, {"customId", &q.CustomID}} {
		if *f.dst, err = eventFilter(vals, f.name); err != nil {
			return err
		}
	}
	if q.All, err = boolParam(vals, "all", false); err != nil {
		return err
	}
	if q.KeyID == "" && q.UserID == "" && q.CustomID == "" && !q.All {
		return request.Invalid("keyId", "name the events to list with keyId, userId or customId, or ask for every event with all=true")
	}
	if q.Start, q.End, err = h.eventRange(vals); err != nil {
		return err
	}
	q.Limit = ledger.DefaultEventLimit
	if s := vals.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > ledger.MaxEventLimit {
			return request.MustBe("limit", "an integer from 1 to "+strconv.Itoa(ledger.MaxEventLimit))
		}
		q.Limit = n
	}
	q.Cursor = vals.Get("cursor")
	bodies, err := boolParam(vals, "includeBodies", true)
	if err != nil {
		return err
	}
	q.OmitBodies, q.BodyBudget = !bodies, EventBodyBudget
	list, next, err := h.cfg.Events.ListEvents(r.Context(), q)
	if err != nil {
		return eventsError(err)
	}
	page := eventPage{Events: viewEvents(list)}
	if next != "" {
		page.NextCursor = &next
	}
	return response.JSON(w, http.StatusOK, page)
}

// LegacyEvents answers BricksLLM's GET /api/events: customId, userId and
// keyIds (repeated or comma-separated; at least one of the three), start
// and end (seconds; default: the 30 days up to now). It returns a plain
// array, newest first, of at most 500 events, with their bodies; when more
// match, the newest are returned and X-Stipend-Truncated is "true" (GET
// /api/v1/events pages through them all).
func (h *Handler) LegacyEvents(w http.ResponseWriter, r *http.Request) error {
	vals := r.URL.Query()
	var q ledger.EventQuery
	var err error
	if q.CustomID, err = eventFilter(vals, "customId"); err != nil {
		return err
	}
	if q.UserID, err = eventFilter(vals, "userId"); err != nil {
		return err
	}
	var keyIDs []string
	for _, v := range vals["keyIds"] {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.TrimSpace(id); id != "" && !slices.Contains(keyIDs, id) {
				keyIDs = append(keyIDs, id)
			}
		}
	}
	switch {
	case len(keyIDs) > MaxLegacyKeyIDs:
		return request.Invalid("keyIds", "keyIds may name at most %d keys; use GET /api/v1/events for more", MaxLegacyKeyIDs)
	case slices.ContainsFunc(keyIDs, func(id string) bool { return len(id) > MaxEventFilterLen }):
		return request.Invalid("keyIds", "keyIds must be at most %d characters each", MaxEventFilterLen)
	case len(keyIDs) == 0 && q.CustomID == "" && q.UserID == "":
		return request.Invalid("customId", "customId, userId and keyIds are all empty; one of them is required")
	}
	if q.Start, q.End, err = h.eventRange(vals); err != nil {
		return err
	}
	q.Limit = ledger.MaxEventLimit
	if len(keyIDs) == 0 {
		keyIDs = []string{""}
	}
	// One page per key, each with its share of the body budget, merged.
	q.BodyBudget = EventBodyBudget / len(keyIDs)
	var all []*ledger.Event
	truncated := false
	var cutoff *ledger.Event // the newest "last event" of a key that has more
	for _, id := range keyIDs {
		q.KeyID = id
		list, next, err := h.cfg.Events.ListEvents(r.Context(), q)
		if err != nil {
			return eventsError(err)
		}
		all = append(all, list...)
		if next != "" && len(list) > 0 {
			truncated = true
			if last := list[len(list)-1]; cutoff == nil || NewestFirst(last, cutoff) < 0 {
				cutoff = last
			}
		}
	}
	slices.SortFunc(all, NewestFirst)
	// Past a key's cut, that key's events are missing: stop there so that
	// what is returned is every matching event down to some time.
	if cutoff != nil {
		n, _ := slices.BinarySearchFunc(all, cutoff, NewestFirst)
		all = all[:n+1]
	}
	if len(all) > ledger.MaxEventLimit {
		all, truncated = all[:ledger.MaxEventLimit], true
	}
	if truncated {
		w.Header().Set("X-Stipend-Truncated", "true")
	}
	return response.JSON(w, http.StatusOK, viewEvents(all))
}

// NewestFirst orders events by creation time, newest first, then by id.
func NewestFirst(a, b *ledger.Event) int {
	return cmp.Or(cmp.Compare(b.CreatedAt, a.CreatedAt), strings.Compare(b.ID, a.ID))
}

// eventFilter reads an optional keyId, userId or customId: absent is "",
// present it must be non-empty and not too long.
func eventFilter(vals map[string][]string, name string) (string, error) {
	v, ok := vals[name]
	if !ok {
		return "", nil
	}
	if len(v) != 1 || v[0] == "" || len(v[0]) > MaxEventFilterLen {
		return "", request.MustBe(name, "one non-empty value of at most "+strconv.Itoa(MaxEventFilterLen)+" characters")
	}
	return v[0], nil
}

// boolParam reads an optional true/false query parameter.
func boolParam(vals map[string][]string, name string, def bool) (bool, error) {
	v, ok := vals[name]
	if !ok || len(v) == 0 || v[0] == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v[0])
	if err != nil {
		return def, request.MustBe(name, "true or false")
	}
	return b, nil
}

// eventRange reads start and end (seconds since the epoch, end exclusive).
// Without end the range ends now; without start it begins 30 days before
// its end.
func (h *Handler) eventRange(vals map[string][]string) (start, end time.Time, err error) {
	num := func(name string) (time.Time, bool, error) {
		v, ok := vals[name]
		if !ok || len(v) == 0 || v[0] == "" {
			return time.Time{}, false, nil
		}
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < 0 || n > request.MaxUnixTime {
			return time.Time{}, false, request.MustBe(name, "a time in whole seconds since the epoch")
		}
		return time.Unix(n, 0), true, nil
	}
	end, hasEnd, err := num("end")
	if err != nil {
		return start, end, err
	}
	if !hasEnd {
		end = h.cfg.Now()
	}
	start, hasStart, err := num("start")
	if err != nil {
		return start, end, err
	}
	if !hasStart {
		start = end.Add(-defaultEventRange)
	}
	if !end.After(start) {
		return start, end, request.Invalid("end", "end must be greater than start")
	}
	return start, end, nil
}

// eventsError turns a failed listing into the client's error.
func eventsError(err error) error {
	switch {
	case errors.Is(err, ledger.ErrBadCursor):
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest,
			err.Error()+"; pass the nextCursor of the previous page, with the same query").WithParam("cursor")
	case errors.Is(err, ledger.ErrInvalidQuery):
		// The store's own checks of the range and limit, which the
		// handler makes first: a safety net.
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, err.Error()).WithParam("start")
	default:
		return response.StoreError(err, "events")
	}
}
