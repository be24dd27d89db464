// Package bpetable is the stored form of a byte-pair encoding's ranks: Build
// turns a rank table into one byte string, and a Table answers "what is the
// rank of these bytes" by reading that string in place, with nothing to
// parse or allocate when it is opened. The string is meant to be embedded in
// the binary (go:embed), so its pages are mapped read-only from the
// executable instead of living on the heap.
//
// Layout (every integer a little-endian uint32):
//
//	magic "BPE1", n (tokens, ranks 0..n-1), bits (the slot table has 1<<bits entries)
//	offsets [n+1]   token r is blob[offsets[r]:offsets[r+1]]
//	slots [1<<bits] an open-addressing hash table with linear probing:
//	                0 is empty, otherwise tag<<rankBits | (rank+1), where
//	                tag is the top bits of the token's hash, so that a probe
//	                rarely has to compare bytes that do not match
//	blob            the tokens' bytes, in rank order
package bpetable

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	magic    = "BPE1"
	header   = 12
	rankBits = 18 // ranks up to 1<<18 - 2; o200k_base has 199,998 tokens
	rankMask = 1<<rankBits - 1
)

// Table is a rank table opened in place. The zero Table holds no tokens.
type Table struct {
	n       int
	mask    uint32
	offsets string // (n+1) uint32
	slots   string // (mask+1) uint32
	blob    string
}

// Open checks data's header and sizes and returns the Table it holds. data
// is used in place and must not change.
func Open(data string) (Table, error) {
	if len(data) < header || data[:4] != magic {
		return Table{}, errors.New("bpetable: not a BPE1 table")
	}
	n, bits := int(u32(data, 4)), u32(data, 8)
	if n <= 0 || n > rankMask-1 || bits < 1 || bits > 30 || 1<<bits <= n {
		return Table{}, fmt.Errorf("bpetable: bad header (n=%d, bits=%d)", n, bits)
	}
	offEnd := header + 4*(n+1)
	slotEnd := offEnd + 4<<bits
	if len(data) < slotEnd {
		return Table{}, errors.New("bpetable: truncated")
	}
	t := Table{n: n, mask: 1<<bits - 1, offsets: data[header:offEnd], slots: data[offEnd:slotEnd], blob: data[slotEnd:]}
	if int(u32(t.offsets, 4*n)) != len(t.blob) {
		return Table{}, errors.New("bpetable: blob size does not match its offsets")
	}
	return t, nil
}

// Len returns the number of tokens.
func (t Table) Len() int { return t.n }

// Token returns the bytes of the token of rank r, 0 <= r < Len().
func (t Table) Token(r int) string {
	return t.blob[u32(t.offsets, 4*r):u32(t.offsets, 4*r+4)]
}

// Rank returns the rank of the token whose bytes are b, and whether there is
// one.
func (t Table) Rank(b []byte) (int, bool) {
	if t.n == 0 {
		return 0, false
	}
	h := hash(b)
	tag := h >> rankBits
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := u32(t.slots, 4*int(i))
		if s == 0 {
			return 0, false
		}
		if s>>rankBits == tag {
			if r := int(s&rankMask) - 1; t.Token(r) == string(b) {
				return r, true
			}
		}
	}
}

// Build returns the stored form of ranks, which must number the tokens
// 0..len(ranks)-1. The result depends only on ranks.
func Build(ranks map[string]int) ([]byte, error) {
	n := len(ranks)
	if n == 0 || n > rankMask-1 {
		return nil, fmt.Errorf("bpetable: %d tokens; want 1 to %d", n, rankMask-1)
	}
	byRank := make([]string, n)
	size := 0
	for tok, r := range ranks {
		if r < 0 || r >= n || byRank[r] != "" || tok == "" {
			return nil, fmt.Errorf("bpetable: ranks are not 0..%d, one distinct non-empty token each (rank %d)", n-1, r)
		}
		byRank[r] = tok
		size += len(tok)
	}
	bits := uint32(1)
	for 1<<bits < n+n/4 { // at most 80% full
		bits++
	}
	out := make([]byte, 0, header+4*(n+1)+4<<bits+size)
	out = append(out, magic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(n))
	out = binary.LittleEndian.AppendUint32(out, bits)
	off := 0
	for _, tok := range byRank {
		out = binary.LittleEndian.AppendUint32(out, uint32(off))
		off += len(tok)
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(off))
	slots := make([]uint32, 1<<bits)
	mask := uint32(1)<<bits - 1
	for r, tok := range byRank {
		h := hash([]byte(tok))
		i := h & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = h>>rankBits<<rankBits | uint32(r+1)
	}
	for _, s := range slots {
		out = binary.LittleEndian.AppendUint32(out, s)
	}
	for _, tok := range byRank {
		out = append(out, tok...)
	}
	return out, nil
}

// hash is FNV-1a followed by murmur3's finaliser, so that the low bits (the
// slot) and the high bits (the tag) both depend on every byte. It is part of
// the stored format: changing it needs the tables regenerated.
func hash(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

func u32(s string, i int) uint32 {
	_ = s[i+3]
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}
