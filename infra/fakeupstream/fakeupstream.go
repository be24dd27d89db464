// Package fakeupstream is a small OpenAI-compatible upstream for stipend's
// tests, its offline `make dev` demo and its benchmark. A *Server is an
// http.Handler; serve it with httptest.NewServer or any http.Server.
//
// It answers, under /v1: POST /chat/completions and POST /completions
// (streamed or not, with stream_options.include_usage), POST /responses
// (streamed or not, in the Responses API's event shapes), POST /embeddings,
// POST /moderations and GET /models. It also answers POST /v1/messages in
// Anthropic's shapes (anthropic.go) and Azure OpenAI deployment URLs,
// /openai/deployments/{deployment}/{chat/completions|completions|embeddings}
// (azure.go). Streams follow OpenAI's wire format,
// flushing every event, and every streamed content event carries an extra
// "fake_sent_unix_nano" field: the server's time.Now().UnixNano() when it
// wrote that event, so that a benchmark can measure per-event delay.
//
// Generated text is deterministic: content chunk i (from 1) is " word<i>",
// so completion (output) tokens equal the number of chunks. Prompt (input)
// tokens are the number of whitespace-separated words in the prompt, plus 4
// per message for chat messages and Responses input messages.
//
// Tests steer single requests with directives: whitespace-separated tokens
// in the text of the last user message (chat, Responses) or of the prompt or
// input (completions, embeddings, moderations):
//
//	fake:status=N     answer status N (200-599) with an OpenAI error body:
//	                  type rate_limit_error for 429, else server_error
//	fake:chunks=N     stream N content chunks (0 allowed)
//	fake:interval=D   wait D (a time.ParseDuration string) before each
//	                  content chunk
//	fake:nousage      leave usage out, even when the request asked for it
//	fake:hang         after the first content chunk (before answering, when
//	                  not streaming) send nothing more until the client goes
//	fake:errorevent   after the content chunks, end the stream with an
//	                  error event (OpenAI's {"error":{...}} data; Anthropic's
//	                  "error" event with overloaded_error) and nothing more
//	fake:cut          after 2 content chunks (half the body, when not
//	                  streaming) abort the connection: no finish chunk, no
//	                  usage, no [DONE]; the client sees an unexpected EOF.
//	                  This panics with http.ErrAbortHandler, which net/http
//	                  servers turn into an aborted response
//
// An unknown fake: directive is answered with 400. The handler stops as
// soon as the client goes away.
package fakeupstream

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options fields left zero.
const (
	// DefaultInterval is the delay before each streamed content event.
	DefaultInterval = 20 * time.Millisecond
	// DefaultChunks is the number of content chunks per completion.
	DefaultChunks = 10
)

// maxBodyBytes bounds the request bodies the server reads.
const maxBodyBytes = 32 << 20

// defaultModels returns the models GET /v1/models lists by default.
func defaultModels() []string {
	return []string{
		"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo-instruct",
		"text-embedding-3-small", "omni-moderation-latest",
	}
}

// Options configures a Server. The zero value is a server without auth that
// streams 10 chunks 20 ms apart.
type Options struct {
	// APIKey, when non-empty, must come as "Authorization: Bearer <APIKey>";
	// other requests get 401 in OpenAI's error format.
	APIKey string
	// Interval is the delay before each streamed content event; zero means
	// DefaultInterval and a negative value no delay.
	Interval time.Duration
	// Chunks is the number of content chunks per completion; zero or less
	// means DefaultChunks.
	Chunks int
	// Models are the ids GET /v1/models lists; nil means a default list.
	// Requests may name any model, listed or not.
	Models []string
	// Deployments maps an Azure deployment name to the model it serves, for
	// /openai/deployments/{deployment}/... requests; an unknown deployment
	// gets 404 DeploymentNotFound. Nil means every deployment serves the
	// model it is named after.
	Deployments map[string]string
	// MaxRecorded bounds how many requests Requests keeps (the most recent
	// ones): zero keeps them all, a negative value none (for long benchmark
	// runs).
	MaxRecorded int
}

// Recorded is one request the server received.
type Recorded struct {
	// Method and Path are the request's method and URL path.
	Method, Path string
	// Header is a clone of the request's headers.
	Header http.Header
	// Body is the request body as read (at most 32 MiB).
	Body []byte
}

// Server is the fake upstream: an http.Handler safe for concurrent use.
type Server struct {
	opts Options
	ids  atomic.Uint64

	mu       sync.Mutex
	recorded []Recorded
	cached   map[string]bool // Anthropic cache prefixes seen (anthropic.go)
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Interval < 0 {
		opts.Interval = 0
	}
	if opts.Chunks <= 0 {
		opts.Chunks = DefaultChunks
	}
	if opts.Models == nil {
		opts.Models = defaultModels()
	} else {
		opts.Models = append([]string(nil), opts.Models...)
	}
	return &Server{opts: opts}
}

