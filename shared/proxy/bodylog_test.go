package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/pricing"
)

func TestBodyLogUnit(t *testing.T) {
	both := &apikey.Key{ShouldLogRequest: true, ShouldLogResponse: true}
	tests := []struct {
		name     string
		key      *apikey.Key
		limit    int
		received string
		sent     []string
		want     ledger.Event // only the body fields
	}{
		{name: "logging off", key: &apikey.Key{}, received: "req", sent: []string{"resp"}},
		{name: "request only", key: &apikey.Key{ShouldLogRequest: true}, received: "req", sent: []string{"resp"},
			want: ledger.Event{RequestBody: "req", RequestBodyBytes: 3}},
		{name: "response only, in pieces", key: &apikey.Key{ShouldLogResponse: true}, received: "req", sent: []string{"re", "", "sp"},
			want: ledger.Event{ResponseBody: "resp", ResponseBodyBytes: 4}},
		{name: "both, exactly at the limit", key: both, limit: 4, received: "abcd", sent: []string{"ab", "cd"},
			want: ledger.Event{RequestBody: "abcd", RequestBodyBytes: 4, ResponseBody: "abcd", ResponseBodyBytes: 4}},
		{name: "both, over the limit", key: both, limit: 4, received: "abcdefgh", sent: []string{"abc", "def", "ghi"},
			want: ledger.Event{RequestBody: "abcd", RequestBodyTruncated: true, RequestBodyBytes: 8,
				ResponseBody: "abcd", ResponseBodyTruncated: true, ResponseBodyBytes: 9}},
		{name: "cut before a character that straddles the limit", key: both, limit: 4, received: "abc€", sent: []string{"ab", "c€"},
			want: ledger.Event{RequestBody: "abc", RequestBodyTruncated: true, RequestBodyBytes: 6,
				ResponseBody: "abc", ResponseBodyTruncated: true, ResponseBodyBytes: 6}},
		{name: "empty bodies", key: both, want: ledger.Event{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newBodyLog(tt.key, tt.limit, []byte(tt.received))
			if (l == nil) != (!tt.key.ShouldLogRequest && !tt.key.ShouldLogResponse) {
				t.Fatalf("newBodyLog = %v for %+v", l, tt.key)
			}
			for _, s := range tt.sent {
				l.sent([]byte(s))
			}
			var ev ledger.Event
			l.record(&ev)
			if ev != tt.want {
				t.Errorf("event bodies = %+v\nwant %+v", ev, tt.want)
			}
		})
	}

	t.Run("limits", func(t *testing.T) {
		big := strings.Repeat("x", ledger.MaxBodyBytes+10)
		for _, tt := range []struct {
			limit, want int
		}{{0, ledger.DefaultBodyBytes}, {-1, ledger.DefaultBodyBytes}, {10, 10}, {1 << 30, ledger.MaxBodyBytes}} {
			l := newBodyLog(both, tt.limit, []byte(big))
			l.Write([]byte(big))
			var ev ledger.Event
			l.record(&ev)
			if len(ev.RequestBody) != tt.want || len(ev.ResponseBody) != tt.want || !ev.RequestBodyTruncated || ev.ResponseBodyBytes != int64(len(big)) {
				t.Errorf("limit %d: kept %d and %d bytes (truncated %v, size %d), want %d", tt.limit,
					len(ev.RequestBody), len(ev.ResponseBody), ev.RequestBodyTruncated, ev.ResponseBodyBytes, tt.want)
			}
		}
	})

	t.Run("the request is copied", func(t *testing.T) {
		received := []byte("abc")
		l := newBodyLog(both, 10, received)
		copy(received, "xyz")
		var ev ledger.Event
		l.record(&ev)
		if ev.RequestBody != "abc" {
			t.Errorf("RequestBody = %q", ev.RequestBody)
		}
	})
}

// newBodyEnv is newEnv with the proxy's MaxLoggedBodyBytes set to limit.
func newBodyEnv(t *testing.T, upstream http.HandlerFunc, limit int, mutate ...func(*apikey.Key)) *env {
	t.Helper()
	e := newEnv(t, upstream, mutate...)
	prices, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{
		Keys: e.store, Providers: e.store, Limiter: e.store, Owners: e.store,
		Secrets: fakeSecrets{"sec1": providerKey}, Prices: prices, Tokenizer: wordTokenizer{},
		IdleTimeout: 2 * time.Second, MaxBodyBytes: 1 << 16, MaxLoggedBodyBytes: limit,
	})
	e.proxy.Close()
	e.proxy = httptest.NewServer(h)
	t.Cleanup(e.proxy.Close)
	return e
}

func logs(req, resp bool) func(*apikey.Key) {
	return func(k *apikey.Key) { k.ShouldLogRequest, k.ShouldLogResponse = req, resp }
}

