package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
)

// providerRequest is the body of POST and PATCH /api/v1/providers. APIKey is
// written to Secrets Manager and nowhere else.
type providerRequest struct {
	Name          *string   `json:"name" rule:"a non-empty string"`
	Provider      *string   `json:"provider" rule:"one of openai, azure, anthropic, openai-compatible"`
	APIKey        *string   `json:"apiKey" rule:"a non-empty string"`
	BaseURL       *string   `json:"baseUrl" rule:"an absolute http(s) URL"`
	AllowedModels *[]string `json:"allowedModels" rule:"a list of model names"`
	APIVersion    *string   `json:"apiVersion" rule:"an Azure api-version such as 2024-10-21"`
	// Deployments maps model names to Azure deployment names.
	Deployments *map[string]string `json:"deployments" rule:"an object of model name to Azure deployment name"`
	// Prices is {"<model>": {"input", "output", "cachedInput"?, "cacheWrite"?}}
	// in USD per 1M tokens, read exactly (pricing.Table.ParseRates).
	Prices *json.RawMessage `json:"prices" rule:"an object of model name to {input, output, cachedInput} in USD per 1M tokens"`
	// The setting's own per-minute ceilings; 0 removes one.
	RequestsPerMinute *int64 `json:"requestsPerMinute" rule:"a whole number from 0 to 1000000000"`
	TokensPerMinute   *int64 `json:"tokensPerMinute" rule:"a whole number from 0 to 1000000000"`
}

// priceJSON is one model's price as the API shows it: USD per 1M tokens,
// written from the stored integers exactly.
type priceJSON struct {
	Input       json.Number `json:"input"`
	Output      json.Number `json:"output"`
	CachedInput json.Number `json:"cachedInput"`
	CacheWrite  json.Number `json:"cacheWrite"`
}

// providerJSON is a provider setting as the API shows it: never its secret.
type providerJSON struct {
	ID                string               `json:"id"`
	Name              string               `json:"name"`
	Provider          string               `json:"provider"`
	BaseURL           string               `json:"baseUrl,omitempty"`
	AllowedModels     []string             `json:"allowedModels"`
	APIVersion        string               `json:"apiVersion,omitempty"`
	Deployments       map[string]string    `json:"deployments,omitempty"`
	Prices            map[string]priceJSON `json:"prices,omitempty"`
	RequestsPerMinute int64                `json:"requestsPerMinute,omitempty"`
	TokensPerMinute   int64                `json:"tokensPerMinute,omitempty"`
	CreatedAt         int64                `json:"createdAt"`
	UpdatedAt         int64                `json:"updatedAt"`
}

// providerView is a provider setting as the API shows it.
func providerView(p *provider.Setting) providerJSON {
	v := providerJSON{
		ID: p.ID, Name: p.Name, Provider: p.Provider, BaseURL: p.BaseURL,
		AllowedModels: response.NonEmpty(p.AllowedModels), APIVersion: p.APIVersion, Deployments: p.Deployments,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
		RequestsPerMinute: p.RequestsPerMinute, TokensPerMinute: p.TokensPerMinute,
	}
	if len(p.Prices) > 0 {
		v.Prices = make(map[string]priceJSON, len(p.Prices))
		for m, r := range p.Prices {
			v.Prices[m] = priceJSON{Input: perMillion(r.Input), Output: perMillion(r.Output),
				CachedInput: perMillion(r.CachedInput), CacheWrite: perMillion(r.CacheWrite)}
		}
	}
	return v
}

// perMillion writes pico-dollars per token (micro-dollars per 1M tokens) as
// the exact decimal of US dollars per 1M tokens: 100000 is 0.1.
func perMillion(pico int64) json.Number {
	s := strconv.FormatInt(pico/1_000_000, 10)
	if frac := pico % 1_000_000; frac != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", frac), "0")
	}
	return json.Number(s)
}

func (h *Handler) listProviders(w http.ResponseWriter, r *http.Request) error {
	list, err := h.providers.ListProviders(r.Context())
	if err != nil {
		return response.StoreError(err, "providers")
	}
	out := make([]providerJSON, 0, len(list))
	for _, p := range list {
		out = append(out, providerView(p))
	}
	return response.JSON(w, http.StatusOK, out)
}

