package tokenizer

import (
	"bytes"
	crand "crypto/rand"
	"encoding/base64"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/stipend/stipend/shared/tokenizer/internal/bpetable"
)

// The pre-tokenization patterns, as in tiktoken-go v0.1.8 encoding.go (which
// mirrors OpenAI's tiktoken_ext/openai_public.py): split.go implements them
// by hand, and the tests compare it with them.
const (
	o200kPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
		`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
		`|\p{N}{1,3}` +
		`| ?[^\s\p{L}\p{N}]+[\r\n/]*` +
		`|\s*[\r\n]+` +
		`|\s+(?!\S)` +
		`|\s+`
	cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// references holds tiktoken-go's encoders, built once per test binary: they
// are what the embedded tables and the encoder are checked against.
var references = struct {
	sync.Mutex
	m map[string]*tiktoken.Tiktoken
}{m: map[string]*tiktoken.Tiktoken{}}

// sourceRanks returns the ranks tiktoken-go-loader embeds for name.
func sourceRanks(t testing.TB, name string) map[string]int {
	t.Helper()
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe(name + ".tiktoken")
	if err != nil {
		t.Fatal(err)
	}
	return ranks
}

// reference returns tiktoken-go's encoder for name, built from
// tiktoken-go-loader's ranks with the same pattern, as stipend did before it
// had its own tables.
func reference(t testing.TB, name string) *tiktoken.Tiktoken {
	t.Helper()
	references.Lock()
	defer references.Unlock()
	if tk := references.m[name]; tk != nil {
		return tk
	}
	pattern := map[string]string{O200kBase: o200kPattern, CL100kBase: cl100kPattern}[name]
	ranks := sourceRanks(t, name)
	special := map[string]int{tiktoken.ENDOFTEXT: len(ranks) + 1}
	bpe, err := tiktoken.NewCoreBPE(ranks, special, pattern)
	if err != nil {
		t.Fatal(err)
	}
	tk := tiktoken.NewTiktoken(bpe, &tiktoken.Encoding{Name: name, PatStr: pattern, MergeableRanks: ranks, SpecialTokens: special}, map[string]any{})
	references.m[name] = tk
	return tk
}

// corpus is varied text for comparing counts: prose, code, JSON, CJK, emoji
// and other scripts, long whitespace runs, digits, invalid UTF-8, random
// valid UTF-8 and random mixes of tricky fragments.
func corpus() []string {
	texts := []string{
		"",
		"hello world",
		"Hello, world! It's 2026-11-23 and we've 1,234,567.89 tokens; THEY'LL see. I'M here, you'RE there.",
		"package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Printf(\"%d\\n\", i)\n\t}\n}\n",
		"def f(x):\r\n    return [y**2 for y in range(x) if y % 3 == 0]  # comment\r\n\r\n\r\n",
		`{"model":"gpt-4o","messages":[{"role":"user","content":"What's the weather in Paris?"}],"temperature":0.2}`,
		"日本語のテキスト、そして中文文本。한국어 텍스트. Ελληνικά κείμενα. Русский текст! עברית עם ניקוד: שָׁלוֹם. العربية.",
		"हिन्दी पाठ और ภาษาไทย และ ქართული",
		"😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ✈️ ❤️‍🔥",
		"e\u0301 a\u0308 Z\u0351\u0352\u0353 combining marks",
		strings.Repeat(" ", 100) + "x" + strings.Repeat("\t", 50) + "\n" + strings.Repeat("\n", 40) + strings.Repeat(" \n", 30),
		strings.Repeat(" ", 1000),
		"   leading and trailing   ",
		"1234567890 12 345 6789 ٣٤٥ Ⅷ ½ ²",
		"\xff\xfe invalid \xe4\xbd bytes \x80 in \xc3 text",
		"<|endoftext|> <|fim_prefix|> special tokens as text",
		"https://example.com/a/b?c=d&e=f#g // path/with/slashes/\n",
		strings.Repeat("The quick brown fox jumps over the lazy dog. ", 200),
		strings.Repeat("a", 500),
		strings.Repeat("ab", 300),
		strings.Repeat("中", 300),
		strings.Repeat("=", 400),
	}
	blob := make([]byte, 3000)
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range blob {
		blob[i] = byte(rng.Uint32())
	}
	texts = append(texts, base64.StdEncoding.EncodeToString(blob), string(blob[:500]))
	// Random valid UTF-8: runes from across the planes.
	for range 200 {
		var b strings.Builder
		for range rng.IntN(60) {
			var r rune
			switch rng.IntN(4) {
			case 0:
				r = rune(rng.IntN(0x80))
			case 1:
				r = rune(0x80 + rng.IntN(0x800-0x80))
			case 2:
				r = rune(0x800 + rng.IntN(0x10000-0x800))
			default:
				r = rune(0x10000 + rng.IntN(0x110000-0x10000))
			}
			if !utf8.ValidRune(r) {
				r = utf8.RuneError
			}
			b.WriteRune(r)
		}
		texts = append(texts, b.String())
	}
	alphabet := []string{
		"a", "Z", "é", "ß", "中", "，", "1", "٣", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000",
		".", "/", "'", "'s", "'LL", "\"", "(", "{", "😀", "\u0301", "\u200b", "\x00", "\xff",
		"hello", " world", "HTTP", "JSONParser", "x86", "don't", "ing", " the",
	}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(30) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	return texts
}

// TestCountsMatchTiktoken checks that the encoder over the embedded tables
// gives tiktoken-go's token count for every text of a varied corpus, in both
// encodings, and so does count (which cuts long texts).
func TestCountsMatchTiktoken(t *testing.T) {
	c := New()
	texts := corpus()
	for _, name := range []string{O200kBase, CL100kBase} {
		tk := reference(t, name)
		enc, err := c.encoding(name)
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for _, s := range texts {
			want := int64(len(tk.EncodeOrdinary(s)))
			if got := enc.count(s); got != want {
				if bad++; bad <= 10 {
					t.Errorf("%s %.60q: %d tokens, tiktoken-go %d", name, s, got, want)
				}
			}
			if got := count(enc, s); got != want && len(s) <= maxSegment {
				if bad++; bad <= 10 {
					t.Errorf("%s %.60q: count %d, tiktoken-go %d", name, s, got, want)
				}
			}
		}
	}
}

// TestTablesMatchSource checks that the committed tables are exactly what
// internal/gen writes from tiktoken-go-loader's files (run `go generate
// ./shared/tokenizer/` after updating tiktoken-go-loader), and that every
// token's rank is found and nothing else is.
func TestTablesMatchSource(t *testing.T) {
	for name, embedded := range map[string]string{O200kBase: o200kTable, CL100kBase: cl100kTable} {
		ranks := sourceRanks(t, name)
		built, err := bpetable.Build(ranks)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(built, []byte(embedded)) {
			t.Errorf("tables/%s.bpe (%d bytes) differs from what internal/gen writes (%d bytes): run go generate ./shared/tokenizer/",
				name, len(embedded), len(built))
			continue
		}
		table, err := bpetable.Open(embedded)
		if err != nil {
			t.Fatal(err)
		}
		if table.Len() != len(ranks) {
			t.Errorf("%s: %d tokens, want %d", name, table.Len(), len(ranks))
		}
		for tok, want := range ranks {
			if got, ok := table.Rank([]byte(tok)); !ok || got != want {
				t.Fatalf("%s: Rank(%q) = %d, %v; want %d", name, tok, got, ok, want)
			}
		}
		// A token plus a byte that makes it no token.
		missing := 0
		for tok := range ranks {
			b := []byte(tok + "\x00\xff")
			if _, in := ranks[string(b)]; in {
				continue
			}
			if r, ok := table.Rank(b); ok {
				t.Fatalf("%s: Rank(%q) found rank %d", name, b, r)
			}
			if missing++; missing == 1000 {
				break
			}
		}
	}
}

// TestOpenRejectsDamagedTables checks that a truncated or foreign table is
// an error, not a crash at the first lookup.
func TestOpenRejectsDamagedTables(t *testing.T) {
	for name, data := range map[string]string{
		"empty":     "",
		"magic":     "XXXX" + o200kTable[4:],
		"truncated": o200kTable[:len(o200kTable)-1],
		"header":    cl100kTable[:100],
	} {
		if _, err := bpetable.Open(data); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

// BenchmarkCount compares the encoder with tiktoken-go on mixed text.
func BenchmarkCount(b *testing.B) {
	blob := make([]byte, 1500)
	crand.Read(blob)
	text := strings.Repeat("Hello, world! It's a test of the tokenizer: func main() { fmt.Println(42) }\n", 20) +
		strings.Repeat("日本語のテキスト、そして中文文本。", 10) + base64.StdEncoding.EncodeToString(blob)
	enc, err := loadEncoding(O200kBase)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("stipend", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			count(enc, text)
		}
	})
	b.Run("tiktoken-go", func(b *testing.B) {
		tk := reference(b, O200kBase)
		b.ReportAllocs()
		for b.Loop() {
			tk.EncodeOrdinary(text)
		}
	})
}

// chatPrompt is about 1 KB of a typical chat prompt: prose, a little code
// and JSON, numbers and punctuation.
const chatPrompt = `You are a careful assistant that reviews pull requests for a Go service.
The user will paste a diff; point out bugs first, then style issues, and keep
each comment under three sentences. Do not rewrite the whole file.

Here is the change to review:

func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.items[key]
	if !ok {
		return nil, fmt.Errorf("store: %q not found", key)
	}
	return v, nil
}

The configuration it reads is {"timeout_ms": 2500, "retries": 3, "region": "eu-west-1"}.
Last week the p99 latency went from 120 ms to 340 ms after we doubled the
cache size to 64 MiB; could this function be the reason? Also, is it safe to
return the slice without copying it, given that callers sometimes append to it?
Please answer in English and include a corrected version of the function.
Thanks! I'll run the benchmarks again tomorrow (2026-03-14) and report back.`

// BenchmarkCountCold counts a 1 KB chat prompt with the CPU caches warm (the
// same prompt again and again, as BenchmarkCount does) and cold: before each
// count it writes to every cache line of a buffer larger than the last-level
// cache, as a proxy's other work does between two requests, so that the
// lookups in the rank tables miss. Only the count is timed; the cold ns/op
// replaces the built-in one, which would include the sweep.
func BenchmarkCountCold(b *testing.B) {
	for _, name := range []string{O200kBase, CL100kBase} {
		enc, err := loadEncoding(name)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/warm", func(b *testing.B) {
			for b.Loop() {
				count(enc, chatPrompt)
			}
		})
		b.Run(name+"/cold", func(b *testing.B) {
			sweep := make([]byte, 64<<20)
			var counted time.Duration
			for b.Loop() {
				for i := 0; i < len(sweep); i += 64 {
					sweep[i]++
				}
				start := time.Now()
				count(enc, chatPrompt)
				counted += time.Since(start)
			}
			b.ReportMetric(float64(counted.Nanoseconds())/float64(b.N), "ns/op")
		})
	}
}

