package pricing

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

func defaultTable(t *testing.T) *Table {
	t.Helper()
	tab, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	return tab
}

func TestLookup(t *testing.T) {
	tab := defaultTable(t)
	tests := []struct {
		model string
		want  string // matched entry; "" means not found
	}{
		{"gpt-4o-mini", "gpt-4o-mini"},
		{"gpt-4o-mini-2024-07-18", "gpt-4o-mini"},
		{"gpt-4o", "gpt-4o"},
		{"gpt-4o-2024-08-06", "gpt-4o"},
		{"gpt-4o-2024-11-20", "gpt-4o"},
		{"gpt-4o-2024-05-13", "gpt-4o-2024-05-13"}, // dated entry with its own price
		{"chatgpt-4o-latest", "chatgpt-4o-latest"},
		{"gpt-4.1-2025-04-14", "gpt-4.1"},
		{"gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"},
		{"gpt-5-2025-08-07", "gpt-5"},
		{"gpt-5-nano-2025-08-07", "gpt-5-nano"},
		{"o1-2024-12-17", "o1"},
		{"o1-preview-2024-09-12", "o1-preview"},
		{"o3-mini-2025-01-31", "o3-mini"},
		{"o4-mini-2025-04-16", "o4-mini"},
		{"gpt-4-0613", "gpt-4"},
		{"gpt-4-0314", "gpt-4"},
		{"gpt-4-32k-0613", "gpt-4-32k"},
		{"gpt-3.5-turbo-0125", "gpt-3.5-turbo"},
		{"gpt-3.5-turbo-1106", "gpt-3.5-turbo-1106"}, // legacy snapshot priced above gpt-3.5-turbo
		{"gpt-3.5-turbo-16k-0613", "gpt-3.5-turbo-16k"},
		{"gpt-4-turbo-2024-04-09", "gpt-4-turbo"},
		{"gpt-4-turbo-preview", "gpt-4-turbo"},
		{"gpt-4-1106-preview", "gpt-4-1106-preview"},
		{"omni-moderation-2024-09-26", "omni-moderation-latest"},
		{"text-embedding-3-small", "text-embedding-3-small"},
		{"gpt-3.5-turbo-instruct-0914", "gpt-3.5-turbo-instruct"},
		// Not found.
		{"gpt-4o-mini-tts", ""},
		{"gpt-4o-minix", ""},
		{"gpt-4o-mini-transcribe", ""},
		{"gpt-4o-realtime-preview", ""},
		{"ft:gpt-4o-mini-2024-07-18:acme::abc123", ""},
		{"ft:gpt-3.5-turbo", ""},
		{"GPT-4O", ""},
		{"", ""},
		{"-2024-07-18", ""},
		{"-preview", ""},
		{"claude-3-5-sonnet-20241022", "claude-3-5-sonnet"},
		{"claude-sonnet-4-20250514", "claude-sonnet-4"},
		{"claude-3-5-haiku-latest", "claude-3-5-haiku"},
		{"claude-2.1", ""},
		{"gpt-4o-mini-2024-07", ""},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if ok != (tt.want != "") || p.Model != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.model, p.Model, ok, tt.want)
		}
	}
}

func TestLookupPrices(t *testing.T) {
	tab := defaultTable(t)
	tests := []struct {
		model                 string
		input, cached, output int64
		encoding, kind        string
	}{
		{"gpt-4o-mini", 150_000, 75_000, 600_000, "o200k_base", "chat"},
		{"gpt-4o", 2_500_000, 1_250_000, 10_000_000, "o200k_base", "chat"},
		{"gpt-4o-2024-05-13", 5_000_000, 5_000_000, 15_000_000, "o200k_base", "chat"},
		{"gpt-3.5-turbo", 500_000, 500_000, 1_500_000, "cl100k_base", "chat"},
		{"gpt-3.5-turbo-instruct", 1_500_000, 1_500_000, 2_000_000, "cl100k_base", "completion"},
		{"text-embedding-3-small", 20_000, 20_000, 0, "cl100k_base", "embedding"},
		{"text-embedding-3-large", 130_000, 130_000, 0, "cl100k_base", "embedding"},
		{"text-embedding-ada-002", 100_000, 100_000, 0, "cl100k_base", "embedding"},
		{"omni-moderation-latest", 0, 0, 0, "o200k_base", "moderation"},
		{"text-moderation-latest", 0, 0, 0, "cl100k_base", "moderation"},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if !ok {
			t.Errorf("Lookup(%q) not found", tt.model)
			continue
		}
		if p.Input != tt.input || p.CachedInput != tt.cached || p.Output != tt.output || p.Encoding != tt.encoding || p.Kind != tt.kind {
			t.Errorf("Lookup(%q) = %+v; want in %d cached %d out %d %s %s", tt.model, p, tt.input, tt.cached, tt.output, tt.encoding, tt.kind)
		}
	}
}

