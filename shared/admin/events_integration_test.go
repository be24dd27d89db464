package admin_test

// The forum's abuse-tracing story end to end: students' keys with
// shouldLogRequest / shouldLogResponse send requests through the real proxy
// to DynamoDB Local; the admin lists them by user, by custom id and all
// together, page by page, with the bodies exactly as they went through.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/teststack"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/user"
)

func TestEventsEndToEnd(t *testing.T) {
	ctx := context.Background()
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+rtUpstreamKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, word := range []string{"Sure", ", here", " it is"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", word)
			http.NewResponseController(w).Flush()
		}
		io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n")
	})
	st := teststack.Start(t, teststack.Options{
		Table: "events-it", Upstream: fakeupstream.Options{APIKey: rtUpstreamKey},
		WrapUpstream: func(http.Handler) http.Handler { return upstream },
		ProviderID:   rtProviderID, SecretID: rtSecretID, AdminKey: rtAdminKey,
		Admin: func(c *admin.Config) { c.SecretPrefix = "stipend/it/" },
	})
	store, px, adm := st.Store, st.Proxy, st.Admin
	now := time.Now()
	if err := store.CreateUser(ctx, &user.User{ID: apikey.NewID(), UserID: "student-7", Name: "Student 7", CreatedAt: now.Unix()}); err != nil {
		t.Fatal(err)
	}
	newKey := func(userID string, logBodies bool) string {
		id, plain := apikey.Generate()
		if err := store.CreateKey(ctx, &apikey.Key{ID: id, Name: id, Hash: apikey.Hash(plain), SettingIDs: []string{rtProviderID},
			UserID: userID, ShouldLogRequest: logBodies, ShouldLogResponse: logBodies, CreatedAt: now.Unix()}); err != nil {
			t.Fatal(err)
		}
		return plain
	}

	logged1, logged2, quiet := newKey("student-7", true), newKey("student-7", true), newKey("", false)
	type sent struct{ key, customID, body, got string }
	var requests []sent
	for i, k := range []string{logged1, quiet, logged2, logged1, quiet} {
		body := fmt.Sprintf(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"question %d"}]}`, i)
		req, _ := http.NewRequest("POST", px.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+k)
		customID := fmt.Sprintf("run-%d", i%2)
		req.Header.Set("X-Custom-Id", customID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, got)
		}
		requests = append(requests, sent{k, customID, body, string(got)})
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}

	type event struct {
		ID, KeyID, UserID, CustomID string
		RequestBody, ResponseBody   string
		RequestBodyBytes            int64
		CreatedAt, CreatedAtMs      int64
	}
	get := func(path string) (int, []event, *string) {
		t.Helper()
		req, _ := http.NewRequest("GET", adm.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+rtAdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page struct {
			Events     []event `json:"events"`
			NextCursor *string `json:"nextCursor"`
		}
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, page.Events, page.NextCursor
	}
	// Every event, two a page, newest first.
	var all []event
	path := "/api/v1/events?all=true&limit=2"
	for i := 0; ; i++ {
		status, events, next := get(path)
		if status != 200 || i > 5 {
			t.Fatalf("GET %s: %d (page %d)", path, status, i)
		}
		all = append(all, events...)
		if next == nil {
			break
		}
		path = "/api/v1/events?all=true&limit=2&cursor=" + url.QueryEscape(*next)
	}
	if len(all) != len(requests) {
		t.Fatalf("listed %d events, sent %d requests", len(all), len(requests))
	}
	for i, ev := range all {
		r := requests[len(requests)-1-i]
		if i > 0 && ev.CreatedAtMs > all[i-1].CreatedAtMs {
			t.Errorf("not newest first: %d after %d", ev.CreatedAtMs, all[i-1].CreatedAtMs)
		}
		if ev.CustomID != r.customID || ev.CreatedAt != ev.CreatedAtMs/1000 {
			t.Errorf("event %d = %+v", i, ev)
		}
		wantReq, wantResp := "", ""
		if r.key != quiet {
			wantReq, wantResp = r.body, r.got
		}
		if ev.RequestBody != wantReq || ev.ResponseBody != wantResp {
			t.Errorf("event %d bodies = %q / %q, want %q / %q", i, ev.RequestBody, ev.ResponseBody, wantReq, wantResp)
		}
		if strings.Contains(ev.RequestBody+ev.ResponseBody, rtUpstreamKey) || strings.Contains(ev.RequestBody+ev.ResponseBody, r.key) {
			t.Errorf("event %d holds a key", i)
		}
	}

	for _, tc := range []struct {
		query string
		want  int
	}{{"userId=student-7", 3}, {"customId=run-0", 3}, {"customId=run-0&userId=student-7", 2}} {
		status, events, next := get("/api/v1/events?" + tc.query)
		if status != 200 || len(events) != tc.want || next != nil {
			t.Errorf("%s: %d, %d events, next %v; want %d", tc.query, status, len(events), next, tc.want)
		}
	}
	_, first, next := get("/api/v1/events?userId=student-7&limit=1")
	if len(first) != 1 || next == nil {
		t.Fatalf("first page: %v, %v", first, next)
	}
	if status, _, _ := get("/api/v1/events?customId=run-0&limit=1&cursor=" + url.QueryEscape(*next)); status != 400 {
		t.Errorf("a cursor of another query: %d, want 400", status)
	}
	if status, _, _ := get("/api/v1/events?userId=student-7&cursor=" + url.QueryEscape(*next+"x")); status != 400 {
		t.Errorf("a tampered cursor: %d, want 400", status)
	}
}
