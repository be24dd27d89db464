package proxy_test

// Moderation strikes through the real proxy and admin handlers on DynamoDB
// Local: each flagged request of a key with moderation on is a strike; at
// the key's limit the key is suspended (401 key_suspended, nothing
// forwarded), the admin API shows why and which events, and PATCH
// {"suspended": false} lifts it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/infra/teststack"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/testclock"
)

// strikeEnv is one table, one fake upstream, the admin API and two proxies
// (two Lambda instances: the one that suspends a key and one that has the
// key cached from before).
type strikeEnv struct {
	t        *testing.T
	store    *dynamo.Store
	up       *fakeupstream.Server
	admin    http.Handler
	proxies  [2]*httptest.Server
	log      *bytes.Buffer
	logMu    *sync.Mutex
	provider string
}

func newStrikeEnv(t *testing.T, endpoint, table string) *strikeEnv {
	t.Helper()
	const providerKey = "sk-strikes-provider-key"
	clock := testclock.Running(testclock.Now(t))
	e := &strikeEnv{t: t, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	st := teststack.Start(t, teststack.Options{
		Endpoint: endpoint, Table: table, Now: clock.Now, Secrets: &edgeSecrets{values: map[string]string{}},
		Upstream: fakeupstream.Options{APIKey: providerKey, Interval: -1, Chunks: 2},
		AdminKey: edgeAdminKey,
		Admin:    func(c *admin.Config) { c.SecretPrefix = "stipend/strikes/" },
		Proxies:  len(e.proxies), Strikes: true,
		Proxy: func(c *proxy.Config) {
			c.KeyTTL = time.Hour // a cached key must not hide a suspension
			c.Log = slog.New(slog.NewTextHandler(lockedWriter{mu: e.logMu, w: e.log}, nil))
		},
	})
	e.store, e.up, e.admin = st.Store, st.Upstream, st.AdminHandler
	copy(e.proxies[:], st.Proxies)
	var prov struct{ ID string }
	e.adminJSON("POST", "/api/v1/providers", fmt.Sprintf(`{"name":"fake","provider":"openai","apiKey":%q,"baseUrl":%q}`,
		providerKey, st.UpstreamURL+"/v1"), http.StatusOK, &prov)
	e.provider = prov.ID
	return e
}

func (e *strikeEnv) adminJSON(method, path, body string, status int, out any) []byte {
	e.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+edgeAdminKey)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.admin.ServeHTTP(rec, req)
	if rec.Code != status {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, rec.Code, rec.Body, status)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			e.t.Fatal(err)
		}
	}
	return rec.Body.Bytes()
}

// keyState is what GET /api/v1/secret-keys/{keyId} shows of moderation.
type keyState struct {
	ModerationStrikeLimit int64    `json:"moderationStrikeLimit"`
	Suspended             bool     `json:"suspended"`
	SuspendedAt           int64    `json:"suspendedAt"`
	SuspendedReason       string   `json:"suspendedReason"`
	SuspendedEventIDs     []string `json:"suspendedEventIds"`
	ModerationStrikes     *int64   `json:"moderationStrikes"`
	FlaggedEventIDs       []string `json:"flaggedEventIds"`
}

func (e *strikeEnv) keyState(id string) keyState {
	e.t.Helper()
	var out []keyState
	e.adminJSON("GET", "/api/v1/secret-keys/"+id, "", http.StatusOK, &out)
	if len(out) != 1 || out[0].ModerationStrikes == nil {
		e.t.Fatalf("GET key %s: %+v", id, out)
	}
	return out[0]
}

// newKey creates a key with moderation on through the admin API.
func (e *strikeEnv) newKey(extra string) (id, plain string) {
	e.t.Helper()
	var k struct{ KeyID, Key string }
	e.adminJSON("POST", "/api/v1/secret-keys", fmt.Sprintf(`{"name":"strikes","providerSettingIds":[%q],"moderation":true%s}`,
		e.provider, extra), http.StatusOK, &k)
	return k.KeyID, k.Key
}

type strikeReply struct {
	status  int
	code    string
	message string
}