// Requests returns copies of the requests received so far, oldest first. It
// is safe for concurrent use.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Recorded, len(s.recorded))
	for i, r := range s.recorded {
		out[i] = Recorded{Method: r.Method, Path: r.Path, Header: r.Header.Clone(), Body: bytes.Clone(r.Body)}
	}
	return out
}

// record stores a request unless recording is off.
func (s *Server) record(r *http.Request, body []byte) {
	if s.opts.MaxRecorded < 0 {
		return
	}
	rec := Recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recorded = append(s.recorded, rec)
	if s.opts.MaxRecorded > 0 && len(s.recorded) > s.opts.MaxRecorded {
		s.recorded = s.recorded[len(s.recorded)-s.opts.MaxRecorded:]
	}
}

// nextID returns a fresh id with prefix, such as "chatcmpl-fake000001".
func (s *Server) nextID(prefix string) string {
	return fmt.Sprintf("%s-fake%06d", prefix, s.ids.Add(1))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	var err error
	if r.Body != nil {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	}
	s.record(r, body)
	w.Header().Set("X-Request-Id", s.nextID("req"))
	if isAnthropicPath(r.URL.Path) {
		if err != nil {
			writeAnthropicError(w, http.StatusRequestEntityTooLarge, "could not read the request body: "+err.Error())
			return
		}
		s.anthropicMessages(w, r, body)
		return
	}
	if isAzurePath(r.URL.Path) {
		s.azure(w, r, body, err)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "could not read the request body: "+err.Error(), nil)
		return
	}
	if !s.authorized(r) {
		if r.Header.Get("Authorization") == "" {
			writeError(w, http.StatusUnauthorized, "invalid_request_error",
				"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", nil)
		} else {
			code := "invalid_api_key"
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided.", &code)
		}
		return
	}

	method, handle := s.route(r.URL.Path)
	if handle == nil {
		writeError(w, http.StatusNotFound, "invalid_request_error", fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), nil)
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error",
			fmt.Sprintf("Method %s not allowed for %s; use %s", r.Method, r.URL.Path, method), nil)
		return
	}
	handle(w, r, body)
}

// route returns the method and handler for path; a nil handler for an
// unknown path.
func (s *Server) route(path string) (method string, handle func(http.ResponseWriter, *http.Request, []byte)) {
	switch path {
	case "/v1/chat/completions":
		return http.MethodPost, s.chatCompletions
	case "/v1/completions":
		return http.MethodPost, s.completions
	case "/v1/responses":
		return http.MethodPost, s.responses
	case "/v1/embeddings":
		return http.MethodPost, s.embeddings
	case "/v1/moderations":
		return http.MethodPost, s.moderations
	case "/v1/models":
		return http.MethodGet, s.models
	}
	return "", nil
}

// authorized checks the bearer token when an API key is configured.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.APIKey == "" {
		return true
	}
	got := []byte(r.Header.Get("Authorization"))
	want := []byte("Bearer " + s.opts.APIKey)
	return subtle.ConstantTimeCompare(got, want) == 1
}

// errorBody is OpenAI's error envelope.
type errorBody struct {
	Error errorDetail `json:"error"`
}

// errorDetail is the inside of OpenAI's error envelope.
type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// writeError answers status with an OpenAI error body.
func writeError(w http.ResponseWriter, status int, typ, message string, code *string) {
	writeErrorBody(w, status, errorDetail{Message: message, Type: typ, Code: code})
}

// writeErrorBody answers status with detail in OpenAI's error envelope.
func writeErrorBody(w http.ResponseWriter, status int, detail errorDetail) {
	b, err := json.Marshal(errorBody{Error: detail})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeFakeError answers the status a fake:status directive asked for.
func writeFakeError(w http.ResponseWriter, status int) {
	typ := "server_error"
	if status == http.StatusTooManyRequests {
		typ = "rate_limit_error"
	}
	writeError(w, status, typ, "fake error", nil)
}

// decode parses a JSON request body into v, answering 400 on failure.
func decode(w http.ResponseWriter, body []byte, v any) bool {
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "We could not parse the JSON body of your request: "+err.Error(), nil)
		return false
	}
	return true
}

// requireModel answers 400 when model is empty.
func requireModel(w http.ResponseWriter, model string) bool {
	if model == "" {
		writeParamError(w, "model", "you must provide a model parameter")
		return false
	}
	return true
}