func (h *Handler) createProvider(w http.ResponseWriter, r *http.Request) error {
	var req providerRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	if err := form.ValidName("name", req.Name); err != nil {
		return err
	}
	if req.Provider == nil || !provider.ValidKind(*req.Provider) {
		return mustBe("provider", "one of openai, azure, anthropic, openai-compatible")
	}
	apiKey, err := validAPIKey(req.APIKey, true)
	if err != nil {
		return err
	}
	baseURL := ""
	if req.BaseURL != nil {
		baseURL = strings.TrimSpace(*req.BaseURL)
	}
	if err := validBaseURL(*req.Provider, baseURL); err != nil {
		return err
	}
	models, err := form.ValidModels("allowedModels", req.AllowedModels)
	if err != nil {
		return err
	}

	now := h.cfg.Now().Unix()
	p := &provider.Setting{
		ID: apikey.NewID(), Name: strings.TrimSpace(*req.Name), Provider: *req.Provider,
		BaseURL: baseURL, AllowedModels: models, CreatedAt: now, UpdatedAt: now,
	}
	if err := applyKindFields(p, &req); err != nil {
		return err
	}
	if p.SecretID, err = h.putSecret(r, p.ID, apiKey); err != nil {
		return err
	}
	if err := h.providers.CreateProvider(r.Context(), p); err != nil {
		// The secret stays behind; it is harmless without a setting that names it.
		return response.StoreError(err, "provider "+p.ID)
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "provider created",
		slog.String("provider", p.ID), slog.String("kind", p.Provider))
	return response.JSON(w, http.StatusOK, providerView(p))
}

func (h *Handler) updateProvider(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req providerRequest
	if err := decodeObject(w, r, &req); err != nil {
		return err
	}
	p, err := h.providers.GetProvider(r.Context(), id)
	if err != nil {
		return response.StoreError(err, "provider "+id)
	}
	if req.Name != nil {
		if err := form.ValidName("name", req.Name); err != nil {
			return err
		}
		p.Name = strings.TrimSpace(*req.Name)
	}
	if req.Provider != nil && *req.Provider != p.Provider {
		return invalid("provider", "provider cannot be changed; create a new provider setting instead")
	}
	if req.BaseURL != nil {
		p.BaseURL = strings.TrimSpace(*req.BaseURL)
		if err := validBaseURL(p.Provider, p.BaseURL); err != nil {
			return err
		}
	}
	if req.AllowedModels != nil {
		if p.AllowedModels, err = form.ValidModels("allowedModels", req.AllowedModels); err != nil {
			return err
		}
	}
	if err := applyKindFields(p, &req); err != nil {
		return err
	}
	apiKey, err := validAPIKey(req.APIKey, false)
	if err != nil {
		return err
	}
	if apiKey != "" {
		// A new version of the same secret. The proxies read the provider
		// setting on every request and drop their cached secret when its
		// KeyVersion has moved, so the next request uses the new key.
		if p.SecretID, err = h.putSecret(r, p.ID, apiKey); err != nil {
			return err
		}
		p.KeyVersion++
	}
	p.UpdatedAt = h.cfg.Now().Unix()
	if err := h.providers.UpdateProvider(r.Context(), p); err != nil {
		return response.StoreError(err, "provider "+id)
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "provider updated",
		slog.String("provider", p.ID), slog.Bool("apiKeyChanged", apiKey != ""))
	return response.JSON(w, http.StatusOK, providerView(p))
}

// putSecret stores a provider's API key and returns the id to read it by.
func (h *Handler) putSecret(r *http.Request, providerID, apiKey string) (string, error) {
	if h.cfg.Secrets == nil {
		return "", apierror.New(http.StatusServiceUnavailable, apierror.CodeServiceUnavailable, "secret storage is not configured")
	}
	name := h.cfg.SecretPrefix + providerID
	arn, err := h.cfg.Secrets.Put(r.Context(), name, apiKey)
	if err != nil {
		return "", apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"secret storage is unavailable, try again later")
	}
	if arn == "" {
		arn = name
	}
	return arn, nil
}

// validAPIKey returns the trimmed provider API key; required says whether it
// must be present.
func validAPIKey(s *string, required bool) (string, error) {
	if s == nil && !required {
		return "", nil
	}
	if s == nil || strings.TrimSpace(*s) == "" {
		return "", invalid("apiKey", "apiKey is required and must be a non-empty string")
	}
	return strings.TrimSpace(*s), nil
}

