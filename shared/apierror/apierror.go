// Package apierror is the one place where stipend turns errors into HTTP
// responses in OpenAI's error format:
//
//	{"error": {"message": "...", "type": "...", "param": null, "code": "..."}}
//
// An *Error carries what the client may see (status, code, message) apart
// from the internal cause, which is only ever logged. Any other error becomes
// a 500 with a generic message, so internals never leak to clients.
package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Codes of CONTRACT.md §3, plus internal_error for the unexpected.
const (
	CodeInvalidAPIKey      = "invalid_api_key"
	CodeKeyRevoked         = "key_revoked"
	CodeKeyExpired         = "key_expired"
	CodeKeySuspended       = "key_suspended" // after repeated flagged requests
	CodeModelNotAllowed    = "model_not_allowed"
	CodePathNotAllowed     = "path_not_allowed"
	CodeRateLimitExceeded  = "rate_limit_exceeded"
	CodeInsufficientQuota  = "insufficient_quota"
	CodeModelNotPriced     = "model_not_priced"
	CodeContentFlagged     = "content_flagged"
	CodeInvalidRequest     = "invalid_request"
	CodeRequestTooLarge    = "request_too_large"
	CodeUpstreamError      = "upstream_error"
	CodeUpstreamTimeout    = "upstream_timeout"
	CodeUpstreamAuthError  = "upstream_auth_error" // the provider refused stipend's own provider key
	CodeServiceUnavailable = "service_unavailable"
	CodeNotFound           = "not_found"
	CodeInternal           = "internal_error"
)

// Error is an error with a client-safe message. Cause, when set, is for logs only.
type Error struct {
	Status     int
	Type       string // OpenAI error type, e.g. "invalid_request_error"
	Code       string
	Message    string        // shown to the client; never contains secrets
	Param      string        // the offending request field, if any
	RetryAfter time.Duration // sets Retry-After when > 0
	Cause      error         // internal; logged, never sent
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s (%d %s): %v", e.Message, e.Status, e.Code, e.Cause)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Cause }

// New returns an *Error with the OpenAI type that fits status.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Type: typeFor(status, code), Code: code, Message: message}
}

// Wrap is New with an internal cause attached.
func Wrap(cause error, status int, code, message string) *Error {
	e := New(status, code, message)
	e.Cause = cause
	return e
}

// WithParam returns a copy of e naming the offending field.
func (e *Error) WithParam(p string) *Error { c := *e; c.Param = p; return &c }

func typeFor(status int, code string) string {
	switch {
	case code == CodeInsufficientQuota:
		return "insufficient_quota"
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// Body is the JSON shape of an error response.
type Body struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// From converts any error into an *Error: an *Error anywhere in the chain is
// returned as is; anything else becomes a 500 that hides the cause.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Wrap(err, http.StatusInternalServerError, CodeInternal, "internal error")
}

// Message is the message a client may see for err (From(err).Message),
// with anything that looks like an API key hidden (Redact): what a result
// that is not written by Write, such as one row of a bulk answer, carries.
func Message(err error) string { return Redact(From(err).Message) }

// CodeHeader carries stipend's own error code beside an Anthropic-shaped
// error, whose body has no place for it.
const CodeHeader = "X-Stipend-Error-Code"

// AnthropicBody is the JSON shape of an error in Anthropic's API.
type AnthropicBody struct {
	Type  string `json:"type"` // always "error"
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// anthropicType is Anthropic's error type for a stipend error: by status,
// as Anthropic's SDKs read it (and spend limits as its billing errors
// are, though their status stays 429).
func anthropicType(e *Error) string {
	switch {
	case e.Code == CodeInsufficientQuota:
		return "rate_limit_error"
	case e.Status == http.StatusUnauthorized:
		return "authentication_error"
	case e.Status == http.StatusForbidden:
		return "permission_error"
	case e.Status == http.StatusNotFound:
		return "not_found_error"
	case e.Status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case e.Status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case e.Status == http.StatusGatewayTimeout:
		return "timeout_error"
	case e.Status == http.StatusServiceUnavailable:
		return "overloaded_error"
	case e.Status >= 500:
		return "api_error"
	default:
		return "invalid_request_error"
	}
}

// WriteAnthropic is Write for Anthropic's API (POST /v1/messages), whose
// SDKs read {"type":"error","error":{"type","message"}}: the same status,
// Retry-After and logging, Anthropic's error type, and stipend's code in
// the X-Stipend-Error-Code header.
func WriteAnthropic(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := From(err)
	var b AnthropicBody
	b.Type, b.Error.Type, b.Error.Message = "error", anthropicType(e), Redact(e.Message)
	if e.Param != "" {
		b.Error.Message += " (" + Redact(e.Param) + ")"
	}
	w.Header().Set(CodeHeader, e.Code)
	write(w, r, log, e, b)
}

// Write sends err to the client in OpenAI's format and logs its cause. It
// must be called before anything else was written to w.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := From(err)
	var b Body
	b.Error.Message, b.Error.Type, b.Error.Code = Redact(e.Message), e.Type, e.Code
	if e.Param != "" {
		p := Redact(e.Param)
		b.Error.Param = &p
	}
	write(w, r, log, e, b)
}

// write logs e and sends it with body b.
func write(w http.ResponseWriter, r *http.Request, log *slog.Logger, e *Error, b any) {
	if log != nil && (e.Cause != nil || e.Status >= 500) {
		log.LogAttrs(r.Context(), slog.LevelWarn, "request failed",
			slog.String("path", Redact(r.URL.Path)), slog.Int("status", e.Status),
			slog.String("code", e.Code), slog.String("cause", Redact(fmt.Sprint(e.Cause))))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	out, jerr := json.Marshal(b)
	if jerr != nil {
		out = []byte(`{"error":{"message":"internal error","type":"server_error","code":"internal_error"}}`)
	}
	out = append(out, '\n')
	// With its length known, the client has the whole answer once it is
	// flushed, even while the handler still works (releasing a reservation).
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(e.Status)
	_, _ = w.Write(out)
}

// minKeyTail is how many characters after "sk-" make a token an API key.
const minKeyTail = 16

// Redact returns s with every token that looks like an API key (OpenAI's
// sk-… and sk-proj-…, Anthropic's sk-ant-…, stipend's own sk-stp-…) replaced
// by "sk-…(hidden)". A client or an admin who pastes a key where an id, a
// model name or a path belongs must not find it echoed in an error, a log
// line or the audit trail. A token starts at "sk-" not preceded by a letter
// or digit and runs over letters, digits, '-' and '_'.
func Redact(s string) string {
	if !strings.Contains(s, "sk-") {
		return s
	}
	var b strings.Builder
	from := 0 // s[:from] is written
	for i := 0; i+3 <= len(s); i++ {
		if s[i:i+3] != "sk-" || i > 0 && isAlnum(s[i-1]) {
			continue
		}
		end := i + 3
		for end < len(s) && (isAlnum(s[end]) || s[end] == '-' || s[end] == '_') {
			end++
		}
		if end-i-3 >= minKeyTail {
			b.WriteString(s[from:i])
			b.WriteString("sk-…(hidden)")
			from = end
		}
		i = end - 1
	}
	if from == 0 {
		return s
	}
	b.WriteString(s[from:])
	return b.String()
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