// TestSplitMatchesPattern checks the hand-written pre-tokenizers against
// the patterns run by dlclark/regexp2 (as tiktoken-go runs them) on random
// strings over runes of every class the patterns tell apart: each piece
// must end where the engine's match ends.
func TestSplitMatchesPattern(t *testing.T) {
	alphabet := []string{
		"a", "z", "s", "t", "r", "e", "v", "m", "l", "d", "A", "Z", "S", "T", "R", "E", "V", "M", "L", "D",
		"'", "0", "9", " ", "\t", "\r", "\n", "\v", "\f", "\u0085", "\u00a0", "\u2028", "\u3000",
		".", ",", "/", "!", "-", "_", "(", "\"", "\x00", "\xff", "\u00ad", "\u200b", "\ufeff",
		"ſ", "\u212a", "İ", "É", "Σ", "é", "σ", "ß", "ǅ", "ʰ", "ー", "中", "あ", "א", "\u0301", "\u0903", "\u20dd",
		"٣", "Ⅷ", "½", "²", "😀", "©", "🏽",
	}
	patterns := map[string]string{O200kBase: o200kPattern, CL100kBase: cl100kPattern}
	rng := rand.New(rand.NewPCG(3, 5))
	var texts []string
	for range 30000 {
		var b strings.Builder
		for range 1 + rng.IntN(24) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	texts = append(texts, corpus()...)
	for name, pattern := range patterns {
		re := regexp2.MustCompile(pattern, regexp2.None)
		enc, err := loadEncoding(name)
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for _, s := range texts {
			rs := []rune(s)
			var want, got []int
			m, _ := re.FindStringMatch(s)
			for m != nil {
				want = append(want, m.Index+m.Length)
				m, _ = re.FindNextMatch(m)
			}
			for i := 0; i < len(rs); {
				i = enc.split(rs, i)
				got = append(got, i)
			}
			if !slices.Equal(got, want) {
				if bad++; bad <= 10 {
					t.Errorf("%s %+q: pieces end at %v, the pattern's at %v", name, s, got, want)
				}
			}
		}
	}
}