func (e *strikeEnv) chat(proxyIndex int, key, content string) strikeReply {
	e.t.Helper()
	body := fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":%q}]}`, content)
	req, _ := http.NewRequest("POST", e.proxies[proxyIndex].URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Error(err)
		return strikeReply{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(b, &eb)
	return strikeReply{resp.StatusCode, eb.Error.Code, eb.Error.Message}
}

// forwarded counts the chat completions and moderation calls upstream got.
func (e *strikeEnv) forwarded() (chats, moderations int) {
	for _, r := range e.up.Requests() {
		switch r.Path {
		case "/v1/chat/completions":
			chats++
		case "/v1/moderations":
			moderations++
		}
	}
	return chats, moderations
}

func (e *strikeEnv) suspensionsLogged() int {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return strings.Count(e.log.String(), `msg="key suspended"`)
}

// flaggedEvents lists the ids of key id's events refused as content_flagged.
func (e *strikeEnv) flaggedEvents(id string) []string {
	e.t.Helper()
	var page struct {
		Events []struct {
			ID, ErrorCode string
		} `json:"events"`
	}
	e.adminJSON("GET", "/api/v1/events?keyId="+id+"&limit=100", "", http.StatusOK, &page)
	var ids []string
	for _, ev := range page.Events {
		if ev.ErrorCode == "content_flagged" {
			ids = append(ids, ev.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestModerationStrikesSuspendAndLift(t *testing.T) {
	e := newStrikeEnv(t, localtest.StartDynamoDB(t), "strikes-lift")
	id, key := e.newKey("") // the default limit, 3
	if st := e.keyState(id); st.ModerationStrikeLimit != 3 || st.Suspended || *st.ModerationStrikes != 0 {
		t.Fatalf("a new key: %+v", st)
	}
	// Proxy 1 serves (and caches) the key before anything happens.
	if r := e.chat(1, key, "hello"); r.status != http.StatusOK {
		t.Fatalf("first request: %+v", r)
	}
	for i := 1; i <= 3; i++ {
		r := e.chat(0, key, "fake:flag something nasty")
		if r.status != http.StatusBadRequest || r.code != "content_flagged" || !strings.Contains(r.message, fmt.Sprintf("strike %d of 3", i)) {
			t.Fatalf("flagged request %d: %+v", i, r)
		}
		if i < 3 {
			if st := e.keyState(id); st.Suspended || *st.ModerationStrikes != int64(i) || len(st.FlaggedEventIDs) != i {
				t.Fatalf("after %d strikes: %+v", i, st)
			}
		}
	}
	chats, moderations := e.forwarded()
	if chats != 1 || moderations != 4 {
		t.Fatalf("upstream got %d chats and %d moderations, want 1 and 4 (flagged requests are never forwarded)", chats, moderations)
	}
	// The 4th request, clean, on both proxies: 401 key_suspended, nothing forwarded.
	for p := range e.proxies {
		if r := e.chat(p, key, "hello"); r.status != http.StatusUnauthorized || r.code != "key_suspended" {
			t.Fatalf("proxy %d after the 3rd strike: %+v", p, r)
		}
	}
	if c, m := e.forwarded(); c != chats || m != moderations {
		t.Fatalf("a suspended key's request reached upstream: %d chats, %d moderations", c, m)
	}
	st := e.keyState(id)
	flagged := e.flaggedEvents(id)
	if !st.Suspended || st.SuspendedAt == 0 || !strings.Contains(st.SuspendedReason, "3 requests flagged") ||
		*st.ModerationStrikes != 3 || !slices.Equal(sorted(st.SuspendedEventIDs), flagged) || len(flagged) != 3 ||
		!slices.Equal(sorted(st.FlaggedEventIDs), flagged) {
		t.Fatalf("the admin's view of the suspended key: %+v; flagged events %v", st, flagged)
	}
	if n := e.suspensionsLogged(); n != 1 {
		t.Fatalf("%d suspensions logged, want 1", n)
	}

	// Lifting: true is refused, false lifts and resets the strikes.
	e.adminJSON("PATCH", "/api/v1/secret-keys/"+id, `{"suspended":true}`, http.StatusBadRequest, nil)
	e.adminJSON("PATCH", "/api/v1/secret-keys/"+id, `{"suspended":false}`, http.StatusOK, nil)
	if st := e.keyState(id); st.Suspended || st.SuspendedAt != 0 || st.SuspendedReason != "" || *st.ModerationStrikes != 0 || len(st.FlaggedEventIDs) != 0 {
		t.Fatalf("after the lift: %+v", st)
	}
	for p := range e.proxies {
		if r := e.chat(p, key, "hello again"); r.status != http.StatusOK {
			t.Fatalf("proxy %d after the lift: %+v", p, r)
		}
	}
	if r := e.chat(0, key, "fake:flag again"); r.status != http.StatusBadRequest || !strings.Contains(r.message, "strike 1 of 3") {
		t.Fatalf("a strike after the lift starts from 1: %+v", r)
	}

	// A limit of its own, and a typo in it.
	e.adminJSON("PATCH", "/api/v1/secret-keys/"+id, `{"moderationStrikeLimit":0}`, http.StatusBadRequest, nil)
	e.adminJSON("PATCH", "/api/v1/secret-keys/"+id, `{"moderationStrikeLimit":2}`, http.StatusOK, nil)
	if r := e.chat(0, key, "fake:flag once more"); r.status != http.StatusBadRequest || !strings.Contains(r.message, "strike 2 of 2") {
		t.Fatalf("strike at a limit of 2: %+v", r)
	}
	if r := e.chat(1, key, "hello"); r.code != "key_suspended" {
		t.Fatalf("after 2 strikes with a limit of 2: %+v", r)
	}
}

// TestModerationStrikesConcurrent: 10 concurrent flagged requests on a key
// with a limit of 3 count every flagged request exactly once and suspend
// the key exactly once (one versioned write of its configuration).
func TestModerationStrikesConcurrent(t *testing.T) {
	e := newStrikeEnv(t, localtest.StartDynamoDB(t), "strikes-concurrent")
	id, key := e.newKey(`,"moderationStrikeLimit":3`)
	before, err := e.store.GetKey(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	replies := make([]strikeReply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { replies[i] = e.chat(i%2, key, fmt.Sprintf("fake:flag request %d", i)) })
	}
	wg.Wait()
	var flagged, suspended int
	for i, r := range replies {
		switch {
		case r.status == http.StatusBadRequest && r.code == "content_flagged":
			flagged++
		case r.status == http.StatusUnauthorized && r.code == "key_suspended":
			suspended++
		default:
			t.Errorf("request %d: %+v", i, r)
		}
	}
	st := e.keyState(id)
	after, err := e.store.GetKey(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	events := e.flaggedEvents(id)
	t.Logf("%d flagged, %d refused as suspended; %d strikes counted, %d flagged events, key version %d -> %d, %d suspensions logged",
		flagged, suspended, *st.ModerationStrikes, len(events), before.Version, after.Version, e.suspensionsLogged())
	switch {
	case flagged < 3 || flagged+suspended != n:
		t.Fatalf("%d flagged and %d suspended of %d", flagged, suspended, n)
	case *st.ModerationStrikes != int64(flagged) || len(events) != flagged || !slices.Equal(sorted(st.FlaggedEventIDs), events):
		t.Fatalf("strikes %d (%v), flagged answers %d, flagged events %v", *st.ModerationStrikes, st.FlaggedEventIDs, flagged, events)
	case !st.Suspended || after.Version != before.Version+1 || e.suspensionsLogged() != 1:
		t.Fatalf("suspended %v, version %d -> %d, %d suspensions logged: want one suspension", st.Suspended, before.Version, after.Version, e.suspensionsLogged())
	case len(st.SuspendedEventIDs) < 3:
		t.Fatalf("the suspension names %v", st.SuspendedEventIDs)
	}
	if c, _ := e.forwarded(); c != 0 {
		t.Fatalf("%d flagged or suspended requests reached the model", c)
	}
	// Which of the burst's requests came after the suspension landed is
	// timing; that every request after the burst is refused is not, on both
	// proxies, clean or flagged.
	for i, text := range []string{"hello", "fake:flag once more"} {
		if r := e.chat(i%2, key, text); r.status != http.StatusUnauthorized || r.code != "key_suspended" {
			t.Fatalf("after the burst, %q: %+v, want 401 key_suspended", text, r)
		}
	}
	if st := e.keyState(id); *st.ModerationStrikes != int64(flagged) {
		t.Fatalf("a refused request counted a strike: %d, want %d", *st.ModerationStrikes, flagged)
	}
}

// TestModerationTurnedOnAppliesAtNextRequest: a key cached without
// moderation is moderated at the next request once an admin turns it on.
// The reservation saw the new version and read the key again, but the
// request went on with the cached key, unmoderated, until the cache expired.
func TestModerationTurnedOnAppliesAtNextRequest(t *testing.T) {
	e := newStrikeEnv(t, localtest.StartDynamoDB(t), "strikes-turned-on")
	var k struct{ KeyID, Key string }
	e.adminJSON("POST", "/api/v1/secret-keys", fmt.Sprintf(`{"name":"late","providerSettingIds":[%q]}`, e.provider), http.StatusOK, &k)
	if r := e.chat(0, k.Key, "fake:flag before moderation"); r.status != http.StatusOK {
		t.Fatalf("without moderation: %+v", r)
	}
	e.adminJSON("PATCH", "/api/v1/secret-keys/"+k.KeyID, `{"moderation":true}`, http.StatusOK, nil)
	if r := e.chat(0, k.Key, "fake:flag after moderation"); r.status != http.StatusBadRequest || r.code != "content_flagged" {
		t.Fatalf("the request after moderation was turned on: %+v", r)
	}
}