// writeParamError answers 400 invalid_request_error about param.
func writeParamError(w http.ResponseWriter, param, message string) {
	writeErrorBody(w, http.StatusBadRequest, errorDetail{Message: message, Type: "invalid_request_error", Param: &param})
}

// writeJSON answers 200 with v, honouring the hang and cut directives.
func writeJSON(w http.ResponseWriter, r *http.Request, d directives, v any) {
	if d.hang {
		<-r.Context().Done()
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "encode response: "+err.Error(), nil)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	if d.cut {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b[:len(b)/2])
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(b)
}

// errStreamStopped reports a stream that stopped because of the client.
var errStreamStopped = errors.New("fakeupstream: client went away")

// sseWriter writes server-sent events, flushing each one.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
}

// startSSE sends the 200 header of an event stream.
func startSSE(w http.ResponseWriter) (*sseWriter, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}
	if err := sw.rc.Flush(); err != nil {
		return nil, fmt.Errorf("%w: flush header: %w", errStreamStopped, err)
	}
	return sw, nil
}

// send writes one event, named (an "event:" line) when name is not empty,
// whose data is v as JSON, and flushes it.
func (sw *sseWriter) send(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("fakeupstream: encode event: %w", err)
	}
	return sw.raw(name, data)
}

// raw writes one event with data as is and flushes it.
func (sw *sseWriter) raw(name string, data []byte) error {
	b := sw.buf[:0]
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	sw.buf = b
	if _, err := sw.w.Write(b); err != nil {
		return fmt.Errorf("%w: %w", errStreamStopped, err)
	}
	if err := sw.rc.Flush(); err != nil {
		return fmt.Errorf("%w: flush: %w", errStreamStopped, err)
	}
	return nil
}

// sseEvent is one event a stream plan produces.
type sseEvent struct {
	name string
	data any
}

// streamPlan says what a stream sends around its content chunks.
type streamPlan struct {
	// prelude runs before the first content chunk.
	prelude func() []sseEvent
	// content builds content chunk i (from 1) carrying word, right before
	// it is sent (so it can stamp the time).
	content func(i int, word string) sseEvent
	// epilogue builds the events after the last content chunk, given the
	// whole text.
	epilogue func(text string) []sseEvent
	// doneMarker ends the stream with "data: [DONE]".
	doneMarker bool
	// errorEvent, when set, builds the event the fake:errorevent directive
	// ends the stream with; nil means OpenAI's {"error":{...}} data event.
	errorEvent func() sseEvent
}

// stream sends plan over an event stream, pausing interval before each
// content chunk and honouring d's hang and cut. It returns when the stream
// is complete or the client has gone.
func stream(w http.ResponseWriter, r *http.Request, d directives, chunks int, interval time.Duration, plan streamPlan) {
	ctx := r.Context()
	sw, err := startSSE(w)
	if err != nil {
		return
	}
	sendAll := func(events []sseEvent) bool {
		for _, ev := range events {
			if sw.send(ev.name, ev.data) != nil {
				return false
			}
		}
		return true
	}
	if plan.prelude != nil && !sendAll(plan.prelude()) {
		return
	}
	var text strings.Builder
	for i := 1; i <= chunks; i++ {
		if d.hang && i == 2 {
			break
		}
		if d.cut && i == 3 {
			break
		}
		if sleepCtx(ctx, interval) != nil {
			return
		}
		word := chunkWord(i)
		text.WriteString(word)
		ev := plan.content(i, word)
		if sw.send(ev.name, ev.data) != nil {
			return
		}
	}
	switch {
	case d.hang:
		<-ctx.Done()
		return
	case d.cut:
		panic(http.ErrAbortHandler)
	case d.errorEvent:
		ev := sseEvent{data: errorBody{Error: errorDetail{
			Message: "The server had an error while processing your request. Sorry about that!", Type: "server_error"}}}
		if plan.errorEvent != nil {
			ev = plan.errorEvent()
		}
		_ = sw.send(ev.name, ev.data)
		return
	}
	if !sendAll(plan.epilogue(text.String())) {
		return
	}
	if plan.doneMarker {
		_ = sw.raw("", []byte("[DONE]"))
	}
}

// chunkWord is the content of chunk i (from 1).
func chunkWord(i int) string {
	return fmt.Sprintf(" word%d", i)
}

// fullText is the text of a completion of n chunks.
func fullText(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(chunkWord(i))
	}
	return b.String()
}

// sleepCtx waits d or until ctx ends, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// unixNano is the current time for the fake_sent_unix_nano field.
func unixNano() int64 {
	return time.Now().UnixNano()
}