// TestBodiesInEvents checks that an event carries exactly the request the
// client sent and the response it received, and only when the key says so.
func TestBodiesInEvents(t *testing.T) {
	const streamReq = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	const jsonReq = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	upstreamError := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"bad","type":"invalid_request_error","code":"x"}}`)
	}
	tests := []struct {
		name          string
		upstream      func(t *testing.T) http.HandlerFunc
		body          string
		logReq, logRe bool
	}{
		{"stream, both", func(t *testing.T) http.HandlerFunc { return replay(t, "chat_stream.sse") }, streamReq, true, true},
		{"stream, request only", func(t *testing.T) http.HandlerFunc { return replay(t, "chat_stream.sse") }, streamReq, true, false},
		{"stream, response only", func(t *testing.T) http.HandlerFunc { return replay(t, "chat_stream.sse") }, streamReq, false, true},
		{"stream, neither", func(t *testing.T) http.HandlerFunc { return replay(t, "chat_stream.sse") }, streamReq, false, false},
		{"json, both", func(t *testing.T) http.HandlerFunc { return jsonBody(t, "chat.json") }, jsonReq, true, true},
		{"json, neither", func(t *testing.T) http.HandlerFunc { return jsonBody(t, "chat.json") }, jsonReq, false, false},
		{"upstream error, both", func(*testing.T) http.HandlerFunc { return upstreamError }, jsonReq, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.upstream(t), logs(tt.logReq, tt.logRe))
			resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, tt.body)
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			ev := e.store.waitEvent(t)
			wantReq, wantResp := "", ""
			if tt.logReq {
				wantReq = tt.body
			}
			if tt.logRe {
				wantResp = string(got)
			}
			if ev.RequestBody != wantReq || ev.RequestBodyBytes != int64(len(wantReq)) || ev.RequestBodyTruncated {
				t.Errorf("request body %q (%d bytes, truncated %v), want %q", ev.RequestBody, ev.RequestBodyBytes, ev.RequestBodyTruncated, wantReq)
			}
			if ev.ResponseBody != wantResp || ev.ResponseBodyBytes != int64(len(wantResp)) || ev.ResponseBodyTruncated {
				t.Errorf("response body %q (%d bytes, truncated %v), want what the client got: %q", ev.ResponseBody, ev.ResponseBodyBytes, ev.ResponseBodyTruncated, wantResp)
			}
			if tt.logRe && strings.Contains(tt.body, `"stream":true`) && strings.Contains(ev.ResponseBody, `"choices":[],"usage"`) {
				t.Errorf("the usage chunk the client did not ask for (and never got) is in the log")
			}
			for _, secret := range []string{providerKey, e.key} {
				if strings.Contains(ev.RequestBody+ev.ResponseBody, secret) {
					t.Errorf("a logged body contains a secret")
				}
			}
		})
	}
}

func TestBodiesTruncatedAtTheLimit(t *testing.T) {
	const limit = 100
	response := `{"id":"x","choices":[{"message":{"content":"` + strings.Repeat("a", 400) + `"}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}`
	upstream := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, response)
	}
	e := newBodyEnv(t, upstream, limit, logs(true, true))
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("q", 300) + `"}]}`
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, body)
	if got, _ := io.ReadAll(resp.Body); string(got) != response {
		t.Fatalf("the client got %d bytes, want all %d", len(got), len(response))
	}
	ev := e.store.waitEvent(t)
	if ev.RequestBody != body[:limit] || !ev.RequestBodyTruncated || ev.RequestBodyBytes != int64(len(body)) {
		t.Errorf("request: kept %q, truncated %v, size %d", ev.RequestBody, ev.RequestBodyTruncated, ev.RequestBodyBytes)
	}
	if ev.ResponseBody != response[:limit] || !ev.ResponseBodyTruncated || ev.ResponseBodyBytes != int64(len(response)) {
		t.Errorf("response: kept %q, truncated %v, size %d", ev.ResponseBody, ev.ResponseBodyTruncated, ev.ResponseBodyBytes)
	}
	if ev.Usage.PromptTokens != 3 || ev.Estimated {
		t.Errorf("metering must read the whole response, not the logged prefix: %+v", ev.Usage)
	}
}

// TestLoggedStreamStillEventByEvent is TestStreamsEachEventImmediately with
// both bodies logged: upstream sends each event only after the client has
// received the one before, so any buffering would stall the stream.
func TestLoggedStreamStillEventByEvent(t *testing.T) {
	const n = 5
	received := make(chan int, n)
	upstream := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 0; i < n; i++ {
			io.WriteString(w, `data: {"choices":[{"delta":{"content":"x"}}]}`+"\n\n")
			rc.Flush()
			select {
			case got := <-received:
				if got != i {
					t.Errorf("client got event %d, upstream sent %d", got, i)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("event %d never reached the client: the proxy buffers", i)
				return
			}
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}
	e := newBodyEnv(t, upstream, 64, logs(true, true)) // a small limit: most events come after it
	resp := e.do("POST", "/v1/chat/completions", "Bearer "+e.key, `{"model":"gpt-4o-mini","stream":true,"messages":[]}`)
	br := bufio.NewReader(resp.Body)
	var all strings.Builder
	i := 0
	for {
		line, err := br.ReadString('\n')
		all.WriteString(line)
		if strings.HasPrefix(line, "data: {") {
			received <- i
			i++
		}
		if err != nil {
			break
		}
	}
	if i != n {
		t.Fatalf("client got %d events, want %d", i, n)
	}
	ev := e.store.waitEvent(t)
	if got := all.String(); ev.ResponseBody != got[:64] || !ev.ResponseBodyTruncated || ev.ResponseBodyBytes != int64(len(got)) {
		t.Errorf("response log %q (truncated %v, %d bytes); the client got %d bytes", ev.ResponseBody, ev.ResponseBodyTruncated, ev.ResponseBodyBytes, len(got))
	}
}
