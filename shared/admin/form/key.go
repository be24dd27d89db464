package form

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/storeerr"
)

// Rules applies the forms. The zero Rules prices nothing and seals nothing;
// package admin builds the one its routes use.
type Rules struct {
	// PricedModel reports whether the proxy can price model, so a key's
	// allowedModels never names a model every request would be refused for.
	PricedModel func(model string) bool
	// Vault seals the plaintext of ANYTIME_BY_VIEWER keys; nil refuses that
	// retrieval method.
	Vault Sealer
}

// Sealer seals a proxy key's plaintext for storage, bound to the key's id;
// *keyvault.Vault implements it. Seal may not put the plaintext in its error.
type Sealer interface {
	Seal(ctx context.Context, keyID, plaintext string) (string, error)
}

// ProviderReader reads provider settings: a key's providerSettingIds must
// name stored ones, and their prices make models priced.
type ProviderReader interface {
	GetProvider(ctx context.Context, id string) (*provider.Setting, error)
	ListProviders(ctx context.Context) ([]*provider.Setting, error)
}

// ApplyKey validates the fields present in req and writes them to k. It is
// shared by create (k fresh) and update (k as stored). settings are
// req.ProviderSettingIDs already checked by CheckSettings (nil when absent);
// now sets expiresAt when a ttl is given.
func (r Rules) ApplyKey(req *KeyRequest, settings []string, k *apikey.Key, now time.Time) error {
	if req.Name != nil {
		k.Name = strings.TrimSpace(*req.Name)
	}
	if settings != nil {
		k.SettingIDs = settings
	}
	for _, err := range []error{
		setTTL(req.TTL, RuleTTL, false, now, &k.TTL, &k.ExpiresAt),
		setRate(req.RateLimitOverTime, req.RateLimitUnit, &k.RateLimitOverTime, &k.RateLimitUnit),
		setDollars("costLimitInUsdPerMonth", req.CostLimitPerMonth, &k.CostLimitPerMonth),
		setDollars("costLimitInUsdLifetime", req.CostLimitLifetime, &k.CostLimitLifetime),
		setDollars("costLimitInUsdOverTime", req.CostLimitOverTime, &k.CostLimitOverTime),
		setCostUnit(req.CostLimitUnit, &k.CostLimitUnit),
	} {
		if err != nil {
			return err
		}
	}
	if req.AllowedModels != nil {
		models, err := ValidModels("allowedModels", req.AllowedModels)
		if err != nil {
			return err
		}
		k.AllowedModels = models
	}
	if req.AllowedPaths != nil {
		paths, err := validPaths(*req.AllowedPaths)
		if err != nil {
			return err
		}
		k.AllowedPaths = paths
	}
	if req.ModelLimits != nil {
		for model, l := range *req.ModelLimits {
			if strings.TrimSpace(model) == "" || l.RPM < 0 || l.TPM < 0 {
				return request.MustBe("modelLimits", RuleModelLimits)
			}
		}
		k.ModelLimits = *req.ModelLimits
	}
	if req.UserID != nil {
		k.UserID = strings.TrimSpace(*req.UserID)
	}
	if req.ShouldLogRequest != nil {
		k.ShouldLogRequest = *req.ShouldLogRequest
	}
	if req.ShouldLogResponse != nil {
		k.ShouldLogResponse = *req.ShouldLogResponse
	}
	if req.Moderation != nil {
		k.Moderation = *req.Moderation
	}
	if req.ModerationStrikeLimit != nil {
		if *req.ModerationStrikeLimit < 1 {
			return request.MustBe("moderationStrikeLimit", "a positive integer")
		}
		k.ModerationStrikeLimit = int64(*req.ModerationStrikeLimit)
	}
	if req.LowerMaxTokens != nil {
		v := *req.LowerMaxTokens
		k.LowerMaxTokens = &v
	}
	if req.Tags != nil {
		k.Tags = response.NonEmpty(*req.Tags)
	}
	if req.Metadata != nil {
		if err := CheckMetadata("metadata", *req.Metadata); err != nil {
			return err
		}
		k.Metadata = *req.Metadata
	}
	if req.Aliases != nil {
		aliases, err := ValidAliases("aliases", *req.Aliases)
		if err != nil {
			return err
		}
		k.Aliases = aliases
	}
	if req.AllowedModels != nil || req.Aliases != nil {
		if err := r.CheckPriced("allowedModels", k.AllowedModels, k.Aliases); err != nil {
			return err
		}
	}
	// Rules across fields, checked on the result so an update that sets only
	// one of a pair is judged with the other as stored.
	if k.RateLimitOverTime > 0 && k.RateLimitUnit == "" {
		return request.Invalid("rateLimitUnit", "rateLimitUnit is required when rateLimitOverTime is greater than 0; it must be %s", RuleRateUnit)
	}
	if k.CostLimitOverTime > 0 && k.CostLimitUnit == "" {
		return request.Invalid("costLimitInUsdUnit", "costLimitInUsdUnit is required when costLimitInUsdOverTime is greater than 0; it must be %s", RuleCostUnit)
	}
	return nil
}

