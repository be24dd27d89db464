package lambdatest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/provider"
)

// The fake upstream's stream: one content chunk every upstreamInterval.
const (
	upstreamKey      = "sk-upstream-lambdatest-0123456789"
	upstreamChunks   = 10
	upstreamInterval = 50 * time.Millisecond
	// minSpread is how long, at least, the streamed body must keep arriving
	// after its first event; the upstream spreads it over about
	// upstreamChunks*upstreamInterval (500 ms).
	minSpread = 200 * time.Millisecond
	// chatModel is the model the proxy events ask for.
	chatModel = "gpt-4o-mini"
)

// upstreamText is the completion the fake upstream generates.
func upstreamText() string {
	var b strings.Builder
	for i := 1; i <= upstreamChunks; i++ {
		fmt.Fprintf(&b, " word%d", i)
	}
	return b.String()
}

// chatChunk is the part of a chat.completion.chunk the test reads.
type chatChunk struct {
	Object  string `json:"object"`
	Choices []struct {
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
	// FakeSentUnixNano is when the fake upstream wrote a content chunk.
	FakeSentUnixNano int64 `json:"fake_sent_unix_nano"`
}

// lastChatRequest is the body of the last chat request upstream received.
func lastChatRequest(t *testing.T, up *fakeupstream.Server) map[string]any {
	t.Helper()
	reqs := up.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Path == "/v1/chat/completions" {
			if got := reqs[i].Header.Get("Authorization"); got != "Bearer "+upstreamKey {
				t.Errorf("upstream got Authorization %q, want the provider key from Secrets Manager", got)
			}
			var body map[string]any
			if err := json.Unmarshal(reqs[i].Body, &body); err != nil {
				t.Fatalf("upstream request body %q: %v", reqs[i].Body, err)
			}
			return body
		}
	}
	t.Fatal("upstream received no chat request")
	return nil
}

// flushEachWrite makes every write of h reach the client at once, so that
// the stream's timing is upstream's and what this test measures is the
// proxy and the Lambda path, whatever the fake's own flushing.
func flushEachWrite(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(flushWriter{w}, r)
	})
}

type flushWriter struct{ http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.ResponseWriter.Write(p)
	if err == nil {
		err = http.NewResponseController(f.ResponseWriter).Flush()
	}
	return n, err
}

func (f flushWriter) Flush() { _ = http.NewResponseController(f.ResponseWriter).Flush() }

