package tokenizer

import (
	crand "crypto/rand"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestCount(t *testing.T) {
	c := New()
	tests := []struct {
		encoding, text string
		want           int64
	}{
		{O200kBase, "", 0},
		{O200kBase, "hello world", 2},
		{CL100kBase, "hello world", 2},
		// Examples from OpenAI's cookbook (How to count tokens with tiktoken).
		{CL100kBase, "tiktoken is great!", 6},
		{O200kBase, "antidisestablishmentarianism", 6},
		{CL100kBase, "antidisestablishmentarianism", 6},
		{O200kBase, "2 + 2 = 4", 7},
		{CL100kBase, "2 + 2 = 4", 7},
		{O200kBase, "お誕生日おめでとう", 8},
		{CL100kBase, "お誕生日おめでとう", 9},
		// Special tokens are ordinary text.
		{O200kBase, "<|endoftext|>", 7},
	}
	for _, tt := range tests {
		got, err := c.Count(tt.encoding, tt.text)
		if err != nil || got != tt.want {
			t.Errorf("Count(%s, %q) = %d, %v; want %d", tt.encoding, tt.text, got, err, tt.want)
		}
		got, err = c.Completion(tt.encoding, tt.text)
		if err != nil || got != tt.want {
			t.Errorf("Completion(%s, %q) = %d, %v; want %d", tt.encoding, tt.text, got, err, tt.want)
		}
	}
}

func TestUnknownEncoding(t *testing.T) {
	c := New()
	for _, enc := range []string{"", "p50k_base", "r50k_base", "gpt2", "O200K_BASE"} {
		if _, err := c.Count(enc, "hi"); err == nil {
			t.Errorf("Count(%q) succeeded", enc)
		}
		if _, err := c.Completion(enc, "hi"); err == nil {
			t.Errorf("Completion(%q) succeeded", enc)
		}
		if _, err := c.Prompt(enc, "/v1/chat/completions", []byte(`{"messages":[]}`)); err == nil {
			t.Errorf("Prompt(%q) succeeded", enc)
		}
	}
}

func TestZeroCounter(t *testing.T) {
	var c Counter
	if n, err := c.Count(CL100kBase, "hello world"); err != nil || n != 2 {
		t.Errorf("zero Counter: %d, %v", n, err)
	}
}

// TestConcurrentLazyLoad counts from many goroutines on a fresh Counter:
// each encoding is built exactly once and only when first used.
func TestConcurrentLazyLoad(t *testing.T) {
	var loads [2]atomic.Int32
	c := &Counter{load: func(name string) (*encoder, error) {
		if name == O200kBase {
			loads[0].Add(1)
		} else {
			loads[1].Add(1)
		}
		return loadEncoding(name)
	}}
	body := []byte(`{"messages":[{"role":"user","content":"Hello"}]}`)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 64 {
		wg.Go(func() {
			if n, err := c.Count(O200kBase, "hello world"); err != nil || n != 2 {
				errs <- "Count"
			}
			if n, err := c.Prompt(O200kBase, "/v1/chat/completions", body); err != nil || n != 9 {
				errs <- "Prompt"
			}
			if i%2 == 0 {
				if n, err := c.Count(CL100kBase, "tiktoken is great!"); err != nil || n != 6 {
					errs <- "Count cl100k"
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("%s gave a wrong count", e)
	}
	if loads[0].Load() != 1 || loads[1].Load() != 1 {
		t.Errorf("loads o200k=%d cl100k=%d, want 1 each", loads[0].Load(), loads[1].Load())
	}

	// An encoding never used is never loaded.
	var o200k atomic.Int32
	c2 := &Counter{load: func(name string) (*encoder, error) {
		if name == O200kBase {
			o200k.Add(1)
		}
		return loadEncoding(name)
	}}
	if _, err := c2.Count(CL100kBase, "x"); err != nil {
		t.Fatal(err)
	}
	if o200k.Load() != 0 {
		t.Error("o200k_base loaded without being used")
	}
}

// TestSplitIsExact checks that cutting text at every boundary splitText
// allows gives the same count as encoding it whole.
func TestSplitIsExact(t *testing.T) {
	c := New()
	alphabet := []string{
		"a", "b", "Z", "Q", "é", "ß", "中", "文", "，", "。", "1", "2", "9", "٣", "Ⅷ",
		" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\v",
		".", ",", "/", "'", "'s", "'LL", "\"", "(", "-", "_", "=", "{", ":",
		"😀", "👍🏽", "\u0301", "\u200b", "\x00", "\xff", "\xe4\xbd",
		"hello", " world", "HTTP", "JSONParser", "x86", "don't",
	}
	texts := []string{
		"Hello, world! It's 2026-11-23 and we've 1,234,567.89 tokens.\n\n  func main() {\n\tfmt.Println(\"hi\")\n}\n",
		`{"model":"gpt-4o","messages":[{"role":"user","content":"What's the weather in Paris?"}],"temperature":0.2}`,
		"日本語のテキスト、そして中文文本。Ελληνικά κείμενα. Русский текст!",
		strings.Repeat("The quick brown fox jumps over the lazy dog. ", 500),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	for _, enc := range []string{O200kBase, CL100kBase} {
		tk := reference(t, enc)
		e, err := c.encoding(enc)
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for _, s := range texts {
			want := int64(len(tk.EncodeOrdinary(s)))
			if got := countSplit(e, s, 1, 1<<30); got != want && bad < 10 {
				bad++
				t.Errorf("%s %q: split count %d, whole %d", enc, s, got, want)
			}
			if got := count(e, s); got != want && bad < 10 {
				bad++
				t.Errorf("%s %q: count %d, whole %d", enc, s, got, want)
			}
		}
	}
}

// TestLongRuns checks that runs tiktoken would take quadratic time on are
// counted quickly and never below their real count.
func TestLongRuns(t *testing.T) {
	c := New()
	for _, enc := range []string{O200kBase, CL100kBase} {
		tk := reference(t, enc)
		e, err := c.encoding(enc)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{
			strings.Repeat(" ", 3000),
			strings.Repeat("a", 3000),
			strings.Repeat("中", 1000),
			strings.Repeat("=", 3000),
			strings.Repeat("\xff", 2000),
		} {
			whole := int64(len(tk.EncodeOrdinary(s)))
			if got := count(e, s); got < whole {
				t.Errorf("%s %q...: count %d below real %d", enc, s[:3], got, whole)
			}
		}
		// Inputs that would take minutes encoded whole (1 MB runs) or are
		// costly per byte (base64).
		blob := make([]byte, 96<<10)
		crand.Read(blob)
		for _, s := range []string{
			strings.Repeat(" ", 1<<20),
			strings.Repeat("QUJD", 1<<18),
			base64.StdEncoding.EncodeToString(blob),
		} {
			if n := count(e, s); n <= 0 || n > int64(len(s)) {
				t.Errorf("%s: count of %d bytes = %d", enc, len(s), n)
			}
		}
	}
}
