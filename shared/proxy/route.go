package proxy

// Routing: which provider settings may serve a request, in the order they
// are tried, and the price the reservation covers them at.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
)

// maxAttempts is how many settings one request may be sent to: the chosen
// one and, when it fails before any byte reached the client, one other.
const maxAttempts = 2

// candidate is one provider setting a request may be sent to, with the
// request's price on it.
type candidate struct {
	prov  *provider.Setting
	price pricing.Price
	// Read when the request is sent to it (load): the setting read fresh,
	// its provider key and the upstream URL.
	apiKey, endpoint string
}

// settings returns the provider settings a key may use: the ones it names,
// or every setting for a key that names none (a LiteLLM /key/generate
// key), from the configuration cache.
func (h *Handler) settings(ctx context.Context, key *apikey.Key) ([]*provider.Setting, error) {
	if len(key.SettingIDs) == 0 {
		return h.allProviders.Get(ctx, "")
	}
	out := make([]*provider.Setting, 0, len(key.SettingIDs))
	for _, id := range key.SettingIDs {
		p, err := h.providers.Get(ctx, id)
		if isNotFound(err) {
			continue // deleted since the key was made: not a route
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// serves reports whether setting p can serve model on the client's path:
// the setting's allowedModels when it names some, else its deployments, its
// prices or its kind's model families (provider.ServesFamily). Anthropic's
// Messages API goes only to Anthropic, and an Azure deployment serves only
// chat completions, completions and embeddings.
func serves(p *provider.Setting, model, path string) bool {
	switch {
	case path == anthropicMessages && p.Provider != provider.Anthropic:
		return false
	case p.Provider == provider.Anthropic && path != anthropicMessages && path != "/v1/chat/completions":
		return false
	case p.Provider == provider.Azure && !provider.AzureServesPath(path):
		return false
	}
	if len(p.AllowedModels) > 0 {
		return slices.Contains(p.AllowedModels, model)
	}
	if _, ok := p.Deployments[model]; ok {
		return true
	}
	if _, ok := p.Prices[model]; ok {
		return true
	}
	return provider.ServesFamily(p.Provider, model)
}

// priceOn prices model on setting p (pricesOn).
func (h *Handler) priceOn(ctx context.Context, p *provider.Setting, model string) (pricing.Price, bool) {
	return h.pricesOn(ctx, p).Lookup(model)
}

// pricer looks prices up; *pricing.Table is one.
type pricer interface {
	Lookup(model string) (pricing.Price, bool)
}

// noPrices prices nothing.
type noPrices struct{}

func (noPrices) Lookup(string) (pricing.Price, bool) { return pricing.Price{}, false }

// pricesOn returns setting p's prices: its own laid over the embedded table
// (a pricing.Overlay, which shares the table rather than copying it), or
// the embedded table alone.
func (h *Handler) pricesOn(ctx context.Context, p *provider.Setting) pricer {
	if len(p.Prices) == 0 {
		return h.cfg.Prices
	}
	rates := make(map[string]pricing.Rates, len(p.Prices))
	for m, r := range p.Prices {
		rates[m] = pricing.Rates{Input: r.Input, CachedInput: r.CachedInput, CacheWrite: r.CacheWrite, Output: r.Output}
	}
	t, err := h.cfg.Prices.WithRates(rates)
	if err != nil {
		// Stored prices the admin API would refuse: the setting prices
		// nothing rather than something wrongly.
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "provider setting has invalid prices",
			slog.String("provider", p.ID), slog.String("cause", err.Error()))
		return noPrices{}
	}
	return t
}

// route finds the settings that can serve the request's model and orders
// them at random (spreading traffic over several provider accounts); the
// first priced one is tried first, and one more priced the same way
// (same tokenizer encoding, so one prompt count bounds both) is kept for a
// failover. The reservation's price is the dearer of the two, figure by
// figure, so one reservation covers either. None can serve the model: 403
// model_not_allowed; none prices it: 400 model_not_priced.
//
// ctx bounds the store's work (forward).
func (h *Handler) route(ctx context.Context, x *exchange) error {
	all, err := h.settings(ctx, x.key)
	if err != nil {
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"the provider settings are unavailable; try again shortly")
	}
	model, path := x.req.Model, x.r.URL.Path
	var eligible []*provider.Setting
	for _, p := range all {
		if serves(p, model, path) {
			eligible = append(eligible, p)
		}
	}
	if len(eligible) == 0 && !h.pricedAnywhere(ctx, all, model) {
		return errNotPriced(model)
	}
	if len(eligible) == 0 {
		msg := fmt.Sprintf("no provider setting of this key serves model %q", x.requested)
		if len(all) == 0 {
			msg = "this key has no provider setting; ask the administrator to add one"
		} else if path == anthropicMessages {
			msg += " through Anthropic's Messages API (POST /v1/messages); use /v1/chat/completions for other providers"
		}
		return apierror.New(http.StatusForbidden, apierror.CodeModelNotAllowed, msg).WithParam("model")
	}
	rand.Shuffle(len(eligible), func(i, j int) { eligible[i], eligible[j] = eligible[j], eligible[i] })
	x.route = x.route[:0]
	for _, p := range eligible {
		price, ok := h.priceOn(ctx, p, model)
		// A failover goes only to a setting without ceilings of its own:
		// the reservation holds the first setting's (ceilingOf).
		if !ok || len(x.route) > 0 && (price.Encoding != x.route[0].price.Encoding || ceilingOf(p) != nil) {
			continue
		}
		x.route = append(x.route, &candidate{prov: p, price: price})
		if len(x.route) == maxAttempts {
			break
		}
	}
	if len(x.route) == 0 {
		return errNotPriced(model)
	}
	x.price = x.route[0].price
	for _, c := range x.route[1:] {
		x.price = ceiling(x.price, c.price)
	}
	return nil
}

// pricedAnywhere reports whether the embedded table or one of settings
// prices model: a model nobody prices is refused as unpriced, not as
// unserved.
func (h *Handler) pricedAnywhere(ctx context.Context, settings []*provider.Setting, model string) bool {
	if _, ok := h.cfg.Prices.Lookup(model); ok {
		return true
	}
	for _, p := range settings {
		if _, ok := h.priceOn(ctx, p, model); ok {
			return true
		}
	}
	return false
}

func errNotPriced(model string) error {
	return apierror.New(http.StatusBadRequest, apierror.CodeModelNotPriced,
		fmt.Sprintf("model %q has no known price, so its spend cannot be limited", model)).WithParam("model")
}

// ceilingOf is setting p's own per-minute ceilings, or nil.
func ceilingOf(p *provider.Setting) *budget.ProviderCeiling {
	if p.RequestsPerMinute <= 0 && p.TokensPerMinute <= 0 {
		return nil
	}
	return &budget.ProviderCeiling{ID: p.ID, RPM: p.RequestsPerMinute, TPM: p.TokensPerMinute}
}

// ceiling is a price at least a and b in every figure that can raise a
// request's cost or its reservation.
func ceiling(a, b pricing.Price) pricing.Price {
	c := a
	c.Input, c.CachedInput = max(a.Input, b.Input), max(a.CachedInput, b.CachedInput)
	c.CacheWrite, c.Output = max(a.CacheWrite, b.CacheWrite), max(a.Output, b.Output)
	c.MaxOutputTokens, c.ContextWindow = max(a.MaxOutputTokens, b.MaxOutputTokens), max(a.ContextWindow, b.ContextWindow)
	c.PromptTokenPercent = max(a.PromptTokenPercent, b.PromptTokenPercent)
	return c
}

// load reads candidate c's setting fresh, not from the configuration cache
// (a changed provider key applies to the very next request), its provider
// key and the upstream URL for the request.
//
// The read has Config.ReserveTimeout of its own: a failover happens after
// the first attempt, when the deadline of the work before forwarding has
// gone.
func (h *Handler) load(ctx context.Context, x *exchange, c *candidate) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReserveTimeout)
	defer cancel()
	f := h.fetch(ctx, c.prov.ID, x.r.URL.Path, x.r.URL.RawQuery, x.req.Model)
	if f.err != nil {
		return f.err
	}
	c.prov, c.apiKey, c.endpoint = f.prov, f.apiKey, f.endpoint
	return nil
}