func TestRequiredModels(t *testing.T) {
	tab := defaultTable(t)
	required := []string{
		"gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
		"gpt-4o", "gpt-4o-2024-05-13", "gpt-4o-mini", "o1", "o1-mini", "o3", "o3-mini",
		"o4-mini", "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo", "gpt-3.5-turbo-instruct",
		"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
		"omni-moderation-latest", "text-moderation-latest",
	}
	models := tab.Models()
	if !slices.IsSorted(models) {
		t.Errorf("Models() not sorted: %v", models)
	}
	for _, m := range required {
		if _, found := slices.BinarySearch(models, m); !found {
			t.Errorf("model %q missing from the embedded table", m)
		}
	}
	// Models returns a copy.
	models[0] = "mutated"
	if tab.Models()[0] == "mutated" {
		t.Error("Models() exposes the table's slice")
	}
}

func TestEmbeddedTableSane(t *testing.T) {
	tab := defaultTable(t)
	if tab.AsOf() == "" || tab.Source() == "" {
		t.Errorf("AsOf %q Source %q", tab.AsOf(), tab.Source())
	}
	for _, name := range tab.Models() {
		p, ok := tab.Lookup(name)
		if !ok || p.Model != name {
			t.Errorf("Lookup(%q) = %q, %v", name, p.Model, ok)
			continue
		}
		if p.Encoding != EncodingO200k && p.Encoding != EncodingCL100k {
			t.Errorf("%s: encoding %q", name, p.Encoding)
		}
		if p.Input < 0 || p.CachedInput < 0 || p.Output < 0 || p.CachedInput > p.Input {
			t.Errorf("%s: prices %+v", name, p)
		}
		if p.ContextWindow <= 0 || p.MaxOutputTokens < 0 || p.MaxOutputTokens > p.ContextWindow {
			t.Errorf("%s: limits %+v", name, p)
		}
		switch p.Kind {
		case KindChat, KindCompletion:
			if p.Input <= 0 || p.Output <= 0 || p.MaxOutputTokens <= 0 {
				t.Errorf("%s: generating model needs prices and output limit: %+v", name, p)
			}
		case KindEmbedding:
			if p.Input <= 0 || p.Output != 0 || p.MaxOutputTokens != 0 {
				t.Errorf("%s: embedding %+v", name, p)
			}
		case KindModeration:
			if p.Input != 0 || p.CachedInput != 0 || p.Output != 0 || p.MaxOutputTokens != 0 {
				t.Errorf("%s: moderation should be free: %+v", name, p)
			}
		default:
			t.Errorf("%s: kind %q", name, p.Kind)
		}
		// Sanity bound: no listed price is above $200 per 1M tokens.
		if p.Input > 200_000_000 || p.Output > 200_000_000 {
			t.Errorf("%s: implausible price %+v", name, p)
		}
	}
}

