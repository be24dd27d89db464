package pricing

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

func TestWithPrices(t *testing.T) {
	base := defaultTable(t)
	tab, err := base.WithPrices([]byte(`{
		"llama-3.1-8b-instruct": {"input": 0.10, "output": 0.20, "cachedInput": 0.05},
		"gpt-4o-mini": {"input": 0.3, "output": 1.2},
		"claude-sonnet-4-5": {"input": 2, "output": 10, "cachedInput": 0.2},
		"claude-haiku-4-5": {"input": 1, "output": 5, "cacheWrite": 1.5},
		"free-model": {"input": 0, "output": 0},
		"tiny": {"input": 0.000001, "output": 1000, "cachedInput": 1e-6}
	}`))
	if err != nil {
		t.Fatalf("WithPrices: %v", err)
	}
	tests := []struct {
		model, entry                       string
		input, cached, write, output       int64
		kind, encoding                     string
		contextWindow, maxOutput, tokenPct int64
	}{
		// 0.10 USD per 1M tokens = 1e-7 USD per token = 100,000 pico-dollars (100 nano-dollars).
		{"llama-3.1-8b-instruct", "llama-3.1-8b-instruct", 100_000, 50_000, 100_000, 200_000, KindChat, EncodingCL100k, CustomContextWindow, CustomMaxOutputTokens, 150},
		// Known model: new prices, the table's limits and encoding; cachedInput defaults to input.
		{"gpt-4o-mini-2024-07-18", "gpt-4o-mini", 300_000, 300_000, 300_000, 1_200_000, KindChat, EncodingO200k, 128_000, 16_384, 100},
		// Claude: cache writes keep Anthropic's 1.25x surcharge over the new input price.
		{"claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 2_000_000, 200_000, 2_500_000, 10_000_000, KindChat, EncodingCL100k, 200_000, 64_000, 150},
		{"claude-haiku-4-5", "claude-haiku-4-5", 1_000_000, 1_000_000, 1_500_000, 5_000_000, KindChat, EncodingCL100k, 200_000, 64_000, 150},
		{"free-model", "free-model", 0, 0, 0, 0, KindChat, EncodingCL100k, CustomContextWindow, CustomMaxOutputTokens, 150},
		{"tiny", "tiny", 1, 1, 1, 1_000_000_000, KindChat, EncodingCL100k, CustomContextWindow, CustomMaxOutputTokens, 150},
		// Untouched entries stay as embedded.
		{"gpt-4o", "gpt-4o", 2_500_000, 1_250_000, 2_500_000, 10_000_000, KindChat, EncodingO200k, 128_000, 16_384, 100},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if !ok || p.Model != tt.entry {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.model, p.Model, ok, tt.entry)
			continue
		}
		if p.Input != tt.input || p.CachedInput != tt.cached || p.CacheWrite != tt.write || p.Output != tt.output {
			t.Errorf("%s: in %d cached %d write %d out %d; want %d %d %d %d", tt.model,
				p.Input, p.CachedInput, p.CacheWrite, p.Output, tt.input, tt.cached, tt.write, tt.output)
		}
		if p.Kind != tt.kind || p.Encoding != tt.encoding || p.ContextWindow != tt.contextWindow ||
			p.MaxOutputTokens != tt.maxOutput || p.PromptTokenPercent != tt.tokenPct {
			t.Errorf("%s: %+v", tt.model, p)
		}
	}
	// The overlay does not change the embedded table.
	if p, _ := base.Lookup("gpt-4o-mini"); p.Input != 150_000 {
		t.Errorf("base table changed: %+v", p)
	}
	if _, ok := base.Lookup("llama-3.1-8b-instruct"); ok {
		t.Error("base table gained an admin-priced model")
	}
	// A cost at custom prices, exact: 1,000,000 prompt tokens of which
	// 250,000 cached, 10 output, at 0.10 / 0.05 / 0.20 USD per 1M:
	// 750,000*1e5 + 250,000*5e4 + 10*2e5 pico = 87,502,000,000 pico = 87,502,000 nanos.
	p, _ := tab.Lookup("llama-3.1-8b-instruct")
	got := p.Cost(ledger.Usage{PromptTokens: 1_000_000, CachedTokens: 250_000, CompletionTokens: 10})
	if want := money.Nanos(87_502_000); got != want {
		t.Errorf("Cost = %d, want %d", got, want)
	}
}