// fetched is what fetch read: a setting read fresh, its provider key and
// the upstream URL for one request, or the client-safe error that stops it.
type fetched struct {
	prov             *provider.Setting
	apiKey, endpoint string
	err              error
}

// fetch reads setting id fresh with its provider key and the upstream URL
// for path, query and model. It changes nothing, so it may run while the
// request's reservation is made (forward).
func (h *Handler) fetch(ctx context.Context, id, path, query, model string) fetched {
	p, secret, err := h.readSetting(ctx, id)
	if err != nil {
		return fetched{err: err}
	}
	endpoint, err := p.Endpoint(path, query, model)
	if errors.Is(err, provider.ErrPathNotServed) {
		return fetched{err: apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest,
			fmt.Sprintf("this key's provider setting (%s) does not serve %s", p.Provider, path))}
	}
	if err != nil {
		return fetched{err: apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError, "the provider setting has no usable base URL")}
	}
	return fetched{prov: p, apiKey: secret, endpoint: endpoint}
}

// readSetting reads setting id fresh and its provider key, within ctx's
// deadline (the caller's: Config.ReserveTimeout).
func (h *Handler) readSetting(ctx context.Context, id string) (*provider.Setting, string, error) {
	p, err := h.cfg.Providers.GetProvider(ctx, id)
	if err != nil {
		return nil, "", apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"the provider setting is unavailable; try again shortly")
	}
	h.forgetStaleSecret(p)
	secret, err := h.cfg.Secrets.Get(ctx, p.SecretID)
	if err != nil {
		return nil, "", apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"the provider key is unavailable; try again shortly")
	}
	return p, secret, nil
}

