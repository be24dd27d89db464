package pricing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
)

// Defaults of an admin-priced model the embedded table lacks (a vLLM or
// Ollama server's "llama-3.1-8b-instruct"): its tokenizer is unknown, so
// prompts are counted with cl100k_base and bounded at 150% like Claude's.
const (
	CustomContextWindow      = 131_072
	CustomMaxOutputTokens    = 32_768
	customPromptTokenPercent = 150
	// MaxCustomPrice bounds an admin-set price: $1,000 per 1M tokens.
	MaxCustomPrice = 1_000 * picoPerMicroUSD
	// maxNumberLen bounds the JSON number text read as a price.
	maxNumberLen = 40
)

// customPrice is one entry of a provider setting's prices: US dollars per
// one million tokens, as JSON numbers.
type customPrice struct {
	Input       *json.Number `json:"input"`
	Output      *json.Number `json:"output"`
	CachedInput *json.Number `json:"cachedInput"`
	CacheWrite  *json.Number `json:"cacheWrite"`
}

// WithPrices returns a table for one provider setting: t with the setting's
// admin-set prices laid over it. prices is the setting's JSON
// {"<model>": {"input": 0.10, "output": 0.20, "cachedInput": 0.05}} in US
// dollars per one million tokens; "cachedInput" (default: input) and
// "cacheWrite" (default: input scaled by the embedded entry's cache-write
// ratio, else input) are optional. An empty or null prices returns t itself.
//
// Each number is read as the exact decimal it is written as (never through
// float64) and converted once, here, to integer pico-dollars per token; a
// price must be non-negative, at most $1,000 per 1M tokens
// (MaxCustomPrice) and a whole number of pico-dollars per token (at most six
// decimal places), and cachedInput may not exceed input. Errors name the
// model and the field.
//
// A model the embedded table has keeps its kind, encoding, context window and
// output limit, with the new prices; so do its dated names
// ("claude-sonnet-4-5-20250929" finds an override of "claude-sonnet-4-5"),
// unless the table has a separate entry for that dated name. A model the table
// lacks is priced as a chat model with the Custom* limits and cl100k_base.
// The returned table is immutable; t is not changed.
func (t *Table) WithPrices(prices []byte) (*Table, error) {
	trimmed := bytes.TrimSpace(prices)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return t, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var in map[string]customPrice
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("pricing: prices: %w", err)
	}
	if dec.More() {
		return nil, errors.New("pricing: prices: trailing data")
	}
	if len(in) == 0 {
		return t, nil
	}
	out := &Table{
		asOf:   t.asOf,
		source: t.source,
		prices: make(map[string]Price, len(t.prices)+len(in)),
	}
	for name, p := range t.prices {
		out.prices[name] = p
	}
	for name, c := range in {
		p, err := t.custom(name, c)
		if err != nil {
			return nil, fmt.Errorf("pricing: prices: model %q: %w", name, err)
		}
		out.prices[name] = p
	}
	out.names = make([]string, 0, len(out.prices))
	for name := range out.prices {
		out.names = append(out.names, name)
	}
	sort.Strings(out.names)
	return out, nil
}

func (t *Table) custom(name string, c customPrice) (Price, error) {
	if name == "" || strings.TrimSpace(name) != name || strings.Contains(name, ":") || len(name) > 200 {
		return Price{}, errors.New("invalid model name")
	}
	if c.Input == nil || c.Output == nil {
		return Price{}, errors.New("input and output prices are required")
	}
	base, known := t.Lookup(name)
	p := Price{
		Model:              name,
		Kind:               KindChat,
		MaxOutputTokens:    CustomMaxOutputTokens,
		ContextWindow:      CustomContextWindow,
		Encoding:           EncodingCL100k,
		PromptTokenPercent: customPromptTokenPercent,
	}
	if known {
		p.Kind, p.MaxOutputTokens, p.ContextWindow = base.Kind, base.MaxOutputTokens, base.ContextWindow
		p.Encoding, p.PromptTokenPercent = base.Encoding, base.PromptTokenPercent
	}
	var err error
	if p.Input, err = parseCustomNumber(*c.Input); err != nil {
		return Price{}, fmt.Errorf("input: %w", err)
	}
	if p.Output, err = parseCustomNumber(*c.Output); err != nil {
		return Price{}, fmt.Errorf("output: %w", err)
	}
	p.CachedInput = p.Input
	if c.CachedInput != nil {
		if p.CachedInput, err = parseCustomNumber(*c.CachedInput); err != nil {
			return Price{}, fmt.Errorf("cachedInput: %w", err)
		}
		if p.CachedInput > p.Input {
			return Price{}, errors.New("cachedInput exceeds input")
		}
	}
	p.CacheWrite = p.Input
	switch {
	case c.CacheWrite != nil:
		if p.CacheWrite, err = parseCustomNumber(*c.CacheWrite); err != nil {
			return Price{}, fmt.Errorf("cacheWrite: %w", err)
		}
	case known && base.Input > 0 && base.CacheWrite > base.Input:
		// Keep the provider's cache-write surcharge (Anthropic: 1.25x),
		// rounded up so a write is never priced below the provider's ratio.
		// Both factors are at most ~1e9 and 1.25e9: no overflow.
		p.CacheWrite = (p.Input*base.CacheWrite + base.Input - 1) / base.Input
	}
	return p, nil
}

// parseCustomNumber converts a JSON number of US dollars per one million
// tokens into pico-dollars per token exactly, reading its text as a decimal.
func parseCustomNumber(n json.Number) (int64, error) {
	s := n.String()
	if len(s) > maxNumberLen {
		return 0, fmt.Errorf("%q: too many digits", s)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%s: price is negative", s)
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		// Bound the exponent before big.Rat expands it.
		exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || exp < -30 || exp > 30 {
			return 0, fmt.Errorf("%s: not a price in US dollars per 1M tokens", s)
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, fmt.Errorf("%s: not a number", s)
	}
	if r.Sign() < 0 {
		return 0, fmt.Errorf("%s: price is negative", s)
	}
	r.Mul(r, big.NewRat(picoPerMicroUSD, 1))
	if !r.IsInt() {
		return 0, fmt.Errorf("%s: more than 6 decimal places (finer than one pico-dollar per token)", s)
	}
	v := r.Num()
	if !v.IsInt64() || v.Int64() > MaxCustomPrice {
		return 0, fmt.Errorf("%s: above $1000 per 1M tokens", s)
	}
	return v.Int64(), nil
}
