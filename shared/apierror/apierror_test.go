package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
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