func TestCost(t *testing.T) {
	tab := defaultTable(t)
	price := func(model string) Price {
		p, ok := tab.Lookup(model)
		if !ok {
			t.Fatalf("Lookup(%q) not found", model)
		}
		return p
	}
	tests := []struct {
		name  string
		price Price
		usage ledger.Usage
		want  money.Nanos
	}{
		{"gpt-4o-mini 1000+500", price("gpt-4o-mini"), ledger.Usage{PromptTokens: 1000, CompletionTokens: 500}, 450_000},
		{"zero usage", price("gpt-4o-mini"), ledger.Usage{}, 0},
		// 1000 prompt of which 400 cached: 600*150000 + 400*75000 + 0 = 120,000,000 pico.
		{"cached split", price("gpt-4o-mini"), ledger.Usage{PromptTokens: 1000, CachedTokens: 400}, 120_000},
		// 1 token at 150000 pico = 150 nanos exactly.
		{"one token exact", price("gpt-4o-mini"), ledger.Usage{PromptTokens: 1}, 150},
		// 1 cached token at 75000 pico = 75 nanos; embeddings 20000 pico = 20 nanos.
		{"one cached token", price("gpt-4o-mini"), ledger.Usage{PromptTokens: 1, CachedTokens: 1}, 75},
		{"embedding", price("text-embedding-3-small"), ledger.Usage{PromptTokens: 1_000_000}, 20 * money.Cent / 10},
		{"moderation free", price("omni-moderation-latest"), ledger.Usage{PromptTokens: 5000}, 0},
		// gpt-5-nano cached: 5000 pico/token; 1 token = 5 nanos; gpt-4.1-nano cached 25000 pico.
		{"gpt-5-nano cached", price("gpt-5-nano"), ledger.Usage{PromptTokens: 3, CachedTokens: 3}, 15},
		// Cached tokens exceeding prompt tokens: uncached floors at 0.
		{"cached > prompt", price("gpt-4o"), ledger.Usage{PromptTokens: 10, CachedTokens: 20}, 20 * 1250},
		{"negative counts", price("gpt-4o"), ledger.Usage{PromptTokens: -5, CachedTokens: -1, CompletionTokens: -3}, 0},
		{"1M output gpt-4o", price("gpt-4o"), ledger.Usage{CompletionTokens: 1_000_000}, 10 * money.Dollar},
		// Rounding up: 1 pico-dollar is 1 nano-dollar, 1001 pico is 2 nanos.
		{"round up 1 pico", Price{Input: 1}, ledger.Usage{PromptTokens: 1}, 1},
		{"round up 1001 pico", Price{Input: 1001}, ledger.Usage{PromptTokens: 1}, 2},
		{"exact 2000 pico", Price{Input: 1000}, ledger.Usage{PromptTokens: 2}, 2},
		{"round up sum", Price{Input: 1, CachedInput: 1, Output: 1}, ledger.Usage{PromptTokens: 2, CachedTokens: 1, CompletionTokens: 999}, 2},
		// Overflow saturates.
		{"overflow product", Price{Output: 1_000_000_000_000}, ledger.Usage{CompletionTokens: math.MaxInt64}, money.Nanos(math.MaxInt64)},
		{"overflow sum", Price{Input: 1 << 40, Output: 1 << 40}, ledger.Usage{PromptTokens: 1 << 22, CompletionTokens: 1 << 22}, money.Nanos(math.MaxInt64)},
		{"just below overflow", Price{Input: 1}, ledger.Usage{PromptTokens: math.MaxInt64}, money.Nanos(math.MaxInt64/1000 + 1)},
	}
	for _, tt := range tests {
		if got := tt.price.Cost(tt.usage); got != tt.want {
			t.Errorf("%s: Cost(%+v) = %d, want %d", tt.name, tt.usage, got, tt.want)
		}
	}
}

