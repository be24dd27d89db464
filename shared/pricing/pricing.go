// Package pricing holds the dated table of OpenAI and Anthropic list prices
// that stipend charges requests against, and turns token usage into money.
//
// The table is compiled in so nothing is fetched at run time: prices.json is
// its source, which go generate turns into default_prices.go (Go values,
// checked by Parse at generation time), so starting a function decodes no
// JSON.
// Prices are written in the file as exact decimal strings of US dollars per
// one million tokens and held as integer pico-dollars (1e-12 USD) per token;
// a price that does not convert exactly is rejected when the table is parsed.
// Each model has an input, cached-input (cache read), cache-write and output
// price; Price.Cost bills ledger.Usage's CachedTokens and CacheWriteTokens at
// their own prices and rounds the sum up to whole nano-dollars.
//
// Prices an admin sets on a provider setting (its "prices" field, JSON
// numbers of US dollars per 1M tokens) are laid over the embedded table with
// Table.WithPrices (or, for the integers a setting stores, Table.WithRates),
// which returns an Overlay: the setting's own entries, looked up before the
// embedded ones, so it overrides the embedded prices and prices models the
// table lacks without copying the table. The numbers are read as exact
// decimals and converted to pico-dollars once, there.
//
// A Table is immutable once parsed and safe for concurrent use.
package pricing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

//go:generate go run ./internal/gen -in prices.json -out default_prices.go

// Kinds of model.
const (
	KindChat       = "chat"
	KindCompletion = "completion"
	KindEmbedding  = "embedding"
	KindModeration = "moderation"
)

// Tokenizer encodings a table entry may name.
const (
	EncodingO200k  = "o200k_base"
	EncodingCL100k = "cl100k_base"
)

const (
	// picoPerMicroUSD converts "USD per 1M tokens" into pico-dollars per
	// token: $1 per 1e6 tokens is 1e12 pico-dollars / 1e6 tokens = 1e6.
	picoPerMicroUSD = 1_000_000
	priceDecimals   = 6
	// maxWholeDollars bounds a price at $1,000,000 per 1M tokens (1e12
	// pico-dollars per token), far above any real price and far from
	// int64 overflow.
	maxWholeDollars = 1_000_000
	picoPerNano     = 1_000
)

// Price is what one model costs, per token, in pico-dollars (1e-12 USD).
type Price struct {
	Model       string // the table entry that matched (the family), e.g. "gpt-4o-mini"
	Kind        string // KindChat, KindCompletion, KindEmbedding or KindModeration
	Input       int64  // uncached prompt token, pico-dollars
	CachedInput int64  // cached prompt token, pico-dollars (equals Input when the model has no cache discount)
	// CacheWrite is a prompt token written to the provider's prompt cache
	// (Anthropic's 5-minute cache write, 1.25x Input), pico-dollars; it
	// equals Input when the model bills cache writes as plain input.
	CacheWrite int64
	// CacheWrite1h is a prompt token written to the cache for one hour
	// (Anthropic: 2x Input), pico-dollars; see OneHourWrite.
	CacheWrite1h    int64
	Output          int64 // completion token, pico-dollars
	MaxOutputTokens int64 // 0 for models that generate no text
	ContextWindow   int64
	Encoding        string // tiktoken encoding name: "o200k_base" or "cl100k_base"
	// PromptTokenPercent scales a count made with Encoding into an upper
	// bound of what the provider's own tokenizer counts: 100 for OpenAI's
	// models, more for providers whose tokenizer is not public (Anthropic).
	PromptTokenPercent int64
}

// BoundTokens scales n, counted with p.Encoding, to an upper bound of the
// provider's own count.
func (p Price) BoundTokens(n int64) int64 {
	pct := max(p.PromptTokenPercent, 100)
	return (n*pct + 99) / 100
}

// Table is a parsed, validated price table.
type Table struct {
	asOf   string
	source string
	prices map[string]Price
	names  []string // sorted
}

type fileTable struct {
	AsOf   string               `json:"asOf"`
	Source string               `json:"source"`
	Models map[string]fileModel `json:"models"`
}

type fileModel struct {
	Kind            string  `json:"kind"`
	Input           *string `json:"input"`
	CachedInput     *string `json:"cachedInput"`
	CacheWrite      *string `json:"cacheWrite"`
	Output          *string `json:"output"`
	MaxOutputTokens int64   `json:"maxOutputTokens"`
	ContextWindow   int64   `json:"contextWindow"`
	Encoding        string  `json:"encoding"`
	// PromptTokenPercent: see Price; 0 means 100.
	PromptTokenPercent int64 `json:"promptTokenPercent"`
	// AsOf and Source, when set, say where and when this entry's figures
	// were taken, overriding the table's asOf and source for it.
	AsOf   string `json:"asOf"`
	Source string `json:"source"`
}

// Default returns the compiled-in price table (prices.json, as generated
// into default_prices.go). Callers call it once at startup and share the
// result. It returns no error today; the signature leaves room for a table
// that can be invalid.
func Default() (*Table, error) {
	ps := defaultPrices()
	t := &Table{
		asOf:   defaultAsOf,
		source: defaultSource,
		prices: make(map[string]Price, len(ps)),
		names:  make([]string, 0, len(ps)),
	}
	for _, p := range ps {
		t.prices[p.Model] = p
		t.names = append(t.names, p.Model)
	}
	return t, nil
}

