// Package tokenizer counts OpenAI tokens offline with tiktoken, so stipend can
// estimate a request's usage before it is sent and when the upstream reports
// none.
//
// The BPE ranks are those github.com/pkoukk/tiktoken-go-loader embeds,
// converted at generation time (internal/gen) into tables that are embedded
// in the binary and searched in place (internal/bpetable): nothing is
// downloaded, parsed or copied onto the heap, so opening an encoding is
// cheap. The counts are tiktoken-go's exactly (TestCountsMatchTiktoken).
package tokenizer

import (
	"fmt"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Encoding names a Counter understands.
const (
	O200kBase  = "o200k_base"
	CL100kBase = "cl100k_base"
)

// Counter counts tokens. The zero value and New are ready to use; a Counter
// is safe for concurrent use and must not be copied after first use.
type Counter struct {
	o200k, cl100k lazyEncoding
	// load opens an encoding; nil means loadEncoding. Tests replace it to
	// observe how often encodings are opened.
	load func(name string) (*encoder, error)
}

type lazyEncoding struct {
	once sync.Once
	enc  *encoder
	err  error
}

// New returns a Counter with no encoding opened yet.
func New() *Counter { return &Counter{load: loadEncoding} }

// encoding returns the named encoder, opening it on first use.
func (c *Counter) encoding(name string) (*encoder, error) {
	var e *lazyEncoding
	switch name {
	case O200kBase:
		e = &c.o200k
	case CL100kBase:
		e = &c.cl100k
	default:
		return nil, fmt.Errorf("tokenizer: unknown encoding %q", name)
	}
	e.once.Do(func() {
		load := c.load
		if load == nil {
			load = loadEncoding
		}
		e.enc, e.err = load(name)
	})
	return e.enc, e.err
}

// Limits that keep counting roughly linear in the length of the text.
// tiktoken's byte-pair merge is quadratic in the length of one
// pre-tokenized piece (100 KB of spaces or of a single letter takes seconds,
// 1 MB takes minutes), so text is cut at places where the encoding's own
// pre-tokenizer always starts a new piece, which keeps the count exact, and
// a run longer than maxSegment with no such place is counted by an upper
// bound instead of being encoded.
const (
	batchBytes = 16 << 10
	maxSegment = 1 << 10
)

// count returns the number of tokens in text. Special-token text such as
// "<|endoftext|>" is counted as ordinary text, as the API treats it.
func count(enc *encoder, text string) int64 {
	return countSplit(enc, text, batchBytes, maxSegment)
}

// countSplit encodes text in batches of about batch bytes, cut only at
// boundaries where splitText holds. A segment between two such boundaries
// that is longer than maxSeg bytes is not encoded; it counts as its length
// in UTF-8 bytes (invalid bytes as the 3 bytes of U+FFFD they become), which
// no encoding can exceed because every token stands for at least one byte.
func countSplit(enc *encoder, text string, batch, maxSeg int) int64 {
	var n int64
	start, seg := 0, 0 // start of the pending batch, of the current segment
	endSegment := func(end int) {
		switch {
		case end-seg > maxSeg:
			n += encoded(enc, text[start:seg]) + byteBound(text[seg:end])
			start = end
		case end-start >= batch || end == len(text):
			n += encoded(enc, text[start:end])
			start = end
		}
		seg = end
	}
	prev := rune(-1)
	for i, r := range text {
		if prev >= 0 && splitText(prev, r) {
			endSegment(i)
		}
		prev = r
	}
	endSegment(len(text))
	return n
}

func encoded(enc *encoder, text string) int64 {
	if text == "" {
		return 0
	}
	return enc.count(text)
}

// byteBound returns the UTF-8 length of text as tiktoken sees it: each
// invalid byte becomes U+FFFD, three bytes.
func byteBound(text string) int64 {
	var n int64
	for _, r := range text {
		n += int64(utf8.RuneLen(r))
	}
	return n
}

// splitText reports whether the o200k_base and cl100k_base pre-tokenizers
// always end a piece between rune r and the following rune c, so that
// encoding the text on either side separately gives the same tokens. The
// patterns have no anchors or look-behind, so a match starting at c does not
// depend on what precedes it; what has to hold is that no piece can contain
// both r and c:
//   - before a space other than CR/LF: no piece holds a non-space followed
//     by a space (punctuation pieces take only trailing CR, LF and, in
//     o200k, "/").
//   - before CR, LF, punctuation or a symbol: letters and digits end their
//     piece there (the apostrophe is excluded: o200k letter pieces may end
//     in "'s", "'re", ...).
//   - before a digit: anything but a space or a digit ends its piece;
//     digits group in threes from the start of their run, so a run of
//     digits is never cut.
//   - before a letter: only a digit; a space or punctuation may prefix a
//     letter piece (" word", "(word").
//   - never before a combining mark, which o200k letter pieces include.
//
// The regexp engine (dlclark/regexp2) defines \s as unicode.IsSpace, \p{L} as
// unicode.IsLetter and \p{N} as unicode.IsNumber, as used here.
func splitText(r, c rune) bool {
	switch {
	case c == '\r' || c == '\n':
		return unicode.IsLetter(r) || unicode.IsNumber(r)
	case unicode.IsSpace(c):
		return !unicode.IsSpace(r)
	case unicode.IsNumber(c):
		return !unicode.IsSpace(r) && !unicode.IsNumber(r)
	case unicode.IsLetter(c):
		return unicode.IsNumber(r)
	case unicode.IsMark(c) || c == '\'':
		return false
	default: // punctuation, symbols, controls
		return unicode.IsLetter(r) || unicode.IsNumber(r)
	}
}

// Count returns the number of tokens text encodes to in the named encoding
// ("o200k_base" or "cl100k_base"). An unknown encoding is an error.
func (c *Counter) Count(encoding, text string) (int64, error) {
	enc, err := c.encoding(encoding)
	if err != nil {
		return 0, err
	}
	return count(enc, text), nil
}

// Completion counts generated text, such as the concatenated deltas of a
// stream. It is Count, provided for symmetry with Prompt.
func (c *Counter) Completion(encoding, text string) (int64, error) {
	return c.Count(encoding, text)
}
