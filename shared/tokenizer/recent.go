package tokenizer

import (
	"strings"
	"sync"
)

// Prompts repeat. Every turn of a chat sends the whole conversation again
// with one more message; a class's requests share system prompts, tool
// definitions and the assignment's text. recentCounts keeps the counts of
// the texts of prompts counted lately, so that only text not seen lately is
// encoded: a conversation costs the tokenizer its new messages, not all of
// them at every turn. The encoding is deterministic, so a kept count is the
// count.
//
// It holds at most 2*recentGeneration bytes of text (and the maps'
// overhead): texts counted go into the current generation; when it is full
// it becomes the previous one and the one before is dropped. A text found
// in the previous generation moves to the current one, so what keeps being
// used stays. Texts shorter than minRecent are cheaper to encode than to
// keep; texts longer than maxRecent would push out everything else.
const (
	recentGeneration = 1 << 20
	minRecent        = 128
	maxRecent        = recentGeneration / 4
)

// recentCounts is the counts of one encoding's texts counted lately. A nil
// *recentCounts keeps nothing. It is safe for concurrent use.
type recentCounts struct {
	mu        sync.Mutex
	cur, prev map[string]int64
	curBytes  int
}

// newRecentCounts returns an empty recentCounts.
func newRecentCounts() *recentCounts {
	return &recentCounts{cur: map[string]int64{}}
}

// count returns the number of tokens of text in e, kept or encoded.
func (r *recentCounts) count(e *encoder, text string) int64 {
	if r == nil || len(text) < minRecent || len(text) > maxRecent {
		return count(e, text)
	}
	if n, ok := r.get(text); ok {
		return n
	}
	n := count(e, text)
	r.put(text, n)
	return n
}

// get returns the kept count of text, moving it to the current generation
// when it was in the previous one.
func (r *recentCounts) get(text string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.cur[text]; ok {
		return n, true
	}
	n, ok := r.prev[text]
	if ok {
		r.keep(text, n)
	}
	return n, ok
}

// put keeps text's count.
func (r *recentCounts) put(text string, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cur[text]; !ok {
		r.keep(text, n)
	}
}

// keep adds text to the current generation, first starting a new one when
// text would overfill it. The text is copied: the caller's string may be
// part of a larger one (a request's body) that keeping it would pin.
func (r *recentCounts) keep(text string, n int64) {
	if r.curBytes+len(text) > recentGeneration {
		r.prev, r.cur, r.curBytes = r.cur, make(map[string]int64, len(r.cur)), 0
	}
	r.cur[strings.Clone(text)] = n
	r.curBytes += len(text)
}
