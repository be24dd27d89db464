package bpetable

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// vocabulary returns n distinct tokens numbered 0..n-1: the 256 single
// bytes first (as in tiktoken's encodings), then random ones of 2 to 128
// bytes, mostly short, over an alphabet with zero bytes and high bytes so
// that zero padding and length are put to the test.
func vocabulary(n int, seed uint64) map[string]int {
	rng := rand.New(rand.NewPCG(seed, 1))
	ranks := make(map[string]int, n)
	for c := 0; c < 256 && len(ranks) < n; c++ {
		ranks[string([]byte{byte(c)})] = len(ranks)
	}
	alphabet := []byte("\x00\x00ab e\xff\xc3\xa9")
	for len(ranks) < n {
		size := 2 + rng.IntN(7)
		if rng.IntN(8) == 0 {
			size = 2 + rng.IntN(maxLen-1)
		}
		tok := make([]byte, size)
		for i := range tok {
			tok[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if _, dup := ranks[string(tok)]; !dup {
			ranks[string(tok)] = len(ranks)
		}
	}
	return ranks
}

// TestRoundTrip checks that a built table finds every token's rank and no
// other bytes, for tables small and large enough to have short tokens of
// 4 to 6 bytes, and that building is deterministic.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		ranks    map[string]int
		shortMax int
	}{
		{"one token", map[string]int{"a": 0}, 4},
		{"padding", map[string]int{"a": 0, "a\x00": 1, "\x00": 2, "\x00\x00": 3, "\x00a": 4, "abcd": 5, "abcd\x00": 6}, 4},
		{"small", vocabulary(300, 1), 5},
		{"large", vocabulary(40000, 2), 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := Build(tt.ranks)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := Build(tt.ranks); !bytes.Equal(again, data) {
				t.Fatal("Build gave two different results")
			}
			table, err := Open(string(data))
			if err != nil {
				t.Fatal(err)
			}
			if table.Len() != len(tt.ranks) || table.shortMax != tt.shortMax {
				t.Fatalf("Len() = %d, shortMax %d; want %d, %d", table.Len(), table.shortMax, len(tt.ranks), tt.shortMax)
			}
			for tok, want := range tt.ranks {
				if got, ok := table.Rank([]byte(tok)); !ok || got != want {
					t.Fatalf("Rank(%q) = %d, %v; want %d", tok, got, ok, want)
				}
			}
			// Near misses: a byte more or less, the last byte changed.
			for tok := range tt.ranks {
				for _, b := range [][]byte{
					[]byte(tok + "\x00"),
					[]byte(tok + "a"),
					[]byte(tok[:len(tok)-1]),
					append([]byte(tok[:len(tok)-1]), tok[len(tok)-1]^1),
				} {
					want, in := tt.ranks[string(b)]
					if got, ok := table.Rank(b); ok != in || ok && got != want {
						t.Fatalf("Rank(%q) = %d, %v; want %d, %v", b, got, ok, want, in)
					}
				}
			}
			for _, b := range [][]byte{nil, {}, bytes.Repeat([]byte("a"), maxLen+1)} {
				if r, ok := table.Rank(b); ok {
					t.Errorf("Rank(%q) found rank %d", b, r)
				}
			}
		})
	}
}

// TestRankComparesLongTokens checks that bytes sharing a long token's home
// slot, length and tag, so that only the blob tells them apart, are not
// taken for it.
func TestRankComparesLongTokens(t *testing.T) {
	long := "abcdefgh"
	table, err := Open(string(mustBuild(t, map[string]int{"x": 0, long: 1})))
	if err != nil {
		t.Fatal(err)
	}
	if len(long) <= table.shortMax {
		t.Fatalf("%q is short in this table", long)
	}
	home, key, keyMask := table.locate([]byte(long))
	rng := rand.New(rand.NewPCG(5, 8))
	b := make([]byte, len(long))
	for range 1 << 24 {
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		if h, k, _ := table.locate(b); h != home || k&keyMask != key || string(b) == long {
			continue
		}
		if r, ok := table.Rank(b); ok {
			t.Fatalf("Rank(%q) = %d, the rank of %q", b, r, long)
		}
		return
	}
	t.Fatal("found no bytes with the same home slot and tag")
}

func mustBuild(t *testing.T, ranks map[string]int) []byte {
	t.Helper()
	data, err := Build(ranks)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestOpenAllocatesNothing checks that opening a table reads its header
// only: the tables are opened in every cold start.
func TestOpenAllocatesNothing(t *testing.T) {
	data := string(mustBuild(t, vocabulary(1000, 3)))
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := Open(data); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("Open allocates %v times", allocs)
	}
}

// TestOpenRejects checks that data that is not a whole table is an error,
// not a crash or a wrong answer at the first lookup.
func TestOpenRejects(t *testing.T) {
	data := string(mustBuild(t, vocabulary(1000, 4)))
	withHeader := func(n, bits, blob uint32) string {
		b := []byte(data[:header])
		for i, v := range []uint32{n, bits, blob} {
			b[4+4*i], b[5+4*i], b[6+4*i], b[7+4*i] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		return string(b) + data[header:]
	}
	for name, d := range map[string]string{
		"empty":      "",
		"short":      data[:header-1],
		"magic":      "BPE1" + data[4:],
		"truncated":  data[:len(data)-1],
		"extra byte": data + "x",
		"no tokens":  withHeader(0, u32(data, 8), u32(data, 12)),
		"too full":   withHeader(1<<u32(data, 8), u32(data, 8), u32(data, 12)),
		"bits":       withHeader(u32(data, 4), u32(data, 8)+1, u32(data, 12)),
		"huge bits":  withHeader(u32(data, 4), 40, u32(data, 12)),
		"blob":       withHeader(u32(data, 4), u32(data, 8), u32(data, 12)+1),
	} {
		if _, err := Open(d); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
	var zero Table
	if r, ok := zero.Rank([]byte("a")); ok || zero.Len() != 0 {
		t.Errorf("zero Table: Rank = %d, %v, Len = %d", r, ok, zero.Len())
	}
}

// TestBuildRejects checks the conditions on Build's input.
func TestBuildRejects(t *testing.T) {
	for name, ranks := range map[string]map[string]int{
		"empty":          {},
		"gap":            {"a": 0, "b": 2},
		"same rank":      {"a": 0, "b": 0},
		"negative":       {"a": -1},
		"empty token":    {"": 0},
		"too long token": {strings.Repeat("a", maxLen+1): 0},
	} {
		if _, err := Build(ranks); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}
}

// TestMixIsBijection checks on small widths, exhaustively, what the stored
// format relies on: distinct short tokens of one length never share both
// home slot and key.
func TestMixIsBijection(t *testing.T) {
	for _, w := range []uint{8, 16, 24} {
		seen := make([]bool, 1<<w)
		for k := range uint64(1) << w {
			m := mix(k, w)
			if m >= 1<<w || seen[m] {
				t.Fatalf("w=%d: mix(%#x) = %#x again or out of range", w, k, m)
			}
			seen[m] = true
		}
	}
}
