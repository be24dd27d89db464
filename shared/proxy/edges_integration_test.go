package proxy_test

// Integration tests of "Clear, honest errors on the proxy": the real proxy
// and admin handlers over one table in DynamoDB Local, an in-process
// Secrets Manager, the real price table and tokenizer, and the fake
// upstream behind a switch that accepts one provider key at a time.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/infra/teststack"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/cache"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/testclock"
	"github.com/stipend/stipend/shared/tokenizer"
)

const edgeAdminKey = "edge-admin-key"

// edgeSecrets is an in-process Secrets Manager: admin puts, the proxy gets.
type edgeSecrets struct {
	mu     sync.Mutex
	values map[string]string
}

func (s *edgeSecrets) Put(_ context.Context, name, value string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values["arn:edge:"+name] = value
	return "arn:edge:" + name, nil
}

func (s *edgeSecrets) Get(_ context.Context, id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[id]
	if !ok {
		return "", fmt.Errorf("no secret %q", id)
	}
	return v, nil
}

// countingTokenizer counts how often the proxy tokenizes a prompt.
type countingTokenizer struct {
	proxy.Tokenizer
	prompts atomic.Int64
}

func (c *countingTokenizer) Prompt(encoding, path string, body []byte) (int64, error) {
	c.prompts.Add(1)
	return c.Tokenizer.Prompt(encoding, path, body)
}

// keySwitch is the provider's side of its API key: it accepts only the
// current one (401 in OpenAI's shape otherwise) and counts requests.
type keySwitch struct {
	accepted atomic.Value // string
	requests atomic.Int64
	next     http.Handler
}

func (k *keySwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.requests.Add(1)
	if r.Header.Get("Authorization") != "Bearer "+k.accepted.Load().(string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		// What OpenAI says, with the tail of the key it was given.
		auth := r.Header.Get("Authorization")
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided: sk-...`+auth[max(len(auth)-4, 0):]+
			`. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
		return
	}
	k.next.ServeHTTP(w, r)
}

type edgeEnv struct {
	t          *testing.T
	store      *dynamo.Store
	secrets    *edgeSecrets
	tok        *countingTokenizer
	up         *keySwitch
	upURL      string
	proxy      *httptest.Server
	admin      http.Handler
	log        *bytes.Buffer // the proxy's log
	logMu      *sync.Mutex
	providerID string
	clock      *testclock.Clock
}

// newEdgeEnv builds admin and proxy over one new table; the provider
// setting is created through the admin API with providerKey, which the
// upstream accepts.
func newEdgeEnv(t *testing.T, endpoint, table, providerKey string) *edgeEnv {
	t.Helper()
	e := &edgeEnv{t: t, secrets: &edgeSecrets{values: map[string]string{}},
		tok: &countingTokenizer{Tokenizer: tokenizer.New()}, clock: testclock.Running(testclock.Now(t)),
		log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	st := teststack.Start(t, teststack.Options{
		Endpoint: endpoint, Table: table, Now: e.clock.Now, Secrets: e.secrets,
		Upstream: fakeupstream.Options{Interval: time.Millisecond, Chunks: itChunks},
		WrapUpstream: func(fake http.Handler) http.Handler {
			e.up = &keySwitch{next: fake}
			e.up.accepted.Store(providerKey)
			return e.up
		},
		AdminKey: edgeAdminKey,
		Admin:    func(c *admin.Config) { c.SecretPrefix = "stipend/edge/providers/" },
		Proxy: func(c *proxy.Config) {
			// As functions/proxy wires it: Secrets Manager behind a 5-minute cache.
			c.Secrets = cache.New(5*time.Minute, e.secrets.Get)
			c.Tokenizer = e.tok
			c.Log = slog.New(slog.NewTextHandler(lockedWriter{mu: e.logMu, w: e.log}, nil))
		},
	})
	e.store, e.upURL, e.admin, e.proxy = st.Store, st.UpstreamURL, st.AdminHandler, st.Proxy
	var prov struct{ ID string }
	e.adminCall("POST", "/api/v1/providers", fmt.Sprintf(`{"name":"fake","provider":"openai","apiKey":%q,"baseUrl":%q}`,
		providerKey, e.upURL+"/v1"), &prov)
	e.providerID = prov.ID
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *edgeEnv) logText() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.log.String()
}