func TestParsePerMillion(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0.15", 150_000, false},
		{"0.075", 75_000, false},
		{"2.50", 2_500_000, false},
		{"10", 10_000_000, false},
		{"0", 0, false},
		{"0.000001", 1, false},
		{"0.0000010", 1, false},
		{"1000000", 1_000_000_000_000, false},
		{"0.0000001", 0, true},
		{"0.1234567", 0, true},
		{"-0.15", 0, true},
		{"+1", 0, true},
		{"1e-3", 0, true},
		{"", 0, true},
		{".5", 0, true},
		{"1.", 0, true},
		{"1.2.3", 0, true},
		{" 1", 0, true},
		{"1000001", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := parsePerMillion(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parsePerMillion(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParse(t *testing.T) {
	const model = `"maxOutputTokens": 16384, "contextWindow": 128000`
	table := func(asOf, entry string) string {
		return `{"asOf": "` + asOf + `", "source": "test", "models": {"m": {` + entry + `}}}`
	}
	good := `"kind": "chat", "input": "0.15", "cachedInput": "0.075", "output": "0.60", "encoding": "o200k_base", ` + model
	tests := []struct {
		name string
		in   string
		err  string // substring of the error; "" for success
	}{
		{"good", table("2026-11-01", good), ""},
		{"no cached price", table("2026-11-01", `"kind": "chat", "input": "0.5", "output": "1.5", "encoding": "cl100k_base", `+model), ""},
		{"inexact price", table("2026-11-01", `"kind": "chat", "input": "0.0000001", "output": "1", "encoding": "o200k_base", `+model), "pico-dollars"},
		{"negative price", table("2026-11-01", `"kind": "chat", "input": "-0.15", "output": "1", "encoding": "o200k_base", `+model), "negative"},
		{"negative output", table("2026-11-01", `"kind": "chat", "input": "0.15", "output": "-1", "encoding": "o200k_base", `+model), "negative"},
		{"number not string", table("2026-11-01", `"kind": "chat", "input": 0.15, "output": "1", "encoding": "o200k_base", `+model), "cannot unmarshal"},
		{"missing input", table("2026-11-01", `"kind": "chat", "output": "1", "encoding": "o200k_base", `+model), "required"},
		{"missing asOf", table("", good), "asOf"},
		{"bad asOf", table("Nov 2026", good), "asOf"},
		{"unknown encoding", table("2026-11-01", `"kind": "chat", "input": "0.15", "output": "1", "encoding": "p50k_base", `+model), "encoding"},
		{"missing encoding", table("2026-11-01", `"kind": "chat", "input": "0.15", "output": "1", `+model), "encoding"},
		{"unknown kind", table("2026-11-01", `"kind": "image", "input": "0.15", "output": "1", "encoding": "o200k_base", `+model), "kind"},
		{"cached above input", table("2026-11-01", `"kind": "chat", "input": "0.15", "cachedInput": "0.30", "output": "1", "encoding": "o200k_base", `+model), "cachedInput"},
		{"unknown field", table("2026-11-01", good+`, "outptu": "1"`), "unknown field"},
		{"no context window", table("2026-11-01", `"kind": "chat", "input": "0.15", "output": "1", "encoding": "o200k_base"`), "contextWindow"},
		{"max output above context", table("2026-11-01", `"kind": "chat", "input": "0.15", "output": "1", "encoding": "o200k_base", "maxOutputTokens": 10, "contextWindow": 5`), "maxOutputTokens"},
		{"no models", `{"asOf": "2026-11-01", "models": {}}`, "no models"},
		{"fine-tune name", `{"asOf": "2026-11-01", "models": {"ft:x": {` + good + `}}}`, "name"},
		{"not json", `asOf: 2026`, "invalid character"},
		{"trailing data", table("2026-11-01", good) + `{}`, "trailing"},
	}
	for _, tt := range tests {
		tab, err := Parse([]byte(tt.in))
		if tt.err == "" {
			if err != nil {
				t.Errorf("%s: Parse: %v", tt.name, err)
			} else if tab.AsOf() != "2026-11-01" || len(tab.Models()) != 1 {
				t.Errorf("%s: AsOf %q models %v", tt.name, tab.AsOf(), tab.Models())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: Parse err = %v, want one containing %q", tt.name, err, tt.err)
		}
	}
}

func TestParseDefaultsCachedToInput(t *testing.T) {
	tab, err := Parse([]byte(`{"asOf": "2026-11-01", "models": {"m": {"kind": "chat", "input": "0.5", "output": "1.5", "encoding": "cl100k_base", "maxOutputTokens": 4096, "contextWindow": 16385}}}`))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := tab.Lookup("m")
	if p.CachedInput != p.Input || p.Input != 500_000 || p.Output != 1_500_000 {
		t.Errorf("got %+v", p)
	}
}

func TestBoundTokens(t *testing.T) {
	tab, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model string
		n     int64
		want  int64
	}{
		{"gpt-4o-mini", 100, 100},
		{"claude-3-5-haiku", 100, 150},
		{"claude-3-5-haiku", 3, 5}, // rounds up
		{"claude-3-5-haiku", 0, 0},
	}
	for _, tt := range tests {
		p, ok := tab.Lookup(tt.model)
		if !ok {
			t.Fatalf("%s not priced", tt.model)
		}
		if got := p.BoundTokens(tt.n); got != tt.want {
			t.Errorf("%s.BoundTokens(%d) = %d, want %d", tt.model, tt.n, got, tt.want)
		}
	}
	if _, err := Parse([]byte(`{"asOf":"2025-01-01","models":{"m":{"kind":"chat","input":"1","output":"1","contextWindow":10,"encoding":"o200k_base","promptTokenPercent":50}}}`)); err == nil {
		t.Error("a promptTokenPercent below 100 was accepted")
	}
}