// Parse reads and validates a price table in the prices.json format: the
// asOf date must be present (YYYY-MM-DD), every price must be a
// non-negative decimal that converts exactly to pico-dollars per token, a
// cached price (which defaults to the input price) may not exceed the input
// price, and every entry must name a known kind and encoding. Unknown fields
// are rejected so a misspelt key cannot silently drop a price.
func Parse(b []byte) (*Table, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f fileTable
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	if dec.More() {
		return nil, errors.New("pricing: trailing data after table")
	}
	if f.AsOf == "" {
		return nil, errors.New("pricing: asOf date missing")
	}
	if _, err := time.Parse(time.DateOnly, f.AsOf); err != nil {
		return nil, fmt.Errorf("pricing: asOf %q is not a YYYY-MM-DD date", f.AsOf)
	}
	if len(f.Models) == 0 {
		return nil, errors.New("pricing: no models")
	}
	t := &Table{
		asOf:   f.AsOf,
		source: f.Source,
		prices: make(map[string]Price, len(f.Models)),
		names:  make([]string, 0, len(f.Models)),
	}
	for name, m := range f.Models {
		p, err := m.price(name)
		if err != nil {
			return nil, fmt.Errorf("pricing: model %q: %w", name, err)
		}
		t.prices[name] = p
		t.names = append(t.names, name)
	}
	sort.Strings(t.names)
	return t, nil
}

func (m fileModel) price(name string) (Price, error) {
	if name == "" || strings.TrimSpace(name) != name || strings.Contains(name, ":") {
		return Price{}, errors.New("invalid model name")
	}
	switch m.Kind {
	case KindChat, KindCompletion, KindEmbedding, KindModeration:
	default:
		return Price{}, fmt.Errorf("unknown kind %q", m.Kind)
	}
	switch m.Encoding {
	case EncodingO200k, EncodingCL100k:
	default:
		return Price{}, fmt.Errorf("unknown encoding %q", m.Encoding)
	}
	if m.Input == nil || m.Output == nil {
		return Price{}, errors.New("input and output prices are required")
	}
	p := Price{
		Model:           name,
		Kind:            m.Kind,
		MaxOutputTokens: m.MaxOutputTokens,
		ContextWindow:   m.ContextWindow,
		Encoding:        m.Encoding,

		PromptTokenPercent: m.PromptTokenPercent,
	}
	if p.PromptTokenPercent == 0 {
		p.PromptTokenPercent = 100
	}
	if p.PromptTokenPercent < 100 || p.PromptTokenPercent > 400 {
		return Price{}, errors.New("promptTokenPercent must be from 100 to 400")
	}
	var err error
	if p.Input, err = parsePerMillion(*m.Input); err != nil {
		return Price{}, fmt.Errorf("input: %w", err)
	}
	if p.Output, err = parsePerMillion(*m.Output); err != nil {
		return Price{}, fmt.Errorf("output: %w", err)
	}
	p.CachedInput = p.Input
	if m.CachedInput != nil {
		if p.CachedInput, err = parsePerMillion(*m.CachedInput); err != nil {
			return Price{}, fmt.Errorf("cachedInput: %w", err)
		}
	}
	if p.CachedInput > p.Input {
		return Price{}, errors.New("cachedInput exceeds input")
	}
	p.CacheWrite = p.Input
	if m.CacheWrite != nil {
		if p.CacheWrite, err = parsePerMillion(*m.CacheWrite); err != nil {
			return Price{}, fmt.Errorf("cacheWrite: %w", err)
		}
	}
	p.CacheWrite1h = OneHourWrite(p.Input, p.CacheWrite)
	if m.AsOf != "" {
		if _, err := time.Parse(time.DateOnly, m.AsOf); err != nil {
			return Price{}, fmt.Errorf("asOf %q is not a YYYY-MM-DD date", m.AsOf)
		}
	}
	if p.ContextWindow <= 0 {
		return Price{}, errors.New("contextWindow must be positive")
	}
	if p.MaxOutputTokens < 0 || p.MaxOutputTokens > p.ContextWindow {
		return Price{}, errors.New("maxOutputTokens must be in [0, contextWindow]")
	}
	return p, nil
}

