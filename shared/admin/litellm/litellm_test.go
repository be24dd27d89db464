package litellm

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLiteDuration(t *testing.T) {
	tests := []struct {
		in   string
		ttl  string
		d    time.Duration
		fail bool
	}{
		{"30s", "30s", 30 * time.Second, false},
		{"20m", "20m", 20 * time.Minute, false},
		{"30min", "30m", 30 * time.Minute, false},
		{"30h", "30h", 30 * time.Hour, false},
		{"30d", "30d", 30 * 24 * time.Hour, false},
		{" 2 Hours ", "2h", 2 * time.Hour, false},
		{"1week", "7d", 7 * 24 * time.Hour, false},
		{"45secs", "45s", 45 * time.Second, false},
		{"0s", "", 0, true},
		{"1", "", 0, true},
		{"m", "", 0, true},
		{"1.5h", "", 0, true},
		{"-1h", "", 0, true},
		{"1mo", "", 0, true},
	}
	for _, tc := range tests {
		ttl, d, err := liteDuration(tc.in)
		if (err != nil) != tc.fail || ttl != tc.ttl || d != tc.d {
			t.Errorf("liteDuration(%q) = %q, %v, %v", tc.in, ttl, d, err)
		}
	}
}

// TestSplitDurationMatchesPattern checks splitDuration finds what the
// pattern it replaced finds, on edge cases and random strings over the
// characters the pattern tells apart.
func TestSplitDurationMatchesPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^\s*(\d{1,9})\s*([A-Za-z]+)\s*$`)
	cases := []string{"", "5", "m", "5m", " 5 m ", "\t5\nmin\r\f", "\v5m", "123456789s", "1234567890s", "5m5",
		"5 m x", "5mm", "-5m", "5.0m", "０5m", "5é", "\xff5m", "  ", "007days"}
	const alphabet = "0123456789mMdZ \t\n\v\f\r.-é\xff"
	rng := rand.New(rand.NewPCG(3, 4))
	for range 30000 {
		var b strings.Builder
		for range rng.IntN(14) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		digits, unit, ok := splitDuration(s)
		m := pattern.FindStringSubmatch(s)
		if ok != (m != nil) || ok && (digits != m[1] || unit != m[2]) {
			t.Errorf("splitDuration(%q) = %q, %q, %v; the pattern finds %q", s, digits, unit, ok, m)
		}
	}
}
