// Package provider describes provider settings: which upstream API a proxy
// key's requests go to, how the provider's own API key is presented, and
// the providers' wire formats stipend reads and rewrites (wire.go): usage
// shapes, the include_usage rewrite, Anthropic's stream events, and which
// models each kind serves.
//
// A Setting holds only metadata; the provider API key itself lives in AWS
// Secrets Manager under SecretID and is never stored here.
package provider

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Kinds of provider.
const (
	OpenAI           = "openai"
	Azure            = "azure"
	Anthropic        = "anthropic"
	OpenAICompatible = "openai-compatible"
)

// Setting is one provider setting (a "provider" in the admin API).
type Setting struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Provider      string   `json:"provider"`
	BaseURL       string   `json:"baseUrl,omitempty"`
	AllowedModels []string `json:"allowedModels"`
	SecretID      string   `json:"-"` // Secrets Manager id of the provider API key
	CreatedAt     int64    `json:"createdAt"`
	UpdatedAt     int64    `json:"updatedAt"`

	// KeyVersion counts changes of the provider API key: every new apiKey
	// increments it, so a proxy that sees a higher one knows its cached
	// secret is stale. Stored, never shown.
	KeyVersion int64 `json:"-"`
}

// ValidKind reports whether kind is a provider stipend can call.
func ValidKind(kind string) bool {
	switch kind {
	case OpenAI, Azure, Anthropic, OpenAICompatible:
		return true
	}
	return false
}

// DefaultBaseURL returns the API root for kind ("https://api.openai.com/v1"),
// or "" when the kind has none and a baseUrl must be given.
func DefaultBaseURL(kind string) string {
	switch kind {
	case OpenAI:
		return "https://api.openai.com/v1"
	case Anthropic:
		return "https://api.anthropic.com/v1"
	}
	return ""
}

// Endpoint returns the upstream URL for a client path such as
// "/v1/chat/completions": the setting's base URL (which ends in the API
// version, like "/v1") joined with the path after "/v1".
func (s *Setting) Endpoint(clientPath, rawQuery string) (string, error) {
	base := s.BaseURL
	if base == "" {
		base = DefaultBaseURL(s.Provider)
	}
	if base == "" {
		return "", fmt.Errorf("provider %s has no base URL", s.ID)
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + strings.TrimPrefix(clientPath, "/v1"))
	if err != nil {
		return "", fmt.Errorf("provider %s base URL: %w", s.ID, err)
	}
	u.RawQuery = rawQuery
	return u.String(), nil
}

// Authorize sets the header through which kind expects its API key.
func Authorize(h http.Header, kind, apiKey string) {
	switch kind {
	case Azure:
		h.Set("api-key", apiKey)
	case Anthropic:
		h.Set("x-api-key", apiKey)
		if h.Get("anthropic-version") == "" {
			h.Set("anthropic-version", "2023-06-01")
		}
	default:
		h.Set("Authorization", "Bearer "+apiKey)
	}
}
