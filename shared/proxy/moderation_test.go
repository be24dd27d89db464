package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/provider"
)

func TestModerationInput(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"messages":[{"role":"system","content":"be nice"},{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`, "be nice\nhello"},
		{`{"prompt":["a","b"]}`, "a\nb"},
		{`{"input":"hi","instructions":"answer briefly"}`, "hi\nanswer briefly"},
		{`{"model":"x"}`, ""},
		{`not json`, ""},
	}
	for _, tt := range tests {
		if got := moderationInput([]byte(tt.body)); got != tt.want {
			t.Errorf("moderationInput(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

// moderatingUpstream flags inputs that contain "forbidden" and answers chat
// requests otherwise; it counts chat requests.
func moderatingUpstream(t *testing.T, chats *int, moderationStatus int) http.HandlerFunc {
	chat := jsonBody(t, "chat.json")
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/moderations" {
			if r.Header.Get("Authorization") != "Bearer "+providerKey {
				t.Errorf("moderation call without the provider key")
			}
			if moderationStatus != 200 {
				w.WriteHeader(moderationStatus)
				return
			}
			var req struct{ Model, Input string }
			json.NewDecoder(r.Body).Decode(&req)
			flagged := strings.Contains(req.Input, "forbidden")
			json.NewEncoder(w).Encode(map[string]any{"results": []any{map[string]any{
				"flagged": flagged, "categories": map[string]bool{"harassment": flagged, "violence": false},
			}}})
			return
		}
		*chats++
		chat(w, r)
	}
}

func TestModeration(t *testing.T) {
	tests := []struct {
		name       string
		moderation bool
		content    string
		modStatus  int
		status     int
		code       string
		forwarded  bool
	}{
		{"clean input passes", true, "hello", 200, 200, "", true},
		{"flagged input is refused", true, "something forbidden", 200, 400, "content_flagged", false},
		{"moderation off: not screened", false, "something forbidden", 200, 200, "", true},
		{"moderation unavailable: fail closed", true, "hello", 500, 502, "upstream_error", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chats := 0
			e := newEnv(t, moderatingUpstream(t, &chats, tt.modStatus), func(k *apikey.Key) { k.Moderation = tt.moderation })
			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key,
				`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+tt.content+`"}]}`)
			if resp.StatusCode != tt.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if tt.code != "" {
				if got := errorCode(t, resp); got != tt.code {
					t.Fatalf("code %q, want %q", got, tt.code)
				}
			}
			ev := e.store.waitEvent(t)
			if (chats == 1) != tt.forwarded {
				t.Fatalf("forwarded %d times", chats)
			}
			if !tt.forwarded && (ev.Cost != 0 || ev.Status != tt.status || ev.ErrorCode != tt.code && tt.code != "") {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

// TestModerationThroughAnotherSetting: an Azure setting has no moderation
// endpoint, so a moderated key's input is screened by one of its settings
// that has (OpenAI's); with none, the request is refused, not sent
// unscreened.
func TestModerationThroughAnotherSetting(t *testing.T) {
	for _, tt := range []struct {
		name     string
		settings []string
		content  string
		status   int
	}{
		{"screened by the OpenAI setting, clean", []string{"az", "p1"}, "hello", 200},
		{"screened by the OpenAI setting, flagged", []string{"az", "p1"}, "something forbidden", 400},
		{"no setting can screen", []string{"az"}, "hello", 502},
	} {
		t.Run(tt.name, func(t *testing.T) {
			chats := 0
			e := newEnv(t, moderatingUpstream(t, &chats, 200), func(k *apikey.Key) { k.Moderation = true; k.SettingIDs = tt.settings })
			e.store.providers["az"] = &provider.Setting{ID: "az", Provider: provider.Azure, BaseURL: e.upstream.URL, APIVersion: "2024-10-21", SecretID: "sec1"}
			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key,
				`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+tt.content+`"}]}`)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || tt.status != 200 && chats != 0 {
				t.Fatalf("status %d, want %d (%d forwarded): %s", resp.StatusCode, tt.status, chats, b)
			}
		})
	}
}