// retrievalMethod returns the keyRetrievalMethod a new key gets from req
// (ONCE when absent), or the 400 for one stipend does not support.
func retrievalMethod(req *KeyRequest) (string, error) {
	method := RetrieveOnce
	if req.KeyRetrievalMethod != nil && *req.KeyRetrievalMethod != "" {
		method = *req.KeyRetrievalMethod
	}
	switch method {
	case RetrieveOnce, RetrieveOncePerViewer:
		return method, nil
	case RetrieveAnytimeByViewer:
		// ANYTIME_BY_VIEWER needs the plaintext kept, sealed (Rules.Seal).
		// Routes that seal their keys accept it
		// through Rules.RetrievalMethod; routes that do not seal
		// refuse it rather than silently downgrade it.
		return "", request.Invalid("keyRetrievalMethod", "keyRetrievalMethod ANYTIME_BY_VIEWER is not supported yet; use ONCE or ONCE_PER_VIEWER")
	default:
		return "", request.MustBe("keyRetrievalMethod", "ONCE or ONCE_PER_VIEWER")
	}
}

// RetrievalMethod is retrievalMethod for a route that seals its keys
// with Seal: it also accepts ANYTIME_BY_VIEWER, when a Vault is set.
func (r Rules) RetrievalMethod(req *KeyRequest) (string, error) {
	if req.KeyRetrievalMethod == nil {
		return retrievalMethod(req)
	}
	switch *req.KeyRetrievalMethod {
	case RetrieveAnytimeByViewer:
		if r.Vault == nil {
			return "", ErrRetrievalOff
		}
		return RetrieveAnytimeByViewer, nil
	case "", RetrieveOnce, RetrieveOncePerViewer:
		return retrievalMethod(req)
	}
	return "", request.MustBe("keyRetrievalMethod", "ONCE, ONCE_PER_VIEWER or ANYTIME_BY_VIEWER")
}

// ErrRetrievalOff is the 400 for ANYTIME_BY_VIEWER when no Vault is set.
var ErrRetrievalOff = request.Invalid("keyRetrievalMethod", "key retrieval is not configured")

// Seal keeps plaintext, sealed, in k when k's retrieval method is
// ANYTIME_BY_VIEWER; other methods keep nothing. It is called before the key
// is stored. Without a Vault, ANYTIME_BY_VIEWER is a 400.
func (r Rules) Seal(ctx context.Context, k *apikey.Key, plaintext string) error {
	if k.KeyRetrievalMethod != RetrieveAnytimeByViewer {
		k.Sealed = ""
		return nil
	}
	if r.Vault == nil {
		return ErrRetrievalOff
	}
	sealed, err := r.Vault.Seal(ctx, k.ID, plaintext)
	if err != nil {
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeServiceUnavailable,
			"key encryption is unavailable, try again later")
	}
	k.Sealed = sealed
	return nil
}

// CheckSettings checks that ids is a non-empty list of existing provider
// settings and returns it without duplicates.
func CheckSettings(ctx context.Context, store ProviderReader, ids []string) ([]string, error) {
	const field = "providerSettingIds"
	if len(ids) == 0 {
		return nil, request.Invalid(field, "providerSettingIds is required and must be a non-empty list of provider setting ids")
	}
	out := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == "" {
			return nil, request.Invalid(field, "providerSettingIds must not contain an empty id")
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, err := store.GetProvider(ctx, id); err != nil {
			if storeerr.IsNotFound(err) {
				return nil, request.Invalid(field, "provider setting %q does not exist", id)
			}
			return nil, response.StoreError(err, "provider "+id)
		}
		out = append(out, id)
	}
	return out, nil
}

