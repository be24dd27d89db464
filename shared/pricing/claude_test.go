package pricing

import (
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// TestClaudePrices pins each Claude entry of the 4.5 family and later to the
// list prices of the pages cited in prices.json (USD per 1M tokens, held as
// pico-dollars per token: $1 per 1M = 1,000,000).
func TestClaudePrices(t *testing.T) {
	tab := defaultTable(t)
	const usd = 1_000_000 // pico-dollars per token for $1 per 1M tokens
	tests := []struct {
		model                            string
		input, cached, write, output     int64
		contextWindow, maxOutput, tokPct int64
	}{
		{"claude-opus-5-5", 4 * usd, usd / 5, 5 * usd, 20 * usd, 1_000_000, 128_000, 200},
		{"claude-opus-5", 5 * usd, usd / 2, 6_250_000, 25 * usd, 1_000_000, 128_000, 200},
		{"claude-opus-4-8", 5 * usd, usd / 2, 6_250_000, 25 * usd, 1_000_000, 128_000, 200},
		{"claude-opus-4-7", 5 * usd, usd / 2, 6_250_000, 25 * usd, 1_000_000, 128_000, 200},
		{"claude-opus-4-6", 5 * usd, usd / 2, 6_250_000, 25 * usd, 1_000_000, 128_000, 150},
		{"claude-opus-4-5", 5 * usd, usd / 2, 6_250_000, 25 * usd, 200_000, 64_000, 150},
		{"claude-sonnet-5-5", 2 * usd, usd / 5, 2_500_000, 10 * usd, 1_000_000, 128_000, 200},
		{"claude-sonnet-5", 2 * usd, usd / 5, 2_500_000, 10 * usd, 1_000_000, 128_000, 200},
		{"claude-sonnet-4-6", 3 * usd, 300_000, 3_750_000, 15 * usd, 1_000_000, 128_000, 150},
		{"claude-sonnet-4-5", 3 * usd, 300_000, 3_750_000, 15 * usd, 200_000, 64_000, 150},
		{"claude-haiku-4-5", 1 * usd, 100_000, 1_250_000, 5 * usd, 200_000, 64_000, 150},
		// Older Claude models now carry their cache-write price too.
		{"claude-opus-4-1", 15 * usd, 1_500_000, 18_750_000, 75 * usd, 200_000, 32_000, 150},
		{"claude-sonnet-4", 3 * usd, 300_000, 3_750_000, 15 * usd, 200_000, 64_000, 150},
		{"claude-3-5-haiku", 800_000, 80_000, 1 * usd, 4 * usd, 200_000, 8192, 150},
		{"claude-3-haiku", 250_000, 30_000, 300_000, 1_250_000, 200_000, 4096, 150},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if !ok || p.Model != tt.model {
			t.Errorf("Lookup(%q) = %q, %v", tt.model, p.Model, ok)
			continue
		}
		if p.Input != tt.input || p.CachedInput != tt.cached || p.CacheWrite != tt.write || p.Output != tt.output {
			t.Errorf("%s: in %d cached %d write %d out %d; want %d %d %d %d",
				tt.model, p.Input, p.CachedInput, p.CacheWrite, p.Output, tt.input, tt.cached, tt.write, tt.output)
		}
		if p.ContextWindow != tt.contextWindow || p.MaxOutputTokens != tt.maxOutput || p.PromptTokenPercent != tt.tokPct {
			t.Errorf("%s: context %d maxOutput %d pct %d; want %d %d %d",
				tt.model, p.ContextWindow, p.MaxOutputTokens, p.PromptTokenPercent, tt.contextWindow, tt.maxOutput, tt.tokPct)
		}
		if p.Kind != KindChat || p.Encoding != EncodingCL100k {
			t.Errorf("%s: kind %q encoding %q", tt.model, p.Kind, p.Encoding)
		}
	}
}

// TestClaudeCacheWritesEveryEntry: every Claude entry prices cache writes at
// 1.25x its input price (Anthropic's 5-minute cache write; Haiku 3 is
// listed at $0.30), and every
// non-Claude entry bills them as plain input.
func TestClaudeCacheWritesEveryEntry(t *testing.T) {
	tab := defaultTable(t)
	for _, name := range tab.Models() {
		p, _ := tab.Lookup(name)
		want := p.Input
		if strings.HasPrefix(name, "claude-") {
			want = p.Input * 5 / 4
		}
		if name == "claude-3-haiku" {
			want = 300_000 // Anthropic lists $0.30, not 1.25 x $0.25
		}
		if p.CacheWrite != want {
			t.Errorf("%s: cacheWrite %d, want %d (input %d)", name, p.CacheWrite, want, p.Input)
		}
	}
}

func TestClaudeDatedNames(t *testing.T) {
	tab := defaultTable(t)
	tests := []struct{ model, want string }{
		{"claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},
		{"claude-haiku-4-5-20251001", "claude-haiku-4-5"},
		{"claude-opus-4-5-20251101", "claude-opus-4-5"},
		{"claude-opus-4-1-20250805", "claude-opus-4-1"},
		{"claude-opus-4-6", "claude-opus-4-6"},
		{"claude-sonnet-4-6", "claude-sonnet-4-6"},
		{"claude-opus-5-20260724", "claude-opus-5"},
		{"claude-opus-5-5-20260923", "claude-opus-5-5"},
		{"claude-sonnet-5-5-20260928", "claude-sonnet-5-5"},
		{"claude-sonnet-4-5-latest", "claude-sonnet-4-5"},
		// No prefix matching onto a neighbour.
		{"claude-sonnet-4-5x", ""},
		{"claude-haiku-5-5", ""}, // priced by prompt length: not in the table
		{"claude-opus-4-9", ""},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if ok != (tt.want != "") || p.Model != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.model, p.Model, ok, tt.want)
		}
	}
}

