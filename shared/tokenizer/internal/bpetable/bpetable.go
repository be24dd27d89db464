// Package bpetable is the stored form of a byte-pair encoding's ranks: Build
// turns a rank table into one byte string, and a Table answers "what is the
// rank of these bytes" by reading that string in place, with nothing to
// parse or allocate when it is opened. The string is meant to be embedded in
// the binary (go:embed), so its pages are mapped read-only from the
// executable instead of living on the heap.
//
// The layout is chosen for lookups with cold CPU caches, as in a proxy that
// counts one prompt between much other work: every cache line a lookup
// touches is then a trip to memory. A lookup reads 8-byte slots, starting
// at the home slot that a hash of the bytes picks; they are 8-byte aligned
// within the table (and the linker aligns large embedded data further), so
// none straddles two cache lines, and usually the home slot's line is the
// only one read. A short token (up to 6 bytes in tables of 1<<14 to 1<<21
// slots: most of the tokens a prompt's text is made of) is held by its
// slot; only a longer one also has its bytes read from the blob. Bytes that
// are no token are told apart by the slots alone, unless they are longer
// than a short token and meet a slot with the same length, distance and
// 13-bit tag (one in 8192 of those).
//
// Every integer is little-endian:
//
//	header          magic "BPE2", then as uint32: n (tokens, ranks 0..n-1),
//	                bits (the slot table has 1<<bits slots) and the length
//	                of the blob
//	slots [1<<bits] uint64: an open-addressing hash table with linear probing
//	                in Robin Hood order: no token is closer to its home slot
//	                than a token that probed past it, so a search for bytes
//	                that are no token stops at the first slot whose token is
//	                closer to its home than the search has come
//	blob            the bytes of the tokens too long to be short, in rank
//	                order
//
// A slot is 0 if empty; otherwise, from the low bits up:
//
//	rank+1     18 bits
//	dist+1      5 bits  how far the slot is from the token's home slot
//	len-1       7 bits  the token's length, 1 to 128
//	key        34 bits  for a short token, what identifies it in its home
//	                    slot (see below); for a longer one, where it starts
//	                    in the blob (21 bits) and the top 13 bits of its hash,
//	                    so that a probe rarely reads blob bytes that do not
//	                    match
//
// A token is short if it has at most m = min(8, (34+bits)/8) bytes, so that
// m bytes are at most 34 bits more than a slot index. Its bytes, as a
// little-endian integer k of w = 8*m bits, go through mix, a bijection of
// the w-bit integers: the top bits bits of mix(k) are the token's home slot
// and the other w-bits bits its key, so that the home slot, the key and
// the length determine the token. A longer token's home slot is the low
// bits bits of hash(token).
package bpetable

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	magic  = "BPE2"
	header = 16

	rankBits  = 18 // ranks up to 1<<18 - 2; o200k_base has 199,998 tokens
	rankMask  = 1<<rankBits - 1
	distShift = rankBits
	distBits  = 5
	distMask  = 1<<distBits - 1
	maxDist   = distMask - 1 // dist+1 has to fit
	lenShift  = distShift + distBits
	lenBits   = 7
	maxLen    = 1 << lenBits // tiktoken's longest tokens are 128 bytes
	keyShift  = lenShift + lenBits
	keyBits   = 64 - keyShift
	offBits   = 21 // the blob of o200k_base's long tokens has about 900 KB
	offMask   = 1<<offBits - 1
	tagBits   = keyBits - offBits
)

// Table is a rank table opened in place. The zero Table holds no tokens.
type Table struct {
	n        int
	mask     uint32 // 1<<bits - 1
	bits     uint
	shortMax int  // the longest short token, m in the package doc
	w        uint // 8*shortMax
	slots    string
	blob     string
}

// newTable returns a Table of n tokens and 1<<bits slots, with the fields
// derived from bits that Rank would otherwise compute each time.
func newTable(n int, bits uint, slots, blob string) Table {
	m := shortMax(bits)
	return Table{n: n, mask: 1<<bits - 1, bits: bits, shortMax: m, w: 8 * uint(m), slots: slots, blob: blob}
}

// Open checks data's header and sizes and returns the Table it holds. data
// is used in place and must not change.
func Open(data string) (Table, error) {
	if len(data) < header || data[:4] != magic {
		return Table{}, errors.New("bpetable: not a BPE2 table")
	}
	n, bits, blobLen := int(u32(data, 4)), u32(data, 8), int(u32(data, 12))
	if n <= 0 || n > rankMask-1 || bits < 1 || bits > 24 || 1<<bits <= n || blobLen > offMask {
		return Table{}, fmt.Errorf("bpetable: bad header (n=%d, bits=%d, blob %d bytes)", n, bits, blobLen)
	}
	slotEnd := header + 8<<bits
	if len(data) != slotEnd+blobLen {
		return Table{}, fmt.Errorf("bpetable: %d bytes; the header says %d", len(data), slotEnd+blobLen)
	}
	return newTable(n, uint(bits), data[header:slotEnd], data[slotEnd:]), nil
}

// Len returns the number of tokens.
func (t Table) Len() int { return t.n }