// httpMethods are the methods an allowedPaths rule may name ("" and "*" mean any).
var httpMethods = map[string]bool{
	"": true, "*": true, "GET": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "HEAD": true, "OPTIONS": true,
}

func validPaths(rules []apikey.PathRule) ([]apikey.PathRule, error) {
	out := make([]apikey.PathRule, 0, len(rules))
	for _, p := range rules {
		p.Method = strings.ToUpper(strings.TrimSpace(p.Method))
		if !strings.HasPrefix(p.Path, "/v1/") || strings.ContainsAny(p.Path, "?# \t\r\n") {
			return nil, request.Invalid("allowedPaths", "allowedPaths must be %s; %q is not", RulePaths, p.Path)
		}
		if !httpMethods[p.Method] {
			return nil, request.Invalid("allowedPaths", "allowedPaths method %q is not an HTTP method", p.Method)
		}
		out = append(out, p)
	}
	return out, nil
}

// ValidModels checks a list of model names and returns it, never nil.
func ValidModels(field string, list *[]string) ([]string, error) {
	if list == nil {
		return []string{}, nil
	}
	out := make([]string, 0, len(*list))
	for _, m := range *list {
		m = strings.TrimSpace(m)
		if m == "" {
			return nil, request.MustBe(field, "a list of non-empty model names")
		}
		out = append(out, m)
	}
	return out, nil
}

// MaxAliases bounds a key's aliases; they travel with every request.
const MaxAliases = 256

// ValidAliases checks a key's aliases: non-empty, trimmed model names on
// both sides, at most MaxAliases of them. It returns nil for an empty map.
func ValidAliases(field string, in map[string]string) (map[string]string, error) {
	if len(in) > MaxAliases {
		return nil, request.Invalid(field, "%s may map at most %d model names", field, MaxAliases)
	}
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for from, to := range in {
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if from == "" || to == "" || len(from) > 256 || len(to) > 256 {
			return nil, request.MustBe(field, RuleAliases)
		}
		out[from] = to
	}
	return out, nil
}

// CheckPriced refuses a model in models that the proxy cannot price unless
// aliases maps it to another model (the proxy then serves and prices the
// target): every request for it would be refused with model_not_priced.
func (r Rules) CheckPriced(field string, models []string, aliases map[string]string) error {
	for _, m := range models {
		if aliases[m] != "" || r.PricedModel(m) {
			continue
		}
		return request.Invalid(field, "%s: %q is not a model stipend can price, nor an alias of this key; name a priced model (GET /v1/models on the proxy lists them)", field, m)
	}
	return nil
}

// WithSettingPrices returns a copy of r for one request whose PricedModel
// also accepts the models some provider setting's prices price, so a key's
// allowedModels may name them (a vLLM server's llama-3.1-8b-instruct). The
// settings are listed at most once, and only for a model the embedded table
// lacks.
func (r Rules) WithSettingPrices(ctx context.Context, store ProviderReader) Rules {
	c := r
	embedded := r.PricedModel
	// Read once, on first need, and safe for the roster's and bulk
	// update's concurrent workers.
	settingPriced := sync.OnceValue(func() map[string]bool {
		priced := map[string]bool{}
		list, err := store.ListProviders(ctx)
		if err != nil {
			return priced // refused as unpriced; the admin retries
		}
		for _, p := range list {
			for m := range p.Prices {
				priced[m] = true
			}
		}
		return priced
	})
	c.PricedModel = func(model string) bool {
		return embedded(model) || settingPriced()[model]
	}
	return c
}

// EmbeddedPrices is PricedModel over the embedded price table. The table is
// part of the binary; if it ever failed to parse, no model is priced.
func EmbeddedPrices() func(string) bool {
	t, err := pricing.Default()
	if err != nil {
		return func(string) bool { return false }
	}
	return func(m string) bool {
		_, ok := t.Lookup(m)
		return ok
	}
}
