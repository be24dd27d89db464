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
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
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
	// APIVersion is an Azure OpenAI setting's api-version query parameter
	// ("2024-10-21"); Azure requires it, other kinds have none.
	APIVersion string `json:"apiVersion,omitempty"`
	// Deployments maps a model to an Azure OpenAI deployment name; a model
	// without an entry is its own deployment name.
	Deployments map[string]string `json:"deployments,omitempty"`
	// Prices are the admin's prices for this setting (see Rates), by model.
	Prices map[string]Rates `json:"prices,omitempty"`
	// RequestsPerMinute and TokensPerMinute are the setting's own ceilings
	// (the provider account's tier), shared by every key that uses it; 0
	// means none.
	RequestsPerMinute int64  `json:"requestsPerMinute,omitempty"`
	TokensPerMinute   int64  `json:"tokensPerMinute,omitempty"`
	SecretID          string `json:"-"` // Secrets Manager id of the provider API key
	CreatedAt         int64  `json:"createdAt"`
	UpdatedAt         int64  `json:"updatedAt"`

	// KeyVersion counts changes of the provider API key: every new apiKey
	// increments it, so a proxy that sees a higher one knows its cached
	// secret is stale. Stored, never shown.
	KeyVersion int64 `json:"-"`
}

// Clone returns a copy of s that shares nothing mutable with it (its
// slice and maps are copied; nil stays nil).
func (s *Setting) Clone() *Setting {
	c := *s
	c.AllowedModels = slices.Clone(s.AllowedModels)
	c.Deployments = maps.Clone(s.Deployments)
	c.Prices = maps.Clone(s.Prices)
	return &c
}

// Rates is an admin-set price of one model on one setting, in integer
// pico-dollars (1e-12 USD) per token, which is micro-dollars per 1M tokens:
// $0.10 per 1M tokens is 100000. The admin API converts the decimals it is
// given once, exactly; nothing stores or adds money as floats.
type Rates struct {
	Input       int64 `json:"inputPico"`
	CachedInput int64 `json:"cachedInputPico"`
	CacheWrite  int64 `json:"cacheWritePico"`
	Output      int64 `json:"outputPico"`
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
// "/v1/chat/completions" and the request's model: the setting's base URL
// (which ends in the API version, like "/v1") joined with the path after
// "/v1". An Azure setting's base URL is the resource endpoint instead:
// chat completions, completions and embeddings go to the model's
// deployment, <baseUrl>/openai/deployments/<deployment>/<op>?api-version=...
func (s *Setting) Endpoint(clientPath, rawQuery, model string) (string, error) {
	base := s.BaseURL
	if base == "" {
		base = DefaultBaseURL(s.Provider)
	}
	if base == "" {
		return "", fmt.Errorf("provider %s has no base URL", s.ID)
	}
	op := strings.TrimPrefix(clientPath, "/v1")
	if s.Provider == Azure {
		if !AzureServesPath(clientPath) {
			return "", fmt.Errorf("azure provider %s: %w", s.ID, ErrPathNotServed)
		}
		op = "/openai/deployments/" + url.PathEscape(s.Deployment(model)) + op
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + op)
	if err != nil {
		return "", fmt.Errorf("provider %s base URL: %w", s.ID, err)
	}
	u.RawQuery = rawQuery
	if s.Provider == Azure {
		q := u.Query()
		q.Set("api-version", s.APIVersion)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// ErrPathNotServed is Endpoint's error for a path the setting's kind has no
// URL for (an Azure deployment serves only AzureServesPath's).
var ErrPathNotServed = errors.New("this provider kind does not serve the path")

// AzureServesPath reports the client paths an Azure OpenAI deployment serves.
func AzureServesPath(clientPath string) bool {
	switch clientPath {
	case "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
		return true
	}
	return false
}

// Deployment returns the Azure deployment that serves model: its entry in
// Deployments, or the model's own name.
func (s *Setting) Deployment(model string) string {
	if d := s.Deployments[model]; d != "" {
		return d
	}
	return model
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
