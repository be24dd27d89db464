package dynamo

// Events: one item per forwarded request, written by Settle (a conditional
// PutItem), removed by TTL (expiresAt) after the retention period.
//
//	pk EV#<keyId>  sk <13-digit unix ms>#<eventId>
//	gsi1 EVU#<userId>   / <ms>#<id>   when the event has a user    (projection ALL)
//	gsi2 EVC#<customId> / <ms>#<id>   when it has a custom id      (projection ALL)
//
// "data" holds the event's JSON without its bodies; the request and response
// bodies (when the key logs them) are the attributes reqBody and respBody, so
// a listing that does not want them can leave them out.
//
// Listing every event (the forum's "get all events") merges the partitions
// of every key (allevents.go): no index entry is written for it, because
// such an entry would be a write unit on every request (a quarter of what a
// request writes) to serve a listing the administrator asks for now and
// then. A page costs a query per key instead, each reading only what the
// merge needs.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

// Event attributes and indexes.
const (
	attrGSI2PK   = "gsi2pk"
	attrGSI2SK   = "gsi2sk"
	attrGSI3PK   = "gsi3pk" // of key ledgers (keyledger.go); events stored by earlier versions have one, unused
	attrGSI3SK   = "gsi3sk"
	attrData     = "data"
	attrReqBody  = "reqBody"
	attrRespBody = "respBody"
	indexGSI2    = "gsi2"
	indexGSI3    = "gsi3"

	prefixEventUser   = "EVU#"
	prefixEventCustom = "EVC#"
)

// Limits of ListEvents.
const (
	DefaultEventLimit = ledger.DefaultEventLimit
	MaxEventLimit     = ledger.MaxEventLimit
)

// Errors of ListEvents, for errors.Is: both are the caller's mistake (400).
var (
	ErrBadCursor    = ledger.ErrBadCursor
	ErrInvalidQuery = ledger.ErrInvalidQuery
)

func eventPK(keyID string) string { return "EV#" + keyID }

func eventSK(createdAtMs int64, id string) string { return fmt.Sprintf("%013d#%s", createdAtMs, id) }

// eventItem is ev as stored, expiring retention after it was created. Bodies
// longer than ledger.MaxBodyBytes (or not valid UTF-8) are clipped here too,
// and flagged, so that an oversized body can never make the write fail and
// the event be lost.
func eventItem(ev *ledger.Event, retention time.Duration) (map[string]ddb.AttributeValue, error) {
	data := *ev
	data.RequestBody, data.ResponseBody = "", ""
	reqBody, reqCut := safeBody(ev.RequestBody)
	respBody, respCut := safeBody(ev.ResponseBody)
	data.RequestBodyTruncated = data.RequestBodyTruncated || reqCut
	data.ResponseBodyTruncated = data.ResponseBodyTruncated || respCut
	b := data.AppendJSON(make([]byte, 0, 512))
	sk := eventSK(ev.CreatedAt, ev.ID)
	item := key(eventPK(ev.KeyID), sk)
	item[attrExpires] = num(time.UnixMilli(ev.CreatedAt).Add(retention).Unix())
	item[attrData] = str(string(b))
	if ev.UserID != "" {
		item[attrGSI1PK], item[attrGSI1SK] = str(prefixEventUser+ev.UserID), str(sk)
	}
	if ev.CustomID != "" {
		item[attrGSI2PK], item[attrGSI2SK] = str(prefixEventCustom+ev.CustomID), str(sk)
	}
	if reqBody != "" {
		item[attrReqBody] = str(reqBody)
	}
	if respBody != "" {
		item[attrRespBody] = str(respBody)
	}
	return item, nil
}

// safeBody returns body unchanged when it is storable, else clipped.
func safeBody(body string) (string, bool) {
	if len(body) <= ledger.MaxBodyBytes && utf8.ValidString(body) {
		return body, false
	}
	return ledger.ClipBody([]byte(body), ledger.MaxBodyBytes)
}

// decodeEvent reads an event item; bodies are set when the item has them.
func decodeEvent(item map[string]ddb.AttributeValue) (*ledger.Event, error) {
	var ev ledger.Event
	if err := json.Unmarshal([]byte(getS(item, attrData)), &ev); err != nil {
		return nil, fmt.Errorf("decode event %s %s: %w", getS(item, attrPK), getS(item, attrSK), err)
	}
	ev.RequestBody, ev.ResponseBody = getS(item, attrReqBody), getS(item, attrRespBody)
	return &ev, nil
}

// withoutBodies is the projection of event queries that leave bodies out.
// ("data" is a reserved word.)
var withoutBodies = struct {
	expr  string
	names map[string]string
}{"pk, sk, #d", map[string]string{"#d": attrData}}

