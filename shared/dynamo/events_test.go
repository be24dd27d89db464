package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/testclock"
)

// ids returns the ids of events, in order.
func ids(events []*ledger.Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.ID
	}
	return out
}

// listAll follows the cursors of q to the end and returns every id, page by
// page.
func listAll(t *testing.T, s *Store, q ledger.EventQuery) [][]string {
	t.Helper()
	var pages [][]string
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("ListEvents does not stop")
		}
		events, next, err := s.ListEvents(context.Background(), q)
		if err != nil {
			t.Fatalf("ListEvents(%+v): %v", q, err)
		}
		pages = append(pages, ids(events))
		if next == "" {
			return pages
		}
		q.Cursor = next
	}
}

func TestEvents(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	// The last hour of a month and the first hours of the next, two months
	// ago, so that the listing of all events crosses months.
	base := testclock.MonthStart(testclock.Now(t), -1).Add(-time.Hour)
	at := func(h int) int64 { return base.Add(time.Duration(h) * time.Hour).UnixMilli() }

	s := newStore(t, endpoint, "events")
	createKeys(t, s, "kA", "kB", "kC")
	// Two keys of user u1, one key of nobody; custom id "run" spans keys.
	fixtures := []*ledger.Event{
		{ID: "e0", KeyID: "kA", UserID: "u1", CustomID: "run", CreatedAt: at(0)},
		{ID: "e1", KeyID: "kB", UserID: "u1", CreatedAt: at(1)},
		{ID: "e2", KeyID: "kA", UserID: "u1", CreatedAt: at(2)},
		{ID: "e3", KeyID: "kC", CustomID: "run", CreatedAt: at(3)},
		{ID: "e4", KeyID: "kB", UserID: "u1", CustomID: "run", CreatedAt: at(4)},
		{ID: "e5", KeyID: "kA", UserID: "u1", CustomID: "other", CreatedAt: at(5)},
		{ID: "e6", KeyID: "kC", CreatedAt: at(6)},
	}
	for _, ev := range fixtures {
		ev.Model, ev.Status, ev.Cost = "gpt-4o-mini", 200, 1000
		if err := record(ctx, s, ev); err != nil {
			t.Fatal(err)
		}
	}
	whole := ledger.EventQuery{Start: base, End: base.Add(24 * time.Hour)}
	with := func(f func(*ledger.EventQuery)) ledger.EventQuery { q := whole; f(&q); return q }

	tests := []struct {
		name string
		q    ledger.EventQuery
		want [][]string // pages of ids
	}{
		{"by key, newest first", with(func(q *ledger.EventQuery) { q.KeyID = "kA" }), [][]string{{"e5", "e2", "e0"}}},
		{"by key, pages of 2", with(func(q *ledger.EventQuery) { q.KeyID = "kA"; q.Limit = 2 }), [][]string{{"e5", "e2"}, {"e0"}}},
		{"a page that ends exactly at the end", with(func(q *ledger.EventQuery) { q.KeyID = "kB"; q.Limit = 2 }), [][]string{{"e4", "e1"}}},
		{"by user across two keys", with(func(q *ledger.EventQuery) { q.UserID = "u1"; q.Limit = 2 }), [][]string{{"e5", "e4"}, {"e2", "e1"}, {"e0"}}},
		{"by custom id across keys", with(func(q *ledger.EventQuery) { q.CustomID = "run" }), [][]string{{"e4", "e3", "e0"}}},
		{"custom id and key", with(func(q *ledger.EventQuery) { q.CustomID = "run"; q.KeyID = "kA" }), [][]string{{"e0"}}},
		{"custom id and user, pages of 1", with(func(q *ledger.EventQuery) { q.CustomID = "run"; q.UserID = "u1"; q.Limit = 1 }), [][]string{{"e4"}, {"e0"}}},
		{"key and user", with(func(q *ledger.EventQuery) { q.KeyID = "kB"; q.UserID = "u1" }), [][]string{{"e4", "e1"}}},
		{"key of another user", with(func(q *ledger.EventQuery) { q.KeyID = "kC"; q.UserID = "u1" }), [][]string{{}}},
		{"all, across two months, pages of 3", with(func(q *ledger.EventQuery) { q.All = true; q.Limit = 3 }),
			[][]string{{"e6", "e5", "e4"}, {"e3", "e2", "e1"}, {"e0"}}},
		{"all, one page", with(func(q *ledger.EventQuery) { q.All = true }), [][]string{{"e6", "e5", "e4", "e3", "e2", "e1", "e0"}}},
		{"range: start is inclusive, end exclusive", ledger.EventQuery{All: true, Start: time.UnixMilli(at(1)), End: time.UnixMilli(at(4))},
			[][]string{{"e3", "e2", "e1"}}},
		{"range by key", ledger.EventQuery{KeyID: "kA", Start: time.UnixMilli(at(1)), End: time.UnixMilli(at(5))}, [][]string{{"e2"}}},
		{"range with no events", ledger.EventQuery{UserID: "u1", Start: base.Add(-48 * time.Hour), End: base}, [][]string{{}}},
		{"unknown user", with(func(q *ledger.EventQuery) { q.UserID = "nobody" }), [][]string{{}}},
		{"open range", ledger.EventQuery{KeyID: "kC"}, [][]string{{"e6", "e3"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := listAll(t, s, tt.q); !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("pages = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("an event reads back whole", func(t *testing.T) {
		events, _, err := s.ListEvents(ctx, ledger.EventQuery{KeyID: "kB", Limit: 1})
		if err != nil || len(events) != 1 {
			t.Fatalf("ListEvents = %v, %v", events, err)
		}
		if ev := events[0]; ev.ID != "e4" || ev.UserID != "u1" || ev.CustomID != "run" || ev.Model != "gpt-4o-mini" || ev.Cost != 1000 || ev.CreatedAt != at(4) {
			t.Errorf("event = %+v", ev)
		}
	})

	t.Run("invalid queries", func(t *testing.T) {
		for name, q := range map[string]ledger.EventQuery{
			"nothing named":    {},
			"limit too large":  {KeyID: "kA", Limit: MaxEventLimit + 1},
			"negative limit":   {KeyID: "kA", Limit: -1},
			"end before start": {KeyID: "kA", Start: base, End: base.Add(-time.Second)},
			"empty range":      {KeyID: "kA", Start: base, End: base},
		} {
			if _, _, err := s.ListEvents(ctx, q); !errors.Is(err, ErrInvalidQuery) {
				t.Errorf("%s: err = %v, want ErrInvalidQuery", name, err)
			}
		}
	})

	t.Run("all, over any range", func(t *testing.T) {
		for name, q := range map[string]ledger.EventQuery{
			"over 11 years": {All: true, Start: base.AddDate(-11, 0, 0), End: base.AddDate(0, 0, 1)},
			"open range":    {All: true},
		} {
			if got := listAll(t, s, q); fmt.Sprint(got) != "[[e6 e5 e4 e3 e2 e1 e0]]" {
				t.Errorf("%s: pages %v", name, got)
			}
		}
	})

	t.Run("cursors", func(t *testing.T) {
		q := with(func(q *ledger.EventQuery) { q.UserID = "u1"; q.Limit = 2 })
		_, next, err := s.ListEvents(ctx, q)
		if err != nil || next == "" {
			t.Fatalf("first page: next %q, %v", next, err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(next)
		if err != nil {
			t.Fatalf("cursor is not base64url: %v", err)
		}
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		reencode := func(change func(map[string]any)) string {
			m := map[string]any{}
			for k, v := range c {
				m[k] = v
			}
			change(m)
			b, _ := json.Marshal(m)
			return base64.RawURLEncoding.EncodeToString(b)
		}
		withCursor := func(cur string, change func(*ledger.EventQuery)) ledger.EventQuery {
			x := q
			x.Cursor = cur
			if change != nil {
				change(&x)
			}
			return x
		}
		b64 := base64.RawURLEncoding.EncodeToString
		bad := map[string]ledger.EventQuery{
			"not base64":         withCursor("%%%", nil),
			"not JSON":           withCursor(b64([]byte("nope")), nil),
			"padded base64":      withCursor(base64.URLEncoding.EncodeToString(raw)+"=", nil),
			"trailing data":      withCursor(b64(append(raw, " {}"...)), nil),
			"unknown field":      withCursor(reencode(func(m map[string]any) { m["x"] = 1 }), nil),
			"other version":      withCursor(reencode(func(m map[string]any) { m["v"] = 2 }), nil),
			"sort key altered":   withCursor(reencode(func(m map[string]any) { m["s"] = "12#e1" }), nil),
			"sort key injection": withCursor(reencode(func(m map[string]any) { m["s"] = m["s"].(string) + "#x" }), nil),
			"no key":             withCursor(reencode(func(m map[string]any) { delete(m, "k") }), nil),
			"query altered":      withCursor(reencode(func(m map[string]any) { m["q"] = "AAAAAAAAAAAA" }), nil),
			"another user's":     withCursor(next, func(x *ledger.EventQuery) { x.UserID = "u2" }),
			"same spot, by key":  withCursor(next, func(x *ledger.EventQuery) { x.UserID, x.KeyID = "", "kA" }),
			"after the range":    withCursor(next, func(x *ledger.EventQuery) { x.End = time.UnixMilli(at(2)) }),
		}
		for name, bq := range bad {
			if _, _, err := s.ListEvents(ctx, bq); !errors.Is(err, ErrBadCursor) {
				t.Errorf("%s: err = %v, want ErrBadCursor", name, err)
			}
		}
		// A cursor before a (later) start just ends the listing.
		late := q
		late.Start, late.Cursor = time.UnixMilli(at(5)), next
		if events, n, err := s.ListEvents(ctx, late); err != nil || len(events) != 0 || n != "" {
			t.Errorf("cursor before start: %v, %q, %v", ids(events), n, err)
		}
	})

	t.Run("expiry is createdAt plus retention", func(t *testing.T) {
		for _, retention := range []time.Duration{0, 7 * 24 * time.Hour} {
			rs := New(s.db, s.table, retention)
			ev := &ledger.Event{ID: "ttl" + strconv.Itoa(int(retention.Hours())), KeyID: "kTTL", CreatedAt: at(0) + 123}
			if err := record(ctx, rs, ev); err != nil {
				t.Fatal(err)
			}
			item := rawItem(t, s, eventPK("kTTL"), eventSK(ev.CreatedAt, ev.ID))
			want := time.UnixMilli(ev.CreatedAt).Add(rs.retention).Unix()
			if got := getN(item, attrExpires); got != want {
				t.Errorf("retention %v: expiresAt = %d, want %d", retention, got, want)
			}
		}
		if d := New(s.db, s.table, 0).retention; d != 30*24*time.Hour {
			t.Errorf("default retention = %v", d)
		}
	})
}

// rawItem reads one item as stored.
func rawItem(t *testing.T, s *Store, pk, sk string) map[string]ddb.AttributeValue {
	t.Helper()
	out, err := s.db.GetItem(context.Background(), &ddb.GetItemInput{TableName: aws.String(s.table), Key: key(pk, sk)})
	if err != nil || out.Item == nil {
		t.Fatalf("GetItem %s %s = %v, %v", pk, sk, out, err)
	}
	return out.Item
}

func TestEventBodies(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	s := newStore(t, endpoint, "bodies")
	createKeys(t, s, "k1")
	now := testclock.Now(t).AddDate(0, 0, -3)

	req := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"héllo"}]}`
	resp := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	huge := strings.Repeat("é", ledger.MaxBodyBytes) // 2 bytes each: twice the most an event keeps
	events := []*ledger.Event{
		{ID: "plain", KeyID: "k1", CreatedAt: now.UnixMilli()},
		{ID: "logged", KeyID: "k1", UserID: "u", CustomID: "c", CreatedAt: now.UnixMilli() + 1,
			RequestBody: req, RequestBodyBytes: int64(len(req)),
			ResponseBody: resp[:20], ResponseBodyBytes: int64(len(resp)), ResponseBodyTruncated: true},
		{ID: "huge", KeyID: "k1", CreatedAt: now.UnixMilli() + 2, RequestBody: huge, RequestBodyBytes: int64(len(huge))},
	}
	for _, ev := range events {
		if err := record(ctx, s, ev); err != nil {
			t.Fatalf("record %s: %v", ev.ID, err)
		}
	}

	t.Run("stored beside data, not inside it", func(t *testing.T) {
		item := rawItem(t, s, eventPK("k1"), eventSK(events[1].CreatedAt, "logged"))
		if getS(item, attrReqBody) != req || getS(item, attrRespBody) != resp[:20] {
			t.Errorf("bodies = %q, %q", getS(item, attrReqBody), getS(item, attrRespBody))
		}
		if d := getS(item, attrData); strings.Contains(d, "héllo") || strings.Contains(d, "requestBody\"") {
			t.Errorf("data holds a body: %s", d)
		}
		plain := rawItem(t, s, eventPK("k1"), eventSK(events[0].CreatedAt, "plain"))
		if _, ok := plain[attrReqBody]; ok {
			t.Errorf("an event without bodies has %s", attrReqBody)
		}
		// No index entry but the user's and the custom id's: each would
		// be a write unit more per request.
		for _, a := range []string{attrGSI3PK, attrGSI3SK} {
			if _, ok := item[a]; ok {
				t.Errorf("an event has %s", a)
			}
		}
	})

	byID := func(list []*ledger.Event) map[string]*ledger.Event {
		m := map[string]*ledger.Event{}
		for _, ev := range list {
			m[ev.ID] = ev
		}
		return m
	}
	for _, tt := range []struct {
		name string
		q    ledger.EventQuery
	}{
		{"by key", ledger.EventQuery{KeyID: "k1"}},
		{"all (bodies read from the table)", ledger.EventQuery{All: true, Start: now.Add(-time.Hour), End: now.Add(time.Hour)}},
		{"by user", ledger.EventQuery{UserID: "u"}},
		{"by custom id", ledger.EventQuery{CustomID: "c"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			list, _, err := s.ListEvents(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			got := byID(list)
			if ev := got["logged"]; ev == nil || ev.RequestBody != req || ev.RequestBodyTruncated || ev.RequestBodyBytes != int64(len(req)) ||
				ev.ResponseBody != resp[:20] || !ev.ResponseBodyTruncated || ev.ResponseBodyBytes != int64(len(resp)) {
				t.Errorf("logged = %+v", ev)
			}
			if ev := got["plain"]; ev != nil && (ev.RequestBody != "" || ev.ResponseBody != "") {
				t.Errorf("plain = %+v", ev)
			}
			if ev := got["huge"]; ev != nil && (len(ev.RequestBody) != ledger.MaxBodyBytes || !ev.RequestBodyTruncated || ev.RequestBodyBytes != int64(len(huge))) {
				t.Errorf("huge: %d bytes kept, truncated %v, size %d", len(ev.RequestBody), ev.RequestBodyTruncated, ev.RequestBodyBytes)
			}
			tt.q.OmitBodies = true
			list, _, err = s.ListEvents(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if ev := byID(list)["logged"]; ev == nil || ev.RequestBody != "" || ev.ResponseBody != "" || ev.RequestBodyBytes != int64(len(req)) || !ev.ResponseBodyTruncated {
				t.Errorf("OmitBodies: logged = %+v", ev)
			}
		})
	}

	t.Run("a body budget ends pages early", func(t *testing.T) {
		for _, q := range []ledger.EventQuery{
			{KeyID: "k1", BodyBudget: 1000},
			{All: true, Start: now.Add(-time.Hour), End: now.Add(time.Hour), BodyBudget: 1000},
		} {
			// "huge" alone is over the budget, yet a page holds at least one event.
			want := [][]string{{"huge"}, {"logged", "plain"}}
			if got := listAll(t, s, q); !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("%+v: pages = %v, want %v", q, got, want)
			}
			q.OmitBodies = true // bodies left out weigh nothing
			want = [][]string{{"huge", "logged", "plain"}}
			if got := listAll(t, s, q); !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("%+v: pages = %v, want %v", q, got, want)
			}
		}
	})

	t.Run("Events leaves bodies out", func(t *testing.T) {
		var n int
		err := s.Events(ctx, "k1", now, now.Add(time.Minute), func(ev *ledger.Event) error {
			n++
			if ev.RequestBody != "" || ev.ResponseBody != "" {
				t.Errorf("Events returned the bodies of %s", ev.ID)
			}
			return nil
		})
		if err != nil || n != 3 {
			t.Fatalf("Events: %d events, %v", n, err)
		}
	})
}

// TestCreateTableAddsIndexes upgrades a table of the first version (gsi1
// only), as a persistent local stack may hold, to today's indexes.
func TestCreateTableAddsIndexes(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
	db := ddb.NewAt(cfg, endpoint)
	old := globalIndexes()[:1]
	_, err := db.CreateTable(ctx, &ddb.CreateTableInput{
		TableName: aws.String("old"), BillingMode: ddb.BillingModePayPerRequest,
		AttributeDefinitions: attributeDefinitions()[:4],
		KeySchema: []ddb.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: ddb.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: ddb.KeyTypeRange},
		},
		GlobalSecondaryIndexes: old,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := New(db, "old", 0)
	if err := s.CreateTable(ctx); err != nil {
		t.Fatalf("CreateTable on an old table: %v", err)
	}
	createKeys(t, s, "k")
	desc, err := db.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String("old")})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{indexGSI1, indexGSI2, indexGSI3} {
		if indexStatus(desc.Table, name) != ddb.IndexStatusActive {
			t.Errorf("index %s: status %q", name, indexStatus(desc.Table, name))
		}
	}
	ev := &ledger.Event{ID: "e", KeyID: "k", CustomID: "c", CreatedAt: time.Now().UnixMilli()}
	if err := record(ctx, s, ev); err != nil {
		t.Fatal(err)
	}
	for _, q := range []ledger.EventQuery{{CustomID: "c"}, {All: true, Start: time.Now().Add(-time.Hour), End: time.Now().Add(time.Hour)}} {
		if list, _, err := s.ListEvents(ctx, q); err != nil || fmt.Sprint(ids(list)) != "[e]" {
			t.Errorf("ListEvents(%+v) = %v, %v", q, ids(list), err)
		}
	}
}
