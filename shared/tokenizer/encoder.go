package tokenizer

import (
	_ "embed"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/stipend/stipend/shared/tokenizer/internal/bpetable"
)

// The rank tables, in bpetable's stored form, written by internal/gen from
// tiktoken-go-loader's BPE files. Embedded as strings, they stay in the
// binary's read-only data: opening one parses nothing and allocates nothing.
//
//go:generate go run ./internal/gen -out tables
var (
	//go:embed tables/o200k_base.bpe
	o200kTable string
	//go:embed tables/cl100k_base.bpe
	cl100kTable string
)

// encoder counts the tokens of one encoding exactly as tiktoken does: the
// text is split by the encoding's pre-tokenizer (split.go: the pattern's
// matches), and each piece that is not itself a token is merged byte pair by
// byte pair, lowest rank first.
type encoder struct {
	ranks bpetable.Table
	// split returns the end of the piece that starts at rs[i].
	split func(rs []rune, i int) int
	// recent keeps the counts of prompt texts counted lately (recent.go);
	// nil keeps none.
	recent *recentCounts
}

// loadEncoding opens the named encoding's embedded table, which takes no
// noticeable time or memory.
func loadEncoding(name string) (*encoder, error) {
	var table string
	var split func([]rune, int) int
	switch name {
	case O200kBase:
		table, split = o200kTable, splitO200k
	case CL100kBase:
		table, split = cl100kTable, splitCL100k
	default:
		return nil, fmt.Errorf("tokenizer: unknown encoding %q", name)
	}
	ranks, err := bpetable.Open(table)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	return &encoder{ranks: ranks, split: split, recent: newRecentCounts()}, nil
}

// count returns the number of tokens tiktoken's EncodeOrdinary gives for
// text. The pre-tokenizer works on runes, so an invalid byte is a U+FFFD in
// the piece it falls in, as with tiktoken-go.
func (e *encoder) count(text string) int64 {
	var (
		n     int64
		piece []byte
		parts []mergePart
	)
	rs := []rune(text)
	for i := 0; i < len(rs); {
		j := max(e.split(rs, i), i+1) // every piece holds a rune
		piece = piece[:0]
		for _, r := range rs[i:j] {
			piece = utf8.AppendRune(piece, r)
		}
		var k int
		k, parts = e.pieceTokens(piece, parts)
		n += int64(k)
		i = j
	}
	return n
}

// mergePart is where one token of a piece starts, and the rank of the token that
// merging it with the next part would make (math.MaxInt for none).
type mergePart struct{ start, rank int }

// pieceTokens returns the number of tokens piece encodes to, and parts for
// reuse. It is tiktoken-go's bytePairMerge (bpe.go), counting instead of
// collecting: quadratic in the length of the piece, which count's callers
// bound.
func (e *encoder) pieceTokens(piece []byte, parts []mergePart) (int, []mergePart) {
	if len(piece) == 0 {
		return 0, parts
	}
	if _, ok := e.ranks.Rank(piece); ok {
		return 1, parts
	}
	parts = parts[:0]
	for i := 0; i <= len(piece); i++ {
		parts = append(parts, mergePart{start: i, rank: math.MaxInt})
	}
	// rank is the rank of the bytes from part i to part i+skip+2.
	rank := func(i, skip int) int {
		if i+skip+2 < len(parts) {
			if r, ok := e.ranks.Rank(piece[parts[i].start:parts[i+skip+2].start]); ok {
				return r
			}
		}
		return math.MaxInt
	}
	for i := 0; i < len(parts)-2; i++ {
		parts[i].rank = rank(i, 0)
	}
	for len(parts) > 1 {
		minRank, i := math.MaxInt, -1
		for j := 0; j < len(parts)-1; j++ {
			if parts[j].rank < minRank {
				minRank, i = parts[j].rank, j
			}
		}
		if minRank == math.MaxInt {
			break
		}
		parts[i].rank = rank(i, 1)
		if i > 0 {
			parts[i-1].rank = rank(i-1, 1)
		}
		parts = append(parts[:i+1], parts[i+2:]...)
	}
	return len(parts) - 1, parts
}