func TestWithPricesEmpty(t *testing.T) {
	base := defaultTable(t)
	for _, in := range []string{``, `null`, ` {} `} {
		tab, err := base.WithPrices([]byte(in))
		if err != nil || tab.base != base || len(tab.own) != 0 {
			t.Errorf("WithPrices(%q) = %+v, %v; want the table itself", in, tab, err)
		}
	}
}

func TestWithPricesRejects(t *testing.T) {
	base := defaultTable(t)
	tests := []struct{ in, want string }{
		{`{"m": {"input": -0.1, "output": 1}}`, `model "m": input: -0.1: price is negative`},
		{`{"m": {"input": 0.1, "output": 1000.000001}}`, `model "m": output: 1000.000001: above $1000`},
		{`{"m": {"input": 0.1234567, "output": 1}}`, `model "m": input: 0.1234567: more than 6 decimal places`},
		{`{"m": {"input": 1e-7, "output": 1}}`, `model "m": input: 1e-7: more than 6 decimal places`},
		{`{"m": {"input": 1e999999999, "output": 1}}`, `model "m": input: 1e999999999: not a price`},
		{`{"m": {"input": 1, "output": 1, "cachedInput": 2}}`, `model "m": cachedInput exceeds input`},
		{`{"m": {"input": 1, "output": 1, "cachedInput": 0.0000001}}`, `model "m": cachedInput:`},
		{`{"m": {"input": 1, "output": 1, "cacheWrite": -1}}`, `model "m": cacheWrite: -1: price is negative`},
		{`{"m": {"input": 1}}`, `model "m": input and output prices are required`},
		{`{"m": {"input": 1, "output": 1, "inptu": 2}}`, `unknown field "inptu"`},
		{`{"m": {"input": true, "output": 1}}`, `prices:`},
		{`{"": {"input": 1, "output": 1}}`, `invalid model name`},
		{`{"ft:gpt-4o:x": {"input": 1, "output": 1}}`, `invalid model name`},
		{`{"m": {"input": 1, "output": 1}} {}`, `trailing data`},
		{`[1]`, `prices:`},
	}
	for _, tt := range tests {
		_, err := base.WithPrices([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("WithPrices(%s) error %v; want it to contain %q", tt.in, err, tt.want)
		}
	}
}

// TestParseCustomNumberExact: decimal text that float64 cannot hold exactly
// converts exactly (0.1 + 0.2 drift would give 300000.00000000006).
func TestParseCustomNumberExact(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0.3", 300_000},
		{"0.30", 300_000},
		{"0.000001", 1},
		{"1000", 1_000_000_000},
		{"999.999999", 999_999_999},
		{"3.75", 3_750_000},
		{"1.5E+2", 150_000_000},
		{"0", 0},
		{"0.0", 0},
	}
	for _, tt := range tests {
		got, err := parseCustomNumber(jsonNumber(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("parseCustomNumber(%s) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func jsonNumber(s string) json.Number { return json.Number(s) }

// TestRatesRoundTrip: the integers ParseRates yields (what a provider
// setting stores) price exactly as WithPrices does, and stored rates are
// checked again.
func TestRatesRoundTrip(t *testing.T) {
	base, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(`{"llama-3.1-8b-instruct":{"input":0.10,"output":0.2,"cachedInput":0.05},"claude-sonnet-4-5":{"input":2,"output":10}}`)
	rates, err := base.ParseRates(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := rates["llama-3.1-8b-instruct"]; got != (Rates{Input: 100_000, CachedInput: 50_000, CacheWrite: 100_000, Output: 200_000}) {
		t.Errorf("llama rates %+v", got)
	}
	if got := rates["claude-sonnet-4-5"]; got.CacheWrite != 2_500_000 { // 1.25x of the new input
		t.Errorf("claude rates %+v", got)
	}
	viaJSON, _ := base.WithPrices(raw)
	viaRates, err := base.WithRates(rates)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"llama-3.1-8b-instruct", "claude-sonnet-4-5-20250929", "gpt-4o-mini"} {
		a, _ := viaJSON.Lookup(m)
		b, ok := viaRates.Lookup(m)
		if !ok || a != b {
			t.Errorf("%s: %+v vs %+v", m, a, b)
		}
	}
	for _, bad := range []Rates{{Input: -1}, {Input: 1, CachedInput: 2}, {Input: MaxCustomPrice + 1}} {
		if _, err := base.WithRates(map[string]Rates{"m": bad}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestOneHourCacheWrites: 1-hour cache writes cost twice the input price on
// a model that charges for cache writes; 5-minute ones 1.25x.
func TestOneHourCacheWrites(t *testing.T) {
	table, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := table.Lookup("claude-sonnet-4-5")
	u := ledger.Usage{PromptTokens: 1000, CacheWriteTokens: 600, CacheWrite1hTokens: 200}
	// 400 plain at $3, 400 5-minute writes at $3.75, 200 1-hour writes at $6 per 1M.
	if got, want := p.Cost(u), money.Nanos(400*3000+400*3750+200*6000); got != want || p.CacheWrite1h != 6_000_000 {
		t.Errorf("cost %d, want %d (1h price %d)", got, want, p.CacheWrite1h)
	}
	if g, _ := table.Lookup("gpt-4o-mini"); g.CacheWrite1h != g.Input {
		t.Errorf("gpt-4o-mini 1h write %d", g.CacheWrite1h)
	}
}

// TestOverlayResolvesLikeAMergedTable: an overlay prices every name as a
// copy of the table with the setting's entries written over it would, dated
// and suffixed names included, and the table's own dated entry still wins
// over an override of its undated name.
func TestOverlayResolvesLikeAMergedTable(t *testing.T) {
	base := defaultTable(t)
	rates := map[string]Rates{
		"gpt-4o-mini":            {Input: 1, CachedInput: 1, CacheWrite: 1, Output: 2},
		"omni-moderation-latest": {Input: 3, CachedInput: 3, CacheWrite: 3, Output: 3},
		"claude-sonnet-4-5":      {Input: 4, CachedInput: 4, CacheWrite: 5, Output: 6},
		"my-model":               {Input: 7, CachedInput: 7, CacheWrite: 7, Output: 8},
	}
	o, err := base.WithRates(rates)
	if err != nil {
		t.Fatal(err)
	}
	merged := map[string]Price{}
	for name, p := range base.prices {
		merged[name] = p
	}
	for name, r := range rates {
		merged[name] = base.customPrice(name, r)
	}
	names := append(base.Models(), "gpt-4o-mini-2024-07-18", "gpt-4o-mini-0718", "omni-moderation-2024-09-26",
		"claude-sonnet-4-5-20250929", "my-model", "my-model-preview", "my-model-2025-01-01", "unknown", "", "ft:gpt-4o-mini:x")
	for _, name := range names {
		want, wantOK := resolve(name, nil, merged)
		got, ok := o.Lookup(name)
		if ok != wantOK || got != want {
			t.Errorf("Lookup(%q) = %+v, %v; a merged table says %+v, %v", name, got, ok, want, wantOK)
		}
	}
	if p, _ := o.Lookup("gpt-4o-mini-2024-07-18"); p.Input != 1 {
		t.Errorf("a dated name of an overridden model: %+v", p)
	}
}
