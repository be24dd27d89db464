// Package ledger defines what stipend records about each forwarded request:
// its token usage and the Event that carries usage, cost and outcome into
// storage and reporting.
package ledger

import "github.com/stipend/stipend/shared/money"

// Usage is the tokens one request consumed.
type Usage struct {
	PromptTokens     int64 `json:"promptTokens"`
	CachedTokens     int64 `json:"cachedTokens"` // part of PromptTokens billed at the cached price
	CompletionTokens int64 `json:"completionTokens"`
	// CacheWriteTokens is the part of PromptTokens written to the
	// provider's prompt cache and billed at the cache-write price (Anthropic's
	// usage.cache_creation_input_tokens). Like CachedTokens it is counted in
	// PromptTokens, never beside it; 0 for providers without cache writes.
	CacheWriteTokens int64 `json:"cacheWriteTokens,omitempty"`
	// CacheWrite1hTokens is the part of CacheWriteTokens written with a
	// 1-hour lifetime (Anthropic's cache_creation.ephemeral_1h_input_tokens),
	// billed at the 1-hour cache-write price (2x input).
	CacheWrite1hTokens int64 `json:"cacheWrite1hTokens,omitempty"`
}

// Total returns prompt plus completion tokens.
func (u Usage) Total() int64 { return u.PromptTokens + u.CompletionTokens }

// Event is the one record every forwarded request ends as.
type Event struct {
	ID         string      `json:"id"`
	KeyID      string      `json:"keyId"`
	UserID     string      `json:"userId,omitempty"`
	ProviderID string      `json:"providerId,omitempty"`
	Model      string      `json:"model"`
	Path       string      `json:"path"`
	Method     string      `json:"method"`
	Status     int         `json:"status"`
	Stream     bool        `json:"stream"`
	Usage      Usage       `json:"usage"`
	Cost       money.Nanos `json:"costInUsd"`
	LatencyMs  int64       `json:"latencyInMs"`
	CustomID   string      `json:"customId,omitempty"`
	CreatedAt  int64       `json:"createdAt"` // unix milliseconds
	// Estimated is true when upstream reported no usage and the tokens were
	// counted with the tokenizer (client disconnect, upstream failure).
	Estimated bool `json:"estimated,omitempty"`
	// Incomplete is true when the response did not finish normally.
	Incomplete bool `json:"incomplete,omitempty"`
	// ReservedCost is the worst case reserved before forwarding; Overrun is
	// true when the provider billed more than that (recorded, never hidden).
	ReservedCost money.Nanos `json:"reservedCostInUsd,omitempty"`
	Overrun      bool        `json:"overrun,omitempty"`
	ErrorCode    string      `json:"errorCode,omitempty"`
	// Attempts counts the provider settings the request was sent to: 2
	// when the first failed before any byte reached the client and another
	// answered (ProviderID names the one that answered); 0 or 1 otherwise.
	Attempts int `json:"attempts,omitempty"`

	// Bodies, kept only when the key's shouldLogRequest / shouldLogResponse
	// is on (body.go): the request as the client sent it and the response
	// as the client received it (a stream as its SSE events), each at most
	// a bounded prefix. *Truncated says the prefix is not the whole body;
	// *Bytes is the whole body's size.
	RequestBody           string `json:"requestBody,omitempty"`
	RequestBodyTruncated  bool   `json:"requestBodyTruncated,omitempty"`
	RequestBodyBytes      int64  `json:"requestBodyBytes,omitempty"`
	ResponseBody          string `json:"responseBody,omitempty"`
	ResponseBodyTruncated bool   `json:"responseBodyTruncated,omitempty"`
	ResponseBodyBytes     int64  `json:"responseBodyBytes,omitempty"`

	// RequestedModel is the model the client asked for when the key's
	// aliases served the request as Model instead; empty when no alias
	// applied.
	RequestedModel string `json:"requestedModel,omitempty"`
}

// Success reports whether the upstream answered with a 2xx status.
func (e *Event) Success() bool { return e.Status >= 200 && e.Status < 300 }

// Statement is one owner's (a key's or a user's) closed month: what it spent
// and used in that calendar month (UTC).
type Statement struct {
	Owner            string      `json:"owner"` // "KEY#<id>" or "USER#<userId>"
	Month            string      `json:"month"` // "2026-11"
	Cost             money.Nanos `json:"costInUsd"`
	Requests         int64       `json:"numberOfRequests"`
	Successes        int64       `json:"successCount"`
	PromptTokens     int64       `json:"promptTokenCount"`
	CompletionTokens int64       `json:"completionTokenCount"`
	ClosedAt         int64       `json:"closedAt"` // unix seconds of the schedule that closed it
}
