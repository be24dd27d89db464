package dynamo

// Cursor checks, written out rather than as regular expressions: compiling
// `{1,128}` and `{1,64}` repetitions at package initialisation took about a
// thousand allocations each and a few milliseconds of every function's cold
// start (GODEBUG=inittrace=1).

// isStampedSK reports whether sk is a 13-digit millisecond stamp, '#' and an
// id of 1 to maxID bytes, each an ASCII letter or digit or one of punct.
func isStampedSK(sk string, maxID int, punct string) bool {
	const stamp = 13
	if len(sk) < stamp+2 || len(sk) > stamp+1+maxID || sk[stamp] != '#' {
		return false
	}
	for i := range stamp {
		if !isDigit(sk[i]) {
			return false
		}
	}
	for i := stamp + 1; i < len(sk); i++ {
		if c := sk[i]; !isDigit(c) && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') && !isOneOf(c, punct) {
			return false
		}
	}
	return true
}

// isMonth reports whether s is a month as YYYY-MM (01 to 12).
func isMonth(s string) bool {
	if len(s) != 7 || s[4] != '-' {
		return false
	}
	for _, i := range []int{0, 1, 2, 3, 5, 6} {
		if !isDigit(s[i]) {
			return false
		}
	}
	mm := int(s[5]-'0')*10 + int(s[6]-'0')
	return 1 <= mm && mm <= 12
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isOneOf(c byte, set string) bool {
	for i := range len(set) {
		if set[i] == c {
			return true
		}
	}
	return false
}
