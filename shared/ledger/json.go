package ledger

// An event's JSON, written without reflection: the proxy stores one event
// per request, and encoding/json's Marshal of it was a few percent of the
// proxy's CPU per request.

import "github.com/stipend/stipend/shared/jsonenc"

// AppendJSON appends e's JSON to b: the bytes encoding/json's Marshal
// writes for e (TestEventJSON holds it to that, field by field).
func (e *Event) AppendJSON(b []byte) []byte {
	o := jsonenc.Open(b)
	o.String("id", e.ID)
	o.String("keyId", e.KeyID)
	if e.UserID != "" {
		o.String("userId", e.UserID)
	}
	if e.ProviderID != "" {
		o.String("providerId", e.ProviderID)
	}
	o.String("model", e.Model)
	o.String("path", e.Path)
	o.String("method", e.Method)
	o.Int("status", int64(e.Status))
	o.Bool("stream", e.Stream)
	o.Name("usage")
	o.B = e.Usage.AppendJSON(o.B)
	o.Name("costInUsd")
	o.B = e.Cost.Append(o.B)
	o.Int("latencyInMs", e.LatencyMs)
	if e.CustomID != "" {
		o.String("customId", e.CustomID)
	}
	o.Int("createdAt", e.CreatedAt)
	if e.Estimated {
		o.Bool("estimated", true)
	}
	if e.Incomplete {
		o.Bool("incomplete", true)
	}
	if e.ReservedCost != 0 {
		o.Name("reservedCostInUsd")
		o.B = e.ReservedCost.Append(o.B)
	}
	if e.Overrun {
		o.Bool("overrun", true)
	}
	if e.ErrorCode != "" {
		o.String("errorCode", e.ErrorCode)
	}
	if e.Attempts != 0 {
		o.Int("attempts", int64(e.Attempts))
	}
	if e.RequestBody != "" {
		o.String("requestBody", e.RequestBody)
	}
	if e.RequestBodyTruncated {
		o.Bool("requestBodyTruncated", true)
	}
	if e.RequestBodyBytes != 0 {
		o.Int("requestBodyBytes", e.RequestBodyBytes)
	}
	if e.ResponseBody != "" {
		o.String("responseBody", e.ResponseBody)
	}
	if e.ResponseBodyTruncated {
		o.Bool("responseBodyTruncated", true)
	}
	if e.ResponseBodyBytes != 0 {
		o.Int("responseBodyBytes", e.ResponseBodyBytes)
	}
	if e.RequestedModel != "" {
		o.String("requestedModel", e.RequestedModel)
	}
	return o.Close()
}

// AppendJSON appends u's JSON to b, as encoding/json's Marshal writes it.
func (u Usage) AppendJSON(b []byte) []byte {
	o := jsonenc.Open(b)
	o.Int("promptTokens", u.PromptTokens)
	o.Int("cachedTokens", u.CachedTokens)
	o.Int("completionTokens", u.CompletionTokens)
	if u.CacheWriteTokens != 0 {
		o.Int("cacheWriteTokens", u.CacheWriteTokens)
	}
	if u.CacheWrite1hTokens != 0 {
		o.Int("cacheWrite1hTokens", u.CacheWrite1hTokens)
	}
	return o.Close()
}
