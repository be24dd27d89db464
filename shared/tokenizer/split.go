package tokenizer

import "unicode"

// The pre-tokenizers, written out by hand: each returns where the piece that
// starts at rs[i] ends, exactly where tiktoken-go's regular expression
// (o200kPattern, cl100kPattern, run by dlclark/regexp2 over the text's
// runes) ends its match. The alternatives are tried in the pattern's order,
// with the backtracking the engine would do; TestSplitMatchesPattern
// compares them with regexp2 on every kind of character the classes
// distinguish.
//
// Character classes as regexp2 defines them: \s is unicode.IsSpace, \p{L}
// unicode.IsLetter, \p{N} unicode.IsNumber, \p{X} unicode category X.

// splitCL100k ends the piece at rs[i] for
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func splitCL100k(rs []rune, i int) int {
	if c := contraction(rs, i); c > 0 {
		return i + c
	}
	if r := rs[i]; unicode.IsLetter(r) {
		return letterRun(rs, i+1)
	} else if i+1 < len(rs) && prefix(r) && unicode.IsLetter(rs[i+1]) {
		return letterRun(rs, i+2)
	}
	return splitTail(rs, i, false)
}

// splitO200k ends the piece at rs[i] for
//
//	[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//	|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
func splitO200k(rs []rune, i int) int {
	p := prefix(rs[i])
	if p {
		if e, ok := upperThenLower(rs, i+1); ok {
			return e
		}
	}
	if e, ok := upperThenLower(rs, i); ok {
		return e
	}
	if p {
		if e, ok := upperRun(rs, i+1); ok {
			return e
		}
	}
	if e, ok := upperRun(rs, i); ok {
		return e
	}
	return splitTail(rs, i, true)
}

// upperThenLower matches [U]*[L]+(contraction)? at rs[pos] (U and L the
// o200k classes upper and lower). The engine gives back upper characters
// one at a time until a lower one follows, so the lower run starts at the
// last position k (from the end of the upper run down to pos) holding a
// lower character.
func upperThenLower(rs []rune, pos int) (int, bool) {
	u := pos
	for u < len(rs) && upper(rs[u]) {
		u++
	}
	k := u
	for k >= pos && (k >= len(rs) || !lower(rs[k])) {
		k--
	}
	if k < pos {
		return 0, false
	}
	e := k
	for e < len(rs) && lower(rs[e]) {
		e++
	}
	return e + contraction(rs, e), true
}

// upperRun matches [U]+[L]*(contraction)? at rs[pos].
func upperRun(rs []rune, pos int) (int, bool) {
	u := pos
	for u < len(rs) && upper(rs[u]) {
		u++
	}
	if u == pos {
		return 0, false
	}
	for u < len(rs) && lower(rs[u]) {
		u++
	}
	return u + contraction(rs, u), true
}

// splitTail is the alternatives both patterns end with:
//
//	\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// with [\r\n/]* after the punctuation run in o200k (slash).
func splitTail(rs []rune, i int, slash bool) int {
	n := len(rs)
	r := rs[i]
	if unicode.IsNumber(r) {
		j := i + 1
		for j < n && j < i+3 && unicode.IsNumber(rs[j]) {
			j++
		}
		return j
	}
	j := i
	if r == ' ' && j+1 < n && punct(rs[j+1]) {
		j++
	}
	if punct(rs[j]) {
		for j < n && punct(rs[j]) {
			j++
		}
		for j < n && (rs[j] == '\r' || rs[j] == '\n' || (slash && rs[j] == '/')) {
			j++
		}
		return j
	}
	// r is a space (every rune is a letter, number, space or punct, and
	// letters were taken by the caller).
	j = i
	last := -1 // the last CR or LF of the run
	for j < n && unicode.IsSpace(rs[j]) {
		if rs[j] == '\r' || rs[j] == '\n' {
			last = j
		}
		j++
	}
	switch {
	case last >= 0: // \s*[\r\n]+
		return last + 1
	case j == n: // \s+(?!\S) at the end of the text
		return j
	case j-1 > i: // \s+(?!\S): all but the space before a non-space
		return j - 1
	default: // \s+
		return j
	}
}

// contraction returns the length of (?i:'s|'t|'re|'ve|'m|'ll|'d) at rs[i],
// or 0. No non-ASCII rune lowercases to one of these letters.
func contraction(rs []rune, i int) int {
	if i+1 >= len(rs) || rs[i] != '\'' {
		return 0
	}
	switch asciiLower(rs[i+1]) {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(rs) && asciiLower(rs[i+2]) == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(rs) && asciiLower(rs[i+2]) == 'l' {
			return 3
		}
	}
	return 0
}

func asciiLower(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// letterRun returns the end of the run of letters from rs[j].
func letterRun(rs []rune, j int) int {
	for j < len(rs) && unicode.IsLetter(rs[j]) {
		j++
	}
	return j
}

// prefix is [^\r\n\p{L}\p{N}].
func prefix(r rune) bool {
	return r != '\r' && r != '\n' && !unicode.IsLetter(r) && !unicode.IsNumber(r)
}

// punct is [^\s\p{L}\p{N}].
func punct(r rune) bool {
	if r < 0x80 {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || unicode.IsSpace(r))
	}
	return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r)
}

// upper is [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}].
func upper(r rune) bool {
	if r < 0x80 {
		return 'A' <= r && r <= 'Z'
	}
	return unicode.IsUpper(r) || unicode.IsTitle(r) || unicode.Is(unicode.Lm, r) || unicode.Is(unicode.Lo, r) || unicode.IsMark(r)
}

// lower is [\p{Ll}\p{Lm}\p{Lo}\p{M}].
func lower(r rune) bool {
	if r < 0x80 {
		return 'a' <= r && r <= 'z'
	}
	return unicode.IsLower(r) || unicode.Is(unicode.Lm, r) || unicode.Is(unicode.Lo, r) || unicode.IsMark(r)
}