// Rank returns the rank of the token whose bytes are b, and whether there is
// one.
func (t Table) Rank(b []byte) (int, bool) {
	if t.n == 0 || len(b) == 0 || len(b) > maxLen {
		return 0, false
	}
	i, key, keyMask := t.locate(b)
	// d is the distance from the home slot plus one. A stored dist+1 is
	// below 1<<distBits, so the loop ends within that many slots whatever
	// the table holds.
	for d := uint64(1); ; d++ {
		s := u64(t.slots, 8*int(i))
		// Had b been inserted, it would have taken this slot from a token
		// closer to its home, or an empty one (0 < d).
		if s>>distShift&distMask < d {
			return 0, false
		}
		// The distance is part of what has to match: it puts the slot's
		// token in the same home slot as b.
		if s&keyMask == key|d<<distShift {
			if len(b) <= t.shortMax {
				return int(s&rankMask) - 1, true
			}
			off := int(s >> keyShift & offMask)
			if end := off + len(b); end <= len(t.blob) && t.blob[off:end] == string(b) {
				return int(s&rankMask) - 1, true
			}
		}
		i = (i + 1) & t.mask
	}
}

// locate returns b's home slot, and the bits its slot holds other than the
// rank, the distance and (for a long token) the blob offset, with the mask
// that selects them and the distance. Build and Rank both use it, so what
// is stored and what is looked for cannot disagree.
func (t Table) locate(b []byte) (home uint32, key, keyMask uint64) {
	key = uint64(len(b)-1) << lenShift
	if len(b) <= t.shortMax {
		m := mix(pack(b), t.w)
		home = uint32(m >> (t.w - t.bits))
		return home, key | m&(1<<(t.w-t.bits)-1)<<keyShift, ^uint64(rankMask)
	}
	h := hash(b)
	return h & t.mask, key | uint64(h>>(32-tagBits))<<(keyShift+offBits), ^uint64(rankMask | offMask<<keyShift)
}

// shortMax returns the longest short token in a table of 1<<bits slots: its
// bytes less the bits of the slot index must fit in a slot's key.
func shortMax(bits uint) int { return min(8, int(keyBits+bits)/8) }

// pack returns b, of at most 8 bytes, as a little-endian integer.
func pack(b []byte) uint64 {
	var k uint64
	for i, c := range b {
		k |= uint64(c) << (8 * i)
	}
	return k
}

// mix is a bijection of the w-bit integers, 2 <= w <= 64, that spreads
// every input bit over the top bits: xor with a right shift and
// multiplication by an odd number modulo 1<<w can both be undone. It is
// part of the stored format: changing it needs the tables regenerated.
func mix(k uint64, w uint) uint64 {
	mask := ^uint64(0) >> (64 - w)
	k ^= k >> (w / 2)
	k = k * 0x9e3779b97f4a7c15 & mask
	k ^= k >> (w / 2)
	k = k * 0xd6e8feb86659fd93 & mask
	k ^= k >> (w / 2)
	return k
}

// Build returns the stored form of ranks, which must number the tokens
// 0..len(ranks)-1. The result depends only on ranks.
func Build(ranks map[string]int) ([]byte, error) {
	n := len(ranks)
	if n == 0 || n > rankMask-1 {
		return nil, fmt.Errorf("bpetable: %d tokens; want 1 to %d", n, rankMask-1)
	}
	byRank := make([]string, n)
	for tok, r := range ranks {
		if r < 0 || r >= n || byRank[r] != "" || tok == "" || len(tok) > maxLen {
			return nil, fmt.Errorf("bpetable: ranks are not 0..%d, one distinct token of 1 to %d bytes each (rank %d)", n-1, maxLen, r)
		}
		byRank[r] = tok
	}
	bits := uint(1)
	for 1<<bits <= n+n/4 { // under 80% full, and never full
		bits++
	}
	t := newTable(n, bits, "", "")
	slots := make([]uint64, 1<<bits)
	var blob []byte
	for r, tok := range byRank {
		i, s, _ := t.locate([]byte(tok))
		s |= uint64(r + 1)
		if len(tok) > t.shortMax {
			if len(blob)+len(tok) > offMask {
				return nil, errors.New("bpetable: the long tokens do not fit in the blob")
			}
			s |= uint64(len(blob)) << keyShift
			blob = append(blob, tok...)
		}
		// Robin Hood insertion: walk from the home slot; whenever the token
		// being placed is farther from its home than the slot's, swap them
		// and go on placing the other.
		for d := uint64(0); ; d++ {
			if d > maxDist {
				return nil, fmt.Errorf("bpetable: a probe sequence is longer than %d slots", maxDist+1)
			}
			s = s&^(distMask<<distShift) | (d+1)<<distShift
			o := slots[i]
			if o == 0 {
				slots[i] = s
				break
			}
			if od := o>>distShift&distMask - 1; od < d {
				slots[i], s, d = s, o, od
			}
			i = (i + 1) & t.mask
		}
	}
	out := make([]byte, 0, header+8<<bits+len(blob))
	out = append(out, magic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(n))
	out = binary.LittleEndian.AppendUint32(out, uint32(bits))
	out = binary.LittleEndian.AppendUint32(out, uint32(len(blob)))
	for _, s := range slots {
		out = binary.LittleEndian.AppendUint64(out, s)
	}
	return append(out, blob...), nil
}

// hash is FNV-1a followed by murmur3's finaliser, so that the low bits (the
// home slot) and the high bits (the tag) both depend on every byte. It is
// part of the stored format: changing it needs the tables regenerated.
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

func u64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}