// keyEventsQuery is the query of keyID's events created in [startMs,
// endMs), oldest first, without their bodies.
func (s *Store) keyEventsQuery(keyID string, startMs, endMs int64) *ddb.QueryInput {
	return &ddb.QueryInput{
		TableName:              aws.String(s.table),
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :a AND :b"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{
			":pk": str(eventPK(keyID)),
			":a":  str(eventSK(startMs, "")),
			":b":  str(eventSK(endMs-1, "~")),
		},
		ProjectionExpression:     aws.String(withoutBodies.expr),
		ExpressionAttributeNames: withoutBodies.names,
	}
}

// Events calls each for every event of key keyID created in [start, end),
// oldest first, reading page by page. Bodies are left out.
func (s *Store) Events(ctx context.Context, keyID string, start, end time.Time, each func(*ledger.Event) error) error {
	p := ddb.NewQueryPaginator(s.db, s.keyEventsQuery(keyID, start.UnixMilli(), end.UnixMilli()))
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("query events of key %s: %w", keyID, err)
		}
		for _, item := range page.Items {
			ev, err := decodeEvent(item)
			if err != nil {
				return err
			}
			if err := each(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxEventMs is the largest creation time an event sort key can hold.
const maxEventMs = 9_999_999_999_999

// eventPlan is how one ledger.EventQuery is read.
type eventPlan struct {
	q              ledger.EventQuery
	index          string // "" for the table
	all            bool   // every key's partition, merged (allevents.go)
	pkAttr, skAttr string
	pk             string // partition key value; "" when all
	filter         string
	filterVals     map[string]ddb.AttributeValue
	startMs, endMs int64 // [startMs, endMs)
	limit          int
	fingerprint    string // names the query inside its cursors
}

func planEvents(q ledger.EventQuery) (*eventPlan, error) {
	p := &eventPlan{q: q, limit: q.Limit, filterVals: map[string]ddb.AttributeValue{}}
	switch {
	case q.Limit == 0:
		p.limit = DefaultEventLimit
	case q.Limit < 0 || q.Limit > MaxEventLimit:
		return nil, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalidQuery, MaxEventLimit)
	}
	p.startMs, p.endMs = 0, maxEventMs+1
	if !q.Start.IsZero() {
		p.startMs = max(q.Start.UnixMilli(), 0)
	}
	if !q.End.IsZero() {
		p.endMs = min(q.End.UnixMilli(), maxEventMs+1)
	}
	if p.endMs <= p.startMs {
		return nil, fmt.Errorf("%w: end must be after start", ErrInvalidQuery)
	}
	var filters []string
	addFilter := func(attr, val string) {
		name := fmt.Sprintf(":f%d", len(filters))
		filters = append(filters, attr+" = "+name)
		p.filterVals[name] = str(val)
	}
	// The key's partition, else the custom id's, else the user's; filters
	// only ever name attributes that are not keys of what is queried.
	switch {
	case q.KeyID != "":
		p.pkAttr, p.skAttr, p.pk = attrPK, attrSK, eventPK(q.KeyID)
		if q.UserID != "" {
			addFilter(attrGSI1PK, prefixEventUser+q.UserID)
		}
		if q.CustomID != "" {
			addFilter(attrGSI2PK, prefixEventCustom+q.CustomID)
		}
	case q.CustomID != "":
		p.index, p.pkAttr, p.skAttr, p.pk = indexGSI2, attrGSI2PK, attrGSI2SK, prefixEventCustom+q.CustomID
		if q.UserID != "" {
			addFilter(attrGSI1PK, prefixEventUser+q.UserID)
		}
	case q.UserID != "":
		p.index, p.pkAttr, p.skAttr, p.pk = indexGSI1, attrGSI1PK, attrGSI1SK, prefixEventUser+q.UserID
	case q.All:
		p.all, p.pkAttr, p.skAttr = true, attrPK, attrSK
	default:
		return nil, fmt.Errorf("%w: name a key, a user or a custom id, or ask for all events", ErrInvalidQuery)
	}
	for i, f := range filters {
		if i > 0 {
			p.filter += " AND "
		}
		p.filter += f
	}
	mode := "key"
	switch {
	case p.index == indexGSI1:
		mode = "user"
	case p.index == indexGSI2:
		mode = "custom"
	case p.all:
		mode = "all"
	}
	h := sha256.Sum256([]byte(mode + "\x00" + q.KeyID + "\x00" + q.UserID + "\x00" + q.CustomID))
	p.fingerprint = base64.RawURLEncoding.EncodeToString(h[:9])
	return p, nil
}

// cursor is the position after which a listing continues: the last event
// it returned, plus which query it belongs to.
type cursor struct {
	V     int    `json:"v"`
	Query string `json:"q"` // eventPlan.fingerprint
	KeyID string `json:"k"`
	SK    string `json:"s"` // <13-digit ms>#<eventId>
}

// isEventSK reports whether sk is an event's sort key: a stamp, '#' and up
// to 128 letters, digits, '_', '.' or '-'.
func isEventSK(sk string) bool { return isStampedSK(sk, 128, "_.-") }

func (p *eventPlan) encodeCursor(ev *ledger.Event) string {
	b, _ := json.Marshal(cursor{V: 1, Query: p.fingerprint, KeyID: ev.KeyID, SK: eventSK(ev.CreatedAt, ev.ID)})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor checks a cursor and returns its position; ErrBadCursor when it
// was not made by this query or was altered.
func (p *eventPlan) decodeCursor(s string) (*cursor, int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) > 1024 {
		return nil, 0, fmt.Errorf("%w: not a cursor returned by this API", ErrBadCursor)
	}
	var c cursor
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() || c.V != 1 || !isEventSK(c.SK) ||
		c.KeyID == "" || len(c.KeyID) > 256 || !utf8.ValidString(c.KeyID) {
		return nil, 0, fmt.Errorf("%w: not a cursor returned by this API", ErrBadCursor)
	}
	if c.Query != p.fingerprint || (p.q.KeyID != "" && c.KeyID != p.q.KeyID) {
		return nil, 0, fmt.Errorf("%w: the cursor belongs to a different query", ErrBadCursor)
	}
	ms, _ := strconv.ParseInt(c.SK[:13], 10, 64)
	if ms >= p.endMs {
		return nil, 0, fmt.Errorf("%w: the cursor is outside the time range", ErrBadCursor)
	}
	return &c, ms, nil
}

// startKey is the ExclusiveStartKey that continues after c in partition pk.
func (p *eventPlan) startKey(c *cursor, pk string) map[string]ddb.AttributeValue {
	k := key(eventPK(c.KeyID), c.SK)
	if p.index != "" {
		k[p.pkAttr], k[p.skAttr] = str(pk), str(c.SK)
	}
	return k
}

// ListEvents returns one page of the events q selects, newest first, and the
// cursor of the next page ("" when there is none). ErrInvalidQuery or
// ErrBadCursor (wrapped) when q cannot be answered.
func (s *Store) ListEvents(ctx context.Context, q ledger.EventQuery) ([]*ledger.Event, string, error) {
	p, err := planEvents(q)
	if err != nil {
		return nil, "", err
	}
	var after *cursor
	if q.Cursor != "" {
		c, ms, err := p.decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		if ms < p.startMs {
			return []*ledger.Event{}, "", nil // nothing older is in range
		}
		after = c
	}
	// One more than a page tells whether another page follows.
	want := p.limit + 1
	var items []map[string]ddb.AttributeValue
	budget := bodyBudget{max: q.BodyBudget}
	if p.all {
		items, err = s.mergedEvents(ctx, p, after, want)
	} else {
		var start map[string]ddb.AttributeValue
		if after != nil {
			start = p.startKey(after, p.pk)
		}
		items, err = s.queryEvents(ctx, p, p.pk, start, want, &budget)
	}
	if err != nil {
		return nil, "", err
	}
	// More may follow when there was one more than a page, or when the
	// budget stopped the reading.
	more := len(items) > p.limit || budget.spent()
	items = items[:min(len(items), p.limit)]
	events := make([]*ledger.Event, 0, len(items))
	size := 0
	for i, item := range items {
		ev, err := decodeEvent(item)
		if err != nil {
			return nil, "", err
		}
		// A page holds at least one event, and bodies up to the budget.
		if !q.OmitBodies {
			size += storedBodySize(ev, p.all)
		}
		if i > 0 && q.BodyBudget > 0 && size > q.BodyBudget {
			more = true
			break
		}
		events = append(events, ev)
	}
	next := ""
	if more && len(events) > 0 {
		next = p.encodeCursor(events[len(events)-1])
	}
	if p.all && !q.OmitBodies {
		if err := s.addBodies(ctx, events); err != nil {
			return nil, "", err
		}
	}
	return events, next, nil
}

// storedBodySize is how many bytes of bodies ev carries, or, for an event
// read without them (a merged listing), at most carries.
func storedBodySize(ev *ledger.Event, estimate bool) int {
	if !estimate {
		return len(ev.RequestBody) + len(ev.ResponseBody)
	}
	return int(min(ev.RequestBodyBytes, ledger.MaxBodyBytes) + min(ev.ResponseBodyBytes, ledger.MaxBodyBytes))
}

// bodyBudget counts the body bytes a listing has read, so that it stops
// reading once a page's worth is in hand.
type bodyBudget struct {
	max, used int // max 0: no bound
}

func (b *bodyBudget) add(item map[string]ddb.AttributeValue) {
	b.used += len(getS(item, attrReqBody)) + len(getS(item, attrRespBody))
}

func (b *bodyBudget) spent() bool { return b.max > 0 && b.used > b.max }

// queryEvents reads up to n events of partition pk, newest first, from after
// start (nil: from the newest in range), following DynamoDB's pages.
func (s *Store) queryEvents(ctx context.Context, p *eventPlan, pk string, start map[string]ddb.AttributeValue, n int, budget *bodyBudget) ([]map[string]ddb.AttributeValue, error) {
	vals := map[string]ddb.AttributeValue{
		":pk": str(pk),
		":a":  str(eventSK(p.startMs, "")),
		":b":  str(eventSK(p.endMs-1, "~")),
	}
	in := &ddb.QueryInput{
		TableName:              aws.String(s.table),
		KeyConditionExpression: aws.String(p.pkAttr + " = :pk AND " + p.skAttr + " BETWEEN :a AND :b"),
		ScanIndexForward:       aws.Bool(false),
		ExclusiveStartKey:      start,
	}
	if p.index != "" {
		in.IndexName = aws.String(p.index)
	}
	if p.filter != "" {
		// Limit counts items before the filter: let each page read its 1 MB.
		in.FilterExpression = aws.String(p.filter)
		for k, v := range p.filterVals {
			vals[k] = v
		}
	}
	in.ExpressionAttributeValues = vals
	if p.q.OmitBodies {
		in.ProjectionExpression = aws.String(withoutBodies.expr)
		in.ExpressionAttributeNames = withoutBodies.names
	}
	var out []map[string]ddb.AttributeValue
	for len(out) < n {
		if p.filter == "" {
			in.Limit = aws.Int32(int32(n - len(out)))
		}
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("query events of %s: %w", pk, err)
		}
		out = append(out, page.Items...)
		for _, item := range page.Items {
			budget.add(item)
		}
		if len(page.LastEvaluatedKey) == 0 || budget.spent() {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// addBodies reads the bodies of the events that have them from the table
// (a merged listing reads without them), 100 keys per BatchGetItem.
func (s *Store) addBodies(ctx context.Context, events []*ledger.Event) error {
	byKey := map[string]*ledger.Event{}
	var keys []map[string]ddb.AttributeValue
	for _, ev := range events {
		if ev.RequestBodyBytes == 0 && ev.ResponseBodyBytes == 0 {
			continue
		}
		pk, sk := eventPK(ev.KeyID), eventSK(ev.CreatedAt, ev.ID)
		byKey[pk+"\x00"+sk] = ev
		keys = append(keys, key(pk, sk))
	}
	for len(keys) > 0 {
		n := min(len(keys), 100)
		req := map[string]ddb.KeysAndAttributes{s.table: {
			Keys:                     keys[:n],
			ProjectionExpression:     aws.String("pk, sk, #q, #r"),
			ExpressionAttributeNames: map[string]string{"#q": attrReqBody, "#r": attrRespBody},
		}}
		keys = keys[n:]
		backoff := 10 * time.Millisecond
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 { // DynamoDB left some keys unread: retry them
				if attempt > 10 {
					return errors.New("read event bodies: unprocessed keys remain")
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("read event bodies: %w", ctx.Err())
				case <-time.After(backoff/2 + rand.N(backoff)):
				}
				backoff = min(2*backoff, time.Second)
			}
			out, err := s.db.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return fmt.Errorf("read event bodies: %w", err)
			}
			for _, item := range out.Responses[s.table] {
				if ev := byKey[getS(item, attrPK)+"\x00"+getS(item, attrSK)]; ev != nil {
					ev.RequestBody, ev.ResponseBody = getS(item, attrReqBody), getS(item, attrRespBody)
				}
			}
			req = out.UnprocessedKeys
		}
	}
	return nil
}

// RecentEvents returns keyID's latest events, at most limit of them (1 to
// MaxEventLimit), newest first and without their bodies: what GET
// /v1/key/info shows a key's holder of their own requests.
func (s *Store) RecentEvents(ctx context.Context, keyID string, limit int) ([]*ledger.Event, error) {
	list, _, err := s.ListEvents(ctx, ledger.EventQuery{KeyID: keyID, Limit: limit, OmitBodies: true})
	return list, err
}