func (e *edgeEnv) adminCall(method, path, body string, out any) {
	e.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+edgeAdminKey)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.admin.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *edgeEnv) newKey(mutate func(*apikey.Key)) itKey {
	e.t.Helper()
	id, plain := apikey.Generate()
	k := &apikey.Key{ID: id, Name: "edge-" + id[:6], Hash: apikey.Hash(plain), SettingIDs: []string{e.providerID}, CreatedAt: e.clock.Now().Unix()}
	if mutate != nil {
		mutate(k)
	}
	if err := e.store.CreateKey(context.Background(), k); err != nil {
		e.t.Fatal(err)
	}
	return itKey{id: id, plain: plain}
}

// edgeReply is what a client saw.
type edgeReply struct {
	status int
	header http.Header
	body   []byte
	err    struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	}
}

func (e *edgeEnv) call(method, path, key string, body []byte) edgeReply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.proxy.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	r := edgeReply{status: resp.StatusCode, header: resp.Header}
	if r.body, err = io.ReadAll(resp.Body); err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(r.body, &eb); err != nil {
			e.t.Fatalf("%s %s: error body %q: %v", method, path, r.body, err)
		}
		_ = json.Unmarshal(eb.Error, &r.err)
	}
	return r
}

// events returns key's events, oldest first.
func (e *edgeEnv) events(key itKey) []*ledger.Event {
	e.t.Helper()
	var out []*ledger.Event
	err := e.store.Events(context.Background(), key.id, time.Unix(0, 0), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), func(ev *ledger.Event) error {
		out = append(out, ev)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// nothingCharged fails unless key has no committed spend, no counted
// request, no event, and the table no open reservation.
func (e *edgeEnv) nothingCharged(key itKey) {
	e.t.Helper()
	tot, err := e.store.KeyTotals(context.Background(), key.id)
	if err != nil {
		e.t.Fatal(err)
	}
	if tot.Committed != 0 || tot.Cost != 0 || tot.Requests != 0 {
		e.t.Errorf("key totals %+v, want nothing committed or counted", tot)
	}
	if evs := e.events(key); len(evs) != 0 {
		e.t.Errorf("%d events recorded, first %+v", len(evs), evs[0])
	}
	open, err := e.store.StaleReservations(context.Background(), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		e.t.Fatal(err)
	}
	if len(open) != 0 {
		e.t.Errorf("%d reservations open", len(open))
	}
}

func chat(extra string) []byte {
	return []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]` + extra + `}`)
}

func TestIntegrationEdges(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)

	t.Run("bad input refused before anything", func(t *testing.T) {
		e := newEdgeEnv(t, endpoint, "edge-bad-input", "sk-provider-good-0001")
		key := e.newKey(func(k *apikey.Key) {
			k.CostLimitLifetime = money.Dollar
			k.RateLimitOverTime, k.RateLimitUnit = 1000, "m"
		})
		huge := strings.Repeat("abcdefgh ", 130_000) // 1.17 MB of text: far beyond 128k tokens
		tests := []struct {
			name, path string
			body       []byte
			param      string
			message    string
		}{
			// Valid JSON, wrong types.
			{"stream yes", "/v1/chat/completions", chat(`,"stream":"yes"`), "stream", "stream must be a boolean"},
			{"max_tokens string", "/v1/chat/completions", chat(`,"max_tokens":"100"`), "max_tokens", "max_tokens must be an integer"},
			{"max_tokens fraction", "/v1/chat/completions", chat(`,"max_tokens":1.5`), "max_tokens", "max_tokens must be an integer"},
			{"model number", "/v1/chat/completions", []byte(`{"model":5,"messages":[]}`), "model", "model must be a string"},
			{"messages string", "/v1/chat/completions", []byte(`{"model":"gpt-4o-mini","messages":"hi"}`), "messages", "messages must be an array"},
			{"message string", "/v1/chat/completions", []byte(`{"model":"gpt-4o-mini","messages":["hi"]}`), "messages", "messages[0] must be an object"},
			{"message content number", "/v1/chat/completions", []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":5}]}`), "", "messages[0].content"},
			{"message role number", "/v1/chat/completions", []byte(`{"model":"gpt-4o-mini","messages":[{"role":5,"content":"hi"}]}`), "messages.role", "messages.role has the wrong type"},
			{"n string", "/v1/chat/completions", chat(`,"n":"2"`), "n", "n must be an integer"},
			{"stream_options bool", "/v1/chat/completions", chat(`,"stream":true,"stream_options":true`), "stream_options", "stream_options must be an object"},
			{"include_usage string", "/v1/chat/completions", chat(`,"stream":true,"stream_options":{"include_usage":"yes"}`), "stream_options.include_usage", "stream_options.include_usage must be a boolean"},
			{"tools object", "/v1/chat/completions", chat(`,"tools":{}`), "tools", "tools must be an array"},
			{"max_completion_tokens string", "/v1/chat/completions", chat(`,"max_completion_tokens":"5"`), "max_completion_tokens", "max_completion_tokens must be an integer"},
			{"responses input number", "/v1/responses", []byte(`{"model":"gpt-4o-mini","input":5}`), "input", "input must be a string or an array"},
			{"responses max_output_tokens string", "/v1/responses", []byte(`{"model":"gpt-4o-mini","input":"hi","max_output_tokens":"9"}`), "max_output_tokens", "max_output_tokens must be an integer"},
			{"completions prompt number", "/v1/completions", []byte(`{"model":"gpt-3.5-turbo-instruct","prompt":5}`), "prompt", "prompt must be a string or an array"},
			{"embeddings input object", "/v1/embeddings", []byte(`{"model":"text-embedding-3-small","input":{}}`), "input", "input must be a string or an array"},
			// Values the provider would refuse.
			{"max_tokens 0", "/v1/chat/completions", chat(`,"max_tokens":0`), "max_tokens", "max_tokens must be at least 1"},
			{"max_tokens negative", "/v1/chat/completions", chat(`,"max_tokens":-5`), "max_tokens", "max_tokens must be at least 1"},
			{"max_tokens above model", "/v1/chat/completions", chat(`,"max_tokens":16385`), "max_tokens", "max_tokens must be at most 16384"},
			{"max_completion_tokens 0", "/v1/chat/completions", chat(`,"max_completion_tokens":0`), "max_completion_tokens", "at least 1"},
			{"max_completion_tokens above model", "/v1/chat/completions", chat(`,"max_completion_tokens":1000000`), "max_completion_tokens", "at most 16384"},
			{"max_output_tokens 0", "/v1/responses", []byte(`{"model":"gpt-4o-mini","input":"hi","max_output_tokens":0}`), "max_output_tokens", "at least 1"},
			{"max_output_tokens above model", "/v1/responses", []byte(`{"model":"gpt-4o-mini","input":"hi","max_output_tokens":20000}`), "max_output_tokens", "at most 16384"},
			{"completions max_tokens above model", "/v1/completions", []byte(`{"model":"gpt-3.5-turbo-instruct","prompt":"hi","max_tokens":5000}`), "max_tokens", "at most 4096"},
			{"n 0", "/v1/chat/completions", chat(`,"n":0`), "n", "n must be from 1 to 128"},
			{"n absurd", "/v1/chat/completions", chat(`,"n":100000`), "n", "n must be from 1 to 128"},
			{"best_of 0", "/v1/completions", []byte(`{"model":"gpt-3.5-turbo-instruct","prompt":"hi","best_of":0}`), "best_of", "best_of must be from 1 to 128"},
			{"invalid UTF-8", "/v1/chat/completions", []byte("{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}"), "", "not valid UTF-8"},
			{"prompt far beyond the context window", "/v1/chat/completions", []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + huge + `"}]}`), "messages", "far longer than gpt-4o-mini's context window of 128000 tokens"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.call("POST", tt.path, key.plain, tt.body)
				if r.status != http.StatusBadRequest || r.err.Code != "invalid_request" || r.err.Type != "invalid_request_error" {
					t.Fatalf("%d %s: want 400 invalid_request", r.status, r.body)
				}
				if !strings.Contains(r.err.Message, tt.message) {
					t.Errorf("message %q, want it to say %q", r.err.Message, tt.message)
				}
				for _, leak := range []string{"not valid JSON", "json:", "Go ", "unmarshal", "tokenizer", "[]", "proxy."} {
					if strings.Contains(r.err.Message, leak) {
						t.Errorf("message %q shows %q", r.err.Message, leak)
					}
				}
				if tt.param != "" && (r.err.Param == nil || *r.err.Param != tt.param) {
					t.Errorf("param %v, want %q", r.err.Param, tt.param)
				}
			})
		}
		if n := e.up.requests.Load(); n != 0 {
			t.Errorf("upstream saw %d requests", n)
		}
		e.nothingCharged(key)
		// Everything above but the nested content types was refused before
		// the tokenizer ran, the multi-megabyte prompt included.
		if n := e.tok.prompts.Load(); n > 2 {
			t.Errorf("the tokenizer ran %d times", n)
		}
		// A good request still goes through.
		if r := e.call("POST", "/v1/chat/completions", key.plain, chat(`,"max_tokens":16384,"n":1`)); r.status != http.StatusOK {
			t.Fatalf("good request: %d %s", r.status, r.body)
		}
	})

	t.Run("upstream 401 is the instructor's problem", func(t *testing.T) {
		const wrong = "sk-teacher-revoked-key-wxyz"
		e := newEdgeEnv(t, endpoint, "edge-upstream-auth", "sk-provider-good-0002")
		e.adminCall("PATCH", "/api/v1/providers/"+e.providerID, `{"apiKey":"`+wrong+`"}`, nil)
		key := e.newKey(func(k *apikey.Key) { k.CostLimitLifetime = money.Dollar })
		screened := e.newKey(func(k *apikey.Key) { k.Moderation = true })
		for _, tt := range []struct {
			name string
			key  itKey
			body []byte
		}{
			{"streamed", key, chat(`,"stream":true`)},
			{"not streamed", key, chat("")},
			{"moderation screening", screened, chat("")},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := e.call("POST", "/v1/chat/completions", tt.key.plain, tt.body)
				if r.status != http.StatusBadGateway || r.err.Code != "upstream_auth_error" ||
					r.err.Message != "the provider rejected the proxy's credentials; tell your instructor" || r.err.Type != "server_error" {
					t.Fatalf("%d %s: want 502 upstream_auth_error", r.status, r.body)
				}
				if strings.Contains(string(r.body), "wxyz") || strings.Contains(string(r.body), "invalid_api_key") {
					t.Fatalf("the client saw the provider's answer: %s", r.body)
				}
				if r.header.Get("X-Stipend-Request-Id") == "" && tt.key == key {
					t.Errorf("no X-Stipend-Request-Id")
				}
			})
		}
		evs := append(e.events(key), e.events(screened)...)
		if len(evs) != 3 {
			t.Fatalf("%d events, want 3", len(evs))
		}
		for _, ev := range evs {
			if ev.Status != http.StatusBadGateway || ev.ErrorCode != "upstream_auth_error" || ev.Cost != 0 {
				t.Errorf("event %+v: want status 502, upstream_auth_error, cost 0", ev)
			}
		}
		tot, err := e.store.KeyTotals(context.Background(), key.id)
		if err != nil {
			t.Fatal(err)
		}
		if tot.Committed != 0 || tot.Cost != 0 {
			t.Errorf("key totals %+v: want nothing spent", tot)
		}
		logged := e.logText()
		if !strings.Contains(logged, "rejected") || !strings.Contains(logged, e.providerID) {
			t.Errorf("not logged with the provider: %s", logged)
		}
		if strings.Contains(logged, "wxyz") {
			t.Errorf("the provider key reached the log: %s", logged)
		}
	})

	t.Run("a changed provider key applies to the next request", func(t *testing.T) {
		e := newEdgeEnv(t, endpoint, "edge-key-rotation", "sk-provider-old-0003")
		key := e.newKey(nil)
		if r := e.call("POST", "/v1/chat/completions", key.plain, chat("")); r.status != http.StatusOK {
			t.Fatalf("with the old key: %d %s", r.status, r.body)
		}
		// The provider now takes only the new key (the old one was revoked
		// there), and the teacher gives it to stipend.
		for i, next := range []string{"sk-provider-new-0004", "sk-provider-newer-0005"} {
			e.up.accepted.Store(next)
			e.adminCall("PATCH", "/api/v1/providers/"+e.providerID, `{"apiKey":"`+next+`"}`, nil)
			for j := range 2 {
				if r := e.call("POST", "/v1/chat/completions", key.plain, chat("")); r.status != http.StatusOK {
					t.Fatalf("change %d, request %d after it: %d %s", i+1, j+1, r.status, r.body)
				}
			}
		}
		// Changing something else keeps the cached key.
		e.adminCall("PATCH", "/api/v1/providers/"+e.providerID, `{"name":"renamed"}`, nil)
		if r := e.call("POST", "/v1/chat/completions", key.plain, chat("")); r.status != http.StatusOK {
			t.Fatalf("after a rename: %d %s", r.status, r.body)
		}
	})

	t.Run("headers and key info agree on remaining", func(t *testing.T) {
		e := newEdgeEnv(t, endpoint, "edge-remaining", "sk-provider-good-0006")
		key := e.newKey(func(k *apikey.Key) {
			k.CostLimitLifetime = money.Dollar
			k.RateLimitOverTime, k.RateLimitUnit = 100, "m"
			k.ModelLimits = map[string]apikey.ModelLimit{itModel: {RPM: 10, TPM: 1_000_000}}
		})
		// A served request first, so that settled spend counts too.
		if r := e.call("POST", "/v1/chat/completions", key.plain, chat(`,"max_tokens":1000`)); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		// A second one stays in flight (the fake upstream hangs after its
		// first chunk) while key info is read: its reservation is committed.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		body := []byte(`{"model":"gpt-4o-mini","stream":true,"max_tokens":1000,"messages":[{"role":"user","content":"fake:hang"}]}`)
		req, _ := http.NewRequestWithContext(ctx, "POST", e.proxy.URL+"/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key.plain)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("in-flight request: %v %v", resp, err)
		}
		defer resp.Body.Close()
		if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}

		info := e.call("GET", "/v1/key/info", key.plain, nil)
		if info.status != http.StatusOK {
			t.Fatalf("key info: %d %s", info.status, info.body)
		}
		var out struct {
			Limits []struct {
				Scope, Kind      string
				Limit, Remaining json.Number
			}
		}
		dec := json.NewDecoder(bytes.NewReader(info.body))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatal(err)
		}
		// The header shows the tightest limit of each kind.
		tightest := map[string]json.Number{}
		for _, l := range out.Limits {
			v, _ := l.Remaining.Float64()
			if cur, ok := tightest[l.Kind]; !ok || v < must(cur.Float64()) {
				tightest[l.Kind] = l.Remaining
			}
		}
		for kind, header := range map[string]string{"requests": "X-Ratelimit-Remaining-Requests", "tokens": "X-Ratelimit-Remaining-Tokens", "spend": "X-Stipend-Budget-Remaining"} {
			if got := resp.Header.Get(header); got == "" || got != tightest[kind].String() {
				t.Errorf("%s: header %s = %q, key info's tightest %s limit has %q remaining (limits %+v)", kind, header, got, kind, tightest[kind], out.Limits)
			}
		}
		// Remaining subtracts the request in flight: 10 per minute for the
		// model, two requests made.
		if got := resp.Header.Get("X-Ratelimit-Remaining-Requests"); got != "8" {
			t.Errorf("requests remaining %q, want 8", got)
		}
		cancel()
	})
}

func must(f float64, err error) float64 {
	if err != nil {
		panic(err)
	}
	return f
}
