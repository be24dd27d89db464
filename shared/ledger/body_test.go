package ledger

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClipBody(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		limit   int
		want    string
		wantCut bool
	}{
		{"fits", []byte(`{"a":1}`), 10, `{"a":1}`, false},
		{"exactly the limit", []byte("abcd"), 4, "abcd", false},
		{"cut", []byte("abcdef"), 4, "abcd", true},
		{"cut before a split character", []byte("ab€cd"), 4, "ab", true}, // € is 3 bytes
		{"character ending at the limit", []byte("ab€cd"), 5, "ab€", true},
		{"invalid UTF-8 becomes U+FFFD", []byte{'a', 0xff, 'b'}, 10, "a\uFFFDb", false},
		{"empty", nil, 10, "", false},
		{"default limit", []byte(strings.Repeat("x", DefaultBodyBytes+1)), 0, strings.Repeat("x", DefaultBodyBytes), true},
		{"limit lowered to MaxBodyBytes", []byte(strings.Repeat("x", MaxBodyBytes+5)), 1 << 30, strings.Repeat("x", MaxBodyBytes), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := ClipBody(tt.in, tt.limit)
			if got != tt.want || cut != tt.wantCut {
				t.Errorf("ClipBody = %q (%d bytes), %v; want %q (%d bytes), %v", abbrev(got), len(got), cut, abbrev(tt.want), len(tt.want), tt.wantCut)
			}
			if !utf8.ValidString(got) {
				t.Errorf("ClipBody returned invalid UTF-8")
			}
		})
	}
}

func abbrev(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}