// screener is the setting that screens a moderated key's input: the
// request's own when it serves OpenAI's moderation endpoint, else another
// of the key's settings that does (an Azure or Anthropic setting has none),
// read within Config.ReserveTimeout.
func (h *Handler) screener(ctx context.Context, x *exchange) (*provider.Setting, string, error) {
	if serves(x.prov, moderationModel, "/v1/moderations") {
		return x.prov, x.apiKey, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReserveTimeout)
	defer cancel()
	all, err := h.settings(ctx, x.key)
	if err != nil {
		return nil, "", apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"the provider settings are unavailable; try again shortly")
	}
	for _, p := range all {
		if serves(p, moderationModel, "/v1/moderations") {
			return h.readSetting(ctx, p.ID)
		}
	}
	return nil, "", apierror.New(http.StatusBadGateway, apierror.CodeUpstreamError,
		"this key requires moderation, and none of its provider settings has a moderation endpoint (an OpenAI setting has one); tell your instructor")
}

// servable lists the models the key can reach: every model some setting it
// may use serves (serves, on any path) and prices.
func (h *Handler) servable(ctx context.Context, key *apikey.Key) []string {
	all, err := h.settings(ctx, key)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	for _, p := range all {
		prices := h.pricesOn(ctx, p)
		names := h.cfg.Prices.Models()
		names = append(names, p.AllowedModels...)
		for m := range p.Deployments {
			names = append(names, m)
		}
		for m := range p.Prices {
			names = append(names, m)
		}
		for _, m := range names {
			if seen[m] || !servesAnyPath(p, m) {
				continue
			}
			if _, ok := prices.Lookup(m); ok {
				seen[m] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// servesAnyPath is serves on the path the setting's kind answers most.
func servesAnyPath(p *provider.Setting, model string) bool {
	path := "/v1/chat/completions"
	if p.Provider == provider.Anthropic {
		path = anthropicMessages
	}
	if strings.Contains(model, "embedding") {
		path = "/v1/embeddings"
	}
	return serves(p, model, path)
}