func (f flushWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

func keyTotals(t *testing.T, st *stack, id string) ledger.Totals {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tot, err := st.store.KeyTotals(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return tot
}

func TestProxy(t *testing.T) {
	bootstrap(t, "proxy") // fail before starting any service
	st := newStack(t, true)
	up := fakeupstream.New(fakeupstream.Options{APIKey: upstreamKey, Interval: upstreamInterval, Chunks: upstreamChunks})
	upSrv := httptest.NewServer(flushEachWrite(up))
	t.Cleanup(upSrv.Close)

	arn := st.putSecret(t, secretPrefix+"fake-upstream", upstreamKey)
	now := time.Now().Unix()
	prov := &provider.Setting{
		ID: apikey.NewID(), Name: "fake-upstream", Provider: provider.OpenAI, // the fake speaks OpenAI; routing by model sends gpt-* there
		BaseURL: upSrv.URL + "/v1", SecretID: arn, CreatedAt: now, UpdatedAt: now,
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := st.store.CreateProvider(ctx, prov); err != nil {
		t.Fatal(err)
	}
	key := st.seedProxyKey(t, prov.ID)

	fn := startFunction(t, "proxy", st.env())

	proxyEvent := func(t *testing.T, name string) []byte {
		t.Helper()
		ev := readEvent(t, name)
		if got := eventHeader(t, ev, "authorization"); got != "Bearer "+proxyKey {
			t.Fatalf("%s: authorization %q, want the key the test seeds", name, got)
		}
		return ev
	}

	t.Run("chat-stream", func(t *testing.T) {
		res := fn.invoke(t, proxyEvent(t, "proxy/chat-stream.json"))
		p, off := streamed(t, res)
		if p.StatusCode != http.StatusOK {
			t.Fatalf("prelude statusCode = %d, want 200; body %q", p.StatusCode, res.Body[off:])
		}
		if ct := p.Headers["Content-Type"]; !strings.HasPrefix(ct, "text/event-stream") {
			t.Errorf("prelude Content-Type = %q, want text/event-stream (headers %v)", ct, p.Headers)
		}
		t.Logf("response mode header %s: %q (aws-lambda-go sends none; the content type marks a stream)", hdrResponseMode, res.ResponseMode)

		evs := parseSSE(t, res, off)
		if len(evs) == 0 || evs[len(evs)-1].Data != "[DONE]" {
			t.Fatalf("stream does not end with data: [DONE]: %q", res.Body[off:])
		}
		var text strings.Builder
		var firstContent, lastContent *sseEvent
		var firstSent, lastSent int64
		for i := range evs[:len(evs)-1] {
			var c chatChunk
			if err := json.Unmarshal([]byte(evs[i].Data), &c); err != nil {
				t.Fatalf("event %d %q: %v", i, evs[i].Data, err)
			}
			if c.Object != "chat.completion.chunk" {
				t.Errorf("event %d object = %q", i, c.Object)
			}
			if len(c.Choices) == 0 || (len(c.Usage) > 0 && string(c.Usage) != "null") {
				t.Errorf("event %d is usage the client did not ask for: %s", i, evs[i].Data)
			}
			for _, ch := range c.Choices {
				if ch.Delta.Content != nil {
					text.WriteString(*ch.Delta.Content)
				}
			}
			if c.FakeSentUnixNano != 0 {
				if firstContent == nil {
					firstContent, firstSent = &evs[i], c.FakeSentUnixNano
				}
				lastContent, lastSent = &evs[i], c.FakeSentUnixNano
			}
		}
		if got := text.String(); got != upstreamText() {
			t.Errorf("streamed text = %q, want %q", got, upstreamText())
		}
		if so, _ := lastChatRequest(t, up)["stream_options"].(map[string]any); so["include_usage"] != true {
			t.Errorf("upstream was not asked for usage (stream_options %v): the proxy would have to guess the spend", so)
		}

		// Incremental delivery: the body reached the runtime API over time,
		// event by event, not in one piece at the end.
		defer func() {
			if t.Failed() {
				logReads(t, res)
			}
		}()
		firstAt := arrival(t, res, evs[0].End-1)
		lastAt := res.Reads[len(res.Reads)-1].At
		bodyReads := 0
		for _, r := range res.Reads {
			if r.Off+r.N > off {
				bodyReads++
			}
		}
		rel := func(at time.Time) time.Duration { return at.Sub(res.Received).Round(time.Millisecond) }
		t.Logf("stream timing (from the POST to /response): first data event read at +%v, last byte at +%v (spread %v), %d reads with body data, %d events",
			rel(firstAt), rel(lastAt), lastAt.Sub(firstAt).Round(time.Millisecond), bodyReads, len(evs))
		if spread := lastAt.Sub(firstAt); spread < minSpread {
			t.Errorf("first data event arrived only %v before the end of the body, want >= %v: the stream was buffered", spread, minSpread)
		}
		if bodyReads < 3 {
			t.Errorf("the body arrived in %d reads, want several", bodyReads)
		}
		if firstContent == nil {
			t.Fatal("no content event carries fake_sent_unix_nano")
		}
		// Causality: the first word reached Lambda before upstream had even
		// produced the last one.
		firstContentAt := arrival(t, res, firstContent.End-1)
		lastSentAt := time.Unix(0, lastSent)
		t.Logf("first content event: sent by upstream at +%v, read at +%v; last content event: sent at +%v, read at +%v",
			rel(time.Unix(0, firstSent)), rel(firstContentAt), rel(lastSentAt), rel(arrival(t, res, lastContent.End-1)))
		if !firstContentAt.Before(lastSentAt) {
			t.Errorf("the first content event was read at +%v, not before upstream sent the last one at +%v: the stream was buffered",
				rel(firstContentAt), rel(lastSentAt))
		}

		// The event was recorded within the invocation, before the body ended.
		tot := keyTotals(t, st, key.ID)
		if tot.Requests != 1 || tot.Cost <= 0 || tot.CompletionTokens != upstreamChunks {
			t.Errorf("key totals after the stream = %+v, want 1 request, cost > 0, %d completion tokens", tot, upstreamChunks)
		}
	})

	t.Run("models", func(t *testing.T) {
		res := fn.invoke(t, proxyEvent(t, "proxy/models.json"))
		p, off := streamed(t, res)
		if p.StatusCode != http.StatusOK {
			t.Fatalf("prelude statusCode = %d, want 200; body %q", p.StatusCode, res.Body[off:])
		}
		if ct := p.Headers["Content-Type"]; !strings.HasPrefix(ct, "application/json") {
			t.Errorf("prelude Content-Type = %q, want application/json", ct)
		}
		var list struct {
			Object string `json:"object"`
			Data   []struct {
				ID     string `json:"id"`
				Object string `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(res.Body[off:], &list); err != nil {
			t.Fatalf("body %q: %v", res.Body[off:], err)
		}
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		if list.Object != "list" || !slices.Contains(ids, chatModel) {
			t.Errorf("models = %s, want a list including %s", res.Body[off:], chatModel)
		}
	})

	t.Run("chat-base64", func(t *testing.T) {
		before := keyTotals(t, st, key.ID)
		res := fn.invoke(t, proxyEvent(t, "proxy/chat-base64.json"))
		p, off := streamed(t, res)
		if p.StatusCode != http.StatusOK {
			t.Fatalf("prelude statusCode = %d, want 200; body %q", p.StatusCode, res.Body[off:])
		}
		if ct := p.Headers["Content-Type"]; !strings.HasPrefix(ct, "application/json") {
			t.Errorf("prelude Content-Type = %q, want application/json", ct)
		}
		var cc struct {
			Object  string `json:"object"`
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(res.Body[off:], &cc); err != nil {
			t.Fatalf("body %q: %v", res.Body[off:], err)
		}
		if cc.Object != "chat.completion" || len(cc.Choices) != 1 || cc.Choices[0].Message.Content != upstreamText() {
			t.Errorf("body = %s, want a chat.completion saying %q", res.Body[off:], upstreamText())
		}
		// The base64 body was decoded before it was forwarded.
		req := lastChatRequest(t, up)
		msgs, _ := req["messages"].([]any)
		if len(msgs) != 1 || req["stream"] != false || !strings.Contains(fmt.Sprint(msgs[0]), "Say hello") {
			t.Errorf("upstream request = %v, want the decoded non-streaming chat request", req)
		}
		after := keyTotals(t, st, key.ID)
		if after.Requests != before.Requests+1 || after.Cost <= before.Cost {
			t.Errorf("key totals %+v -> %+v, want one more request and more cost", before, after)
		}
	})
}