func TestCostCacheWrites(t *testing.T) {
	tab := defaultTable(t)
	sonnet, _ := tab.Lookup("claude-sonnet-4-5-20250929")
	haiku, _ := tab.Lookup("claude-haiku-4-5")
	tests := []struct {
		name  string
		price Price
		usage ledger.Usage
		want  money.Nanos
	}{
		// Anthropic usage {input_tokens: 100, cache_creation_input_tokens: 2000,
		// cache_read_input_tokens: 10000, output_tokens: 500} becomes
		// PromptTokens 12100 (all three), CachedTokens 10000, CacheWriteTokens 2000:
		// 100*3e6 + 10000*3e5 + 2000*3.75e6 + 500*15e6 pico
		// = 3e8 + 3e9 + 7.5e9 + 7.5e9 = 18.3e9 pico = 18,300,000 nanos ($0.0183).
		{"sonnet all four", sonnet, ledger.Usage{PromptTokens: 12_100, CachedTokens: 10_000, CacheWriteTokens: 2_000, CompletionTokens: 500}, 18_300_000},
		// A cache write alone: 1 token at 3.75e6 pico = 3750 nanos, 25% above input.
		{"one write", sonnet, ledger.Usage{PromptTokens: 1, CacheWriteTokens: 1}, 3_750},
		{"one plain", sonnet, ledger.Usage{PromptTokens: 1}, 3_000},
		// Haiku 4.5: 7 written at 1.25e6 = 8.75e6, 3 read at 1e5 = 3e5,
		// 1 plain at 1e6: 10.05e6 pico = 10050 nanos.
		{"haiku mixed", haiku, ledger.Usage{PromptTokens: 11, CachedTokens: 3, CacheWriteTokens: 7}, 10_050},
		// Rounding up: 1 written token at 1 pico + 1 at 1001 pico = 1002 pico -> 2 nanos.
		{"round up write", Price{Input: 1, CacheWrite: 1001}, ledger.Usage{PromptTokens: 2, CacheWriteTokens: 1}, 2},
		// Reads + writes above the prompt count: plain input floors at 0,
		// reads and writes are billed as reported.
		{"writes > prompt", sonnet, ledger.Usage{PromptTokens: 5, CachedTokens: 4, CacheWriteTokens: 4}, 4*300 + 4*3750},
		{"negative writes", sonnet, ledger.Usage{PromptTokens: 1, CacheWriteTokens: -9}, 3_000},
		// OpenAI models bill a cache write as plain input.
		{"openai write is input", price(t, tab, "gpt-4o-mini"), ledger.Usage{PromptTokens: 10, CacheWriteTokens: 10}, 1_500},
	}
	for _, tt := range tests {
		if got := tt.price.Cost(tt.usage); got != tt.want {
			t.Errorf("%s: Cost(%+v) = %d, want %d", tt.name, tt.usage, got, tt.want)
		}
	}
}

func price(t *testing.T, tab *Table, model string) Price {
	t.Helper()
	p, ok := tab.Lookup(model)
	if !ok {
		t.Fatalf("Lookup(%q) not found", model)
	}
	return p
}

func TestParseCacheWriteAndDates(t *testing.T) {
	const head = `{"asOf":"2025-01-01","models":{"m":{"kind":"chat","encoding":"o200k_base","contextWindow":10,"maxOutputTokens":5,"input":"1","output":"2"`
	tests := []struct {
		name, extra string
		write       int64
		err         string
	}{
		{"default is input", ``, 1_000_000, ""},
		{"own price", `,"cacheWrite":"1.25"`, 1_250_000, ""},
		{"bad price", `,"cacheWrite":"-1"`, 0, "cacheWrite"},
		{"entry date", `,"asOf":"2026-12-04","source":"somewhere"`, 1_000_000, ""},
		{"bad entry date", `,"asOf":"Dec 4"`, 0, "asOf"},
	}
	for _, tt := range tests {
		tab, err := Parse([]byte(head + tt.extra + `}}}`))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if p, _ := tab.Lookup("m"); p.CacheWrite != tt.write {
			t.Errorf("%s: CacheWrite %d, want %d", tt.name, p.CacheWrite, tt.write)
		}
	}
}
