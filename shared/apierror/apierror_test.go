package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	secret := errors.New("dynamodb: table stipend-prod credentials sk-secret")
	tests := []struct {
		name       string
		err        error
		status     int
		typ, code  string
		param      any
		retryAfter string
	}{
		{"typed", New(401, CodeKeyRevoked, "key revoked"), 401, "authentication_error", CodeKeyRevoked, nil, ""},
		{"wrapped typed", fmt.Errorf("auth: %w", New(403, CodeModelNotAllowed, "no")), 403, "permission_error", CodeModelNotAllowed, nil, ""},
		{"quota", New(429, CodeInsufficientQuota, "over"), 429, "insufficient_quota", CodeInsufficientQuota, nil, ""},
		{"retry", &Error{Status: 429, Type: "rate_limit_error", Code: CodeRateLimitExceeded, Message: "slow", RetryAfter: 1500 * time.Millisecond}, 429, "rate_limit_error", CodeRateLimitExceeded, nil, "2"},
		{"param", New(400, CodeInvalidRequest, "bad").WithParam("model"), 400, "invalid_request_error", CodeInvalidRequest, "model", ""},
		{"internal hides cause", secret, 500, "server_error", CodeInternal, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, httptest.NewRequest("GET", "/", nil), nil, tt.err)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if strings.Contains(rec.Body.String(), "sk-secret") || strings.Contains(rec.Body.String(), "dynamodb") {
				t.Fatalf("cause leaked: %s", rec.Body)
			}
			var b map[string]map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			e := b["error"]
			if e["type"] != tt.typ || e["code"] != tt.code || e["param"] != tt.param {
				t.Fatalf("body = %v", e)
			}
			if _, ok := e["message"].(string); !ok {
				t.Fatalf("no message: %v", e)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Fatalf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if rec.Header().Get("Content-Type") != "application/json" {
				t.Fatal("content type")
			}
		})
	}
	_ = http.StatusOK
}

// TestRedact: anything shaped like an API key is hidden, and nothing else.
func TestRedact(t *testing.T) {
	const stp = "sk-stp-suhgd7srezqe6u6ixhvkzzkp3i_pvtile5qqw77i3m7gutlh35eijndb6yttsjh2bdam35bqho2hp5q"
	tests := []struct{ in, want string }{
		{"unknown endpoint GET /api/v1/secret-keys/" + stp, "unknown endpoint GET /api/v1/secret-keys/sk-…(hidden)"},
		{`model "sk-proj-AbCdEf0123456789xyz" has no known price`, `model "sk-…(hidden)" has no known price`},
		{"sk-ant-api03-abcdefghijklmnop and sk-0123456789abcdefgh", "sk-…(hidden) and sk-…(hidden)"},
		{"no key here", "no key here"},
		{"sk-short", "sk-short"},
		{"task-sk-is-a-word-abcdefghijklmnopq", "task-sk-…(hidden)"},
		{"disk-abcdefghijklmnopqrstuvwxyz", "disk-abcdefghijklmnopqrstuvwxyz"},
		{"risk-sk-", "risk-sk-"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestWriteRedactsKeys: an error message or param that echoes a pasted key
// reaches neither the client nor the log (found by infra/secrecy's test).
func TestWriteRedactsKeys(t *testing.T) {
	const key = "sk-proj-LEAKTEST-0123456789abcdef"
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/api/v1/users/"+key, nil)
	Write(rec, r, log, Wrap(errors.New("lookup "+key), 404, CodeNotFound, "user "+key+" not found").WithParam(key))
	if strings.Contains(rec.Body.String(), "LEAKTEST") || strings.Contains(logs.String(), "LEAKTEST") {
		t.Fatalf("the key leaked:\nbody: %s\nlog: %s", rec.Body, &logs)
	}
	if !strings.Contains(rec.Body.String(), "user sk-…(hidden) not found") {
		t.Fatalf("body %s", rec.Body)
	}
}

func TestWriteAnthropic(t *testing.T) {
	tests := []struct {
		err    error
		status int
		typ    string
		code   string
	}{
		{New(http.StatusUnauthorized, CodeInvalidAPIKey, "invalid API key"), 401, "authentication_error", CodeInvalidAPIKey},
		{New(http.StatusForbidden, CodeModelNotAllowed, "no").WithParam("model"), 403, "permission_error", CodeModelNotAllowed},
		{New(http.StatusTooManyRequests, CodeInsufficientQuota, "spent"), 429, "rate_limit_error", CodeInsufficientQuota},
		{New(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "big"), 413, "request_too_large", CodeRequestTooLarge},
		{New(http.StatusServiceUnavailable, CodeServiceUnavailable, "down"), 503, "overloaded_error", CodeServiceUnavailable},
		{New(http.StatusGatewayTimeout, CodeUpstreamTimeout, "slow"), 504, "timeout_error", CodeUpstreamTimeout},
		{errors.New("secret internals"), 500, "api_error", CodeInternal},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		WriteAnthropic(rec, httptest.NewRequest("POST", "/v1/messages", nil), nil, tt.err)
		var b AnthropicBody
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tt.status || b.Type != "error" || b.Error.Type != tt.typ || b.Error.Message == "" ||
			rec.Header().Get(CodeHeader) != tt.code || strings.Contains(rec.Body.String(), "secret") {
			t.Errorf("%v: %d %v %s", tt.err, rec.Code, rec.Header(), rec.Body)
		}
	}
}

// TestMessage: a result row's message is the client message of its error,
// redacted, and never an internal cause.
func TestMessage(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{New(400, CodeInvalidRequest, `model "sk-proj-AbCdEf0123456789xyz" has no known price`), `model "sk-…(hidden)" has no known price`},
		{fmt.Errorf("roster: %w", New(404, CodeNotFound, "user s1 not found")), "user s1 not found"},
		{errors.New("dial tcp: sk-proj-AbCdEf0123456789xyz refused"), "internal error"},
	}
	for _, tt := range tests {
		if got := Message(tt.err); got != tt.want {
			t.Errorf("Message(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
