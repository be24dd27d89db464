package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// TestRecentCounts: a text counted through the kept counts has the count
// the encoder gives it, the first time and when kept; texts too short or
// too long to keep are counted and not kept; a kept text is a copy.
func TestRecentCounts(t *testing.T) {
	enc, err := loadEncoding(O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("The quick brown fox jumps over the lazy dog. 日本語のテキスト、1234567. ", 5000)
	tests := []struct {
		name string
		text string
		kept bool
	}{
		{"shorter than minRecent", body[:minRecent-1], false},
		{"minRecent", body[:minRecent], true},
		{"a message", body[:1500], true},
		{"maxRecent", strings.ToValidUTF8(body[:maxRecent], ""), true},
		{"longer than maxRecent", body[:maxRecent+1], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecentCounts()
			want := count(enc, tt.text)
			for i := range 3 {
				if got := r.count(enc, tt.text); got != want {
					t.Fatalf("count %d = %d, want %d", i, got, want)
				}
			}
			if _, kept := r.cur[tt.text]; kept != tt.kept {
				t.Fatalf("kept = %v, want %v", kept, tt.kept)
			}
			for k := range r.cur {
				if unsafe.StringData(k) == unsafe.StringData(tt.text) {
					t.Error("the kept text shares the caller's memory")
				}
			}
		})
	}
	var none *recentCounts
	if got, want := none.count(enc, body[:1500]), count(enc, body[:1500]); got != want {
		t.Errorf("nil recentCounts: count = %d, want %d", got, want)
	}
}

// TestRecentCountsBounded: however many texts are counted, at most two
// generations of text are kept, and a text that keeps being used survives
// the generations that pass while others come and go.
func TestRecentCountsBounded(t *testing.T) {
	enc, err := loadEncoding(O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	r := newRecentCounts()
	system := "You are a helpful teaching assistant for an introductory programming course. " +
		"Answer briefly, show code in Go, and never give the full solution to an assignment."
	want := count(enc, system)
	const size = 4 << 10
	for i := range 3 * recentGeneration / size {
		text := fmt.Sprintf("%08d %s", i, strings.Repeat("x", size-9))
		if got := r.count(enc, text); got != count(enc, text) {
			t.Fatalf("text %d: count %d, want %d", i, got, count(enc, text))
		}
		if got := r.count(enc, system); got != want {
			t.Fatalf("system prompt after text %d: count %d, want %d", i, got, want)
		}
		held := 0
		for k := range r.cur {
			held += len(k)
		}
		if held != r.curBytes || r.curBytes > recentGeneration {
			t.Fatalf("after text %d: current generation holds %d bytes, says %d, limit %d", i, held, r.curBytes, recentGeneration)
		}
		for k := range r.prev {
			held += len(k)
		}
		if held > 2*recentGeneration {
			t.Fatalf("after text %d: %d bytes kept, want at most %d", i, held, 2*recentGeneration)
		}
	}
	if _, ok := r.cur[system]; !ok {
		t.Error("the system prompt, used at every turn, is not in the current generation")
	}
	if _, ok := r.cur[fmt.Sprintf("%08d %s", 0, strings.Repeat("x", size-9))]; ok {
		t.Error("the first text, never used again, is still kept")
	}
}

// TestRecentCountsConcurrent: goroutines counting the same and different
// texts at once all get the encoder's counts (run with -race).
func TestRecentCountsConcurrent(t *testing.T) {
	enc, err := loadEncoding(CL100kBase)
	if err != nil {
		t.Fatal(err)
	}
	texts := make([]string, 16)
	want := make([]int64, len(texts))
	for i := range texts {
		texts[i] = strings.Repeat(fmt.Sprintf("message %d of a conversation, with some text. ", i%5), 8+i)
		want[i] = count(enc, texts[i])
	}
	r := newRecentCounts()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for j := range 200 {
				i := (g + j) % len(texts)
				if got := r.count(enc, texts[i]); got != want[i] {
					t.Errorf("text %d: count %d, want %d", i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRecentCountsPromote: a text found in the previous generation is
// answered from it, without encoding, and moves to the current one.
func TestRecentCountsPromote(t *testing.T) {
	const text = "a text of the previous generation"
	r := &recentCounts{cur: map[string]int64{}, prev: map[string]int64{text: 42}}
	if n, ok := r.get(text); !ok || n != 42 {
		t.Fatalf("get = %d, %v; want 42, true", n, ok)
	}
	if n, ok := r.cur[text]; !ok || n != 42 || r.curBytes != len(text) {
		t.Fatalf("current generation %v (%d bytes); want the text, 42", r.cur, r.curBytes)
	}
	if _, ok := r.get("another"); ok {
		t.Fatal("get found a text never kept")
	}
}