// validBaseURL checks base for a provider of kind: required for kinds that
// have no default, and when given an absolute http(s) URL without
// credentials, query or fragment (the proxy appends the client's path and
// query to it).
func validBaseURL(kind, base string) error {
	if base == "" {
		if provider.DefaultBaseURL(kind) == "" {
			return invalid("baseUrl", "baseUrl is required for %s providers", kind)
		}
		return nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return mustBe("baseUrl", "an absolute http(s) URL, like https://api.example.com/v1")
	}
	if u.User != nil {
		return invalid("baseUrl", "baseUrl must not contain credentials; send the key as apiKey")
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(base, "?#") {
		return invalid("baseUrl", "baseUrl must not have a query or fragment")
	}
	return nil
}

// maxCeiling bounds a setting's per-minute ceilings.
const maxCeiling = 1_000_000_000

// validAzureAPIVersion reports whether v has the shape of an Azure OpenAI
// api-version: 20YY-MM-DD, the month's first digit 0 or 1 and the day's 0
// to 3, optionally followed by "-preview" (written out rather than a
// regexp compiled at package init, which every cold start paid).
func validAzureAPIVersion(v string) bool {
	v, _ = strings.CutSuffix(v, "-preview")
	if len(v) != len("2024-10-21") || v[0] != '2' || v[1] != '0' || v[4] != '-' || v[7] != '-' {
		return false
	}
	for _, i := range []int{2, 3, 5, 6, 8, 9} {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return v[5] <= '1' && v[8] <= '3'
}

// applyKindFields sets the fields of req that only some kinds have
// (apiVersion and deployments: Azure's) on p, and checks them against p's
// kind as it then stands, on create and on PATCH alike.
func applyKindFields(p *provider.Setting, req *providerRequest) error {
	for _, f := range []struct {
		name string
		in   *int64
		out  *int64
	}{{"requestsPerMinute", req.RequestsPerMinute, &p.RequestsPerMinute}, {"tokensPerMinute", req.TokensPerMinute, &p.TokensPerMinute}} {
		if f.in == nil {
			continue
		}
		if *f.in < 0 || *f.in > maxCeiling {
			return mustBe(f.name, "a whole number from 0 (no ceiling) to 1000000000")
		}
		*f.out = *f.in
	}
	if req.Prices != nil {
		table, err := pricing.Default()
		if err != nil {
			return fmt.Errorf("price table: %w", err)
		}
		rates, err := table.ParseRates(*req.Prices)
		if err != nil {
			return invalid("prices", "prices must be {\"<model>\": {\"input\": 0.10, \"output\": 0.20, \"cachedInput\": 0.05}} in USD per 1M tokens (non-negative, at most 6 decimal places, at most 1000): %s",
				strings.TrimPrefix(err.Error(), "pricing: prices: "))
		}
		p.Prices = nil
		if len(rates) > 0 {
			p.Prices = make(map[string]provider.Rates, len(rates))
			for m, r := range rates {
				p.Prices[m] = provider.Rates{Input: r.Input, CachedInput: r.CachedInput, CacheWrite: r.CacheWrite, Output: r.Output}
			}
		}
	}
	if req.APIVersion != nil {
		p.APIVersion = strings.TrimSpace(*req.APIVersion)
	}
	if req.Deployments != nil {
		deps := make(map[string]string, len(*req.Deployments))
		for model, dep := range *req.Deployments {
			model, dep = strings.TrimSpace(model), strings.TrimSpace(dep)
			if model == "" || dep == "" || strings.ContainsAny(dep, "/?#") {
				return invalid("deployments", "deployments maps model names to Azure deployment names; %q: %q is not one", model, dep)
			}
			deps[model] = dep
		}
		p.Deployments = deps
		if len(deps) == 0 {
			p.Deployments = nil
		}
	}
	if p.Provider != provider.Azure {
		switch {
		case p.APIVersion != "":
			return invalid("apiVersion", "apiVersion applies only to azure providers")
		case len(p.Deployments) > 0:
			return invalid("deployments", "deployments apply only to azure providers")
		}
		return nil
	}
	if !validAzureAPIVersion(p.APIVersion) {
		return invalid("apiVersion", "apiVersion is required for azure providers: an api-version such as 2024-10-21")
	}
	if u, err := url.Parse(p.BaseURL); err == nil && strings.Contains(u.Path+"/", "/openai/") {
		return invalid("baseUrl", "an azure provider's baseUrl is the resource endpoint, like https://example.openai.azure.com, without /openai: stipend adds /openai/deployments/<deployment>/...")
	}
	return nil
}
