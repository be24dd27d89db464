package pricing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
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
	Input       *number `json:"input"`
	Output      *number `json:"output"`
	CachedInput *number `json:"cachedInput"`
	CacheWrite  *number `json:"cacheWrite"`
}

// number is a JSON number's text; unlike json.Number it refuses a string.
type number json.Number

func (n *number) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] == '"' {
		return errors.New("a price must be a JSON number")
	}
	*n = number(b)
	return nil
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
// The returned Overlay is immutable; t is not changed.
func (t *Table) WithPrices(prices []byte) (*Overlay, error) {
	rates, err := t.ParseRates(prices)
	if err != nil {
		return nil, err
	}
	return t.WithRates(rates)
}

// Overlay is a provider setting's prices laid over a Table: Lookup resolves
// a name as Table.Lookup does, trying the setting's entries before the
// table's at each step. Building one costs only the setting's own entries
// (the table is shared, not copied), so it can be built per request. It is
// immutable and safe for concurrent use.
type Overlay struct {
	base *Table
	own  map[string]Price
}

// Lookup finds the price of model: the setting's own entry for it (or for
// its undated name) first, else the table's.
func (o *Overlay) Lookup(model string) (Price, bool) { return resolve(model, o.own, o.base.prices) }

// Rates is an admin-set price of one model in integer pico-dollars per token
// (micro-dollars per 1M tokens), every figure resolved: what a provider
// setting stores.
type Rates struct {
	Input, CachedInput, CacheWrite, Output int64
}

// ParseRates reads a setting's prices JSON (see WithPrices) into Rates,
// exactly, with the optional figures resolved against t; an empty or null
// prices is no rates. Errors name the model and the field.
func (t *Table) ParseRates(prices []byte) (map[string]Rates, error) {
	trimmed := bytes.TrimSpace(prices)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, nil
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
	out := make(map[string]Rates, len(in))
	for name, c := range in {
		r, err := t.rates(name, c)
		if err != nil {
			return nil, fmt.Errorf("pricing: prices: model %q: %w", name, err)
		}
		out[name] = r
	}
	return out, nil
}

// WithRates returns t with rates laid over it, as WithPrices does; rates
// are checked again (non-negative, at most MaxCustomPrice, cachedInput at
// most input), since they may come from storage.
func (t *Table) WithRates(rates map[string]Rates) (*Overlay, error) {
	out := &Overlay{base: t}
	if len(rates) == 0 {
		return out, nil
	}
	out.own = make(map[string]Price, len(rates))
	for name, r := range rates {
		if err := validName(name); err != nil {
			return nil, fmt.Errorf("pricing: prices: model %q: %w", name, err)
		}
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("pricing: prices: model %q: %w", name, err)
		}
		out.own[name] = t.customPrice(name, r)
	}
	return out, nil
}

func validName(name string) error {
	if name == "" || strings.TrimSpace(name) != name || strings.Contains(name, ":") || len(name) > 200 {
		return errors.New("invalid model name")
	}
	return nil
}

func (r Rates) check() error {
	for _, v := range [...]int64{r.Input, r.CachedInput, r.Output} {
		if v < 0 || v > MaxCustomPrice {
			return errors.New("a price is negative or above $1000 per 1M tokens")
		}
	}
	// A derived cache-write price may exceed the bound by the provider's
	// surcharge (1.25x).
	if r.CacheWrite < 0 || r.CacheWrite > 2*MaxCustomPrice {
		return errors.New("cacheWrite is negative or above $2000 per 1M tokens")
	}
	if r.CachedInput > r.Input {
		return errors.New("cachedInput exceeds input")
	}
	return nil
}

// customPrice is the Price of name at rates r: a model t has keeps its
// kind, encoding and limits; any other is a chat model with the Custom*
// limits.
func (t *Table) customPrice(name string, r Rates) Price {
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
	p.Input, p.CachedInput, p.CacheWrite, p.Output = r.Input, r.CachedInput, r.CacheWrite, r.Output
	p.CacheWrite1h = OneHourWrite(p.Input, p.CacheWrite)
	return p
}

// rates resolves one entry of a setting's prices.
func (t *Table) rates(name string, c customPrice) (Rates, error) {
	if err := validName(name); err != nil {
		return Rates{}, err
	}
	if c.Input == nil || c.Output == nil {
		return Rates{}, errors.New("input and output prices are required")
	}
	base, known := t.Lookup(name)
	var p Rates
	var err error
	if p.Input, err = parseCustomNumber(json.Number(*c.Input)); err != nil {
		return Rates{}, fmt.Errorf("input: %w", err)
	}
	if p.Output, err = parseCustomNumber(json.Number(*c.Output)); err != nil {
		return Rates{}, fmt.Errorf("output: %w", err)
	}
	p.CachedInput = p.Input
	if c.CachedInput != nil {
		if p.CachedInput, err = parseCustomNumber(json.Number(*c.CachedInput)); err != nil {
			return Rates{}, fmt.Errorf("cachedInput: %w", err)
		}
		if p.CachedInput > p.Input {
			return Rates{}, errors.New("cachedInput exceeds input")
		}
	}
	p.CacheWrite = p.Input
	switch {
	case c.CacheWrite != nil:
		if p.CacheWrite, err = parseCustomNumber(json.Number(*c.CacheWrite)); err != nil {
			return Rates{}, fmt.Errorf("cacheWrite: %w", err)
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