// parsePerMillion converts a decimal string of US dollars per one million
// tokens into pico-dollars per token, exactly. More than six significant
// decimal places (finer than one pico-dollar per token), signs, exponents and
// values above $1,000,000 are rejected.
func parsePerMillion(s string) (int64, error) {
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("%q: price is negative", s)
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || hasDot && frac == "" || !digits(whole) || !digits(frac) {
		return 0, fmt.Errorf("%q: not a plain decimal number", s)
	}
	if len(frac) > priceDecimals {
		if strings.Trim(frac[priceDecimals:], "0") != "" {
			return 0, fmt.Errorf("%q: not a whole number of pico-dollars per token", s)
		}
		frac = frac[:priceDecimals]
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > maxWholeDollars {
		return 0, fmt.Errorf("%q: price too large", s)
	}
	var f int64
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", priceDecimals-len(frac)), 10, 64)
	}
	return w*picoPerMicroUSD + f, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// AsOf returns the date (YYYY-MM-DD) the table's prices were taken.
func (t *Table) AsOf() string { return t.asOf }

// Source returns where the table's prices were taken from.
func (t *Table) Source() string { return t.source }

// Models returns the table's entry names, sorted.
func (t *Table) Models() []string {
	out := make([]string, len(t.names))
	copy(out, t.names)
	return out
}

// Lookup finds the price of model. It tries, in order: the exact name; the
// name without a version suffix "-YYYY-MM-DD" or "-MMDD" (and that name with
// "-latest" appended, so omni-moderation-2024-09-26 finds
// omni-moderation-latest); the name without a "-preview" or "-latest" suffix.
// There is no other prefix matching: gpt-4o-mini-tts is not gpt-4o-mini.
// Fine-tuned models ("ft:...") and unknown models report false.
func (t *Table) Lookup(model string) (Price, bool) { return resolve(model, nil, t.prices) }

// resolve finds model's entry as Table.Lookup describes, trying each name in
// own before base, so an overlay's entry (and its dated names) wins over the
// embedded one at every step of the resolution.
func resolve(model string, own, base map[string]Price) (Price, bool) {
	if model == "" || strings.Contains(model, ":") {
		return Price{}, false
	}
	get := func(name string) (Price, bool) {
		if p, ok := own[name]; ok {
			return p, true
		}
		p, ok := base[name]
		return p, ok
	}
	if p, ok := get(model); ok {
		return p, true
	}
	stem := stripVersion(model)
	if stem != model {
		if p, ok := get(stem); ok {
			return p, true
		}
		if p, ok := get(stem + "-latest"); ok {
			return p, true
		}
	}
	for _, suffix := range []string{"-preview", "-latest"} {
		if trimmed, ok := strings.CutSuffix(stem, suffix); ok && trimmed != "" {
			if p, ok := get(trimmed); ok {
				return p, true
			}
		}
	}
	return Price{}, false
}

// stripVersion removes a trailing "-YYYY-MM-DD", "-YYYYMMDD" (Anthropic) or
// "-MMDD" from name.
func stripVersion(name string) string {
	// "-YYYYMMDD": 9 bytes.
	if n := len(name); n > 9 {
		s := name[n-9:]
		if s[0] == '-' && digits(s[1:]) && (s[1:3] == "19" || s[1:3] == "20") {
			return name[:n-9]
		}
	}
	// "-YYYY-MM-DD": 11 bytes.
	if n := len(name); n > 11 {
		s := name[n-11:]
		if s[0] == '-' && digits(s[1:5]) && s[5] == '-' && digits(s[6:8]) && s[8] == '-' && digits(s[9:11]) {
			return name[:n-11]
		}
	}
	// "-MMDD": 5 bytes.
	if n := len(name); n > 5 {
		s := name[n-5:]
		if s[0] == '-' && digits(s[1:]) {
			return name[:n-5]
		}
	}
	return name
}

// OneHourWrite is the 1-hour cache-write price of a model whose input and
// 5-minute cache-write prices are given: twice the input price for a model
// that charges for cache writes (Anthropic's published ratio), else the
// cache-write price.
func OneHourWrite(input, cacheWrite int64) int64 {
	if cacheWrite > input {
		return max(2*input, cacheWrite)
	}
	return cacheWrite
}

// Cost returns what usage costs at price p: plain prompt tokens
// (PromptTokens - CachedTokens - CacheWriteTokens, floored at 0) at Input,
// CachedTokens at CachedInput, CacheWriteTokens at CacheWrite (their
// CacheWrite1hTokens at CacheWrite1h) and CompletionTokens at Output. The sum in pico-dollars is
// rounded up to whole nano-dollars so recorded spend is never below the
// provider's. Negative token counts count as 0; a result too large for
// money.Nanos saturates at the largest value.
func (p Price) Cost(u ledger.Usage) money.Nanos {
	prompt := max(u.PromptTokens, 0)
	cached := max(u.CachedTokens, 0)
	written := max(u.CacheWriteTokens, 0)
	written1h := min(max(u.CacheWrite1hTokens, 0), written)
	uncached := max(max(prompt-cached, 0)-written, 0)
	completion := max(u.CompletionTokens, 0)

	var total uint64
	var overflow bool
	for _, term := range [...][2]int64{
		{uncached, p.Input},
		{cached, p.CachedInput},
		{written - written1h, p.CacheWrite},
		{written1h, p.CacheWrite1h},
		{completion, p.Output},
	} {
		hi, lo := bits.Mul64(uint64(term[0]), uint64(max(term[1], 0)))
		var carry uint64
		total, carry = bits.Add64(total, lo, 0)
		if hi != 0 || carry != 0 {
			overflow = true
		}
	}
	if overflow || total > math.MaxInt64 {
		return money.Nanos(math.MaxInt64)
	}
	return money.Nanos((total + picoPerNano - 1) / picoPerNano)
}
