package dynamo

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestSortKeyChecks holds the written-out cursor checks to the regular
// expressions they replace, on a table of edge cases and on random strings
// over the alphabet that matters.
func TestSortKeyChecks(t *testing.T) {
	checks := []struct {
		name string
		re   *regexp.Regexp
		fn   func(string) bool
	}{
		{"event", regexp.MustCompile(`^[0-9]{13}#[A-Za-z0-9_.\-]{1,128}$`), isEventSK},
		{"audit", regexp.MustCompile(`^\d{13}#[A-Za-z0-9]{1,64}$`), isAuditSK},
		{"month", regexp.MustCompile(`^\d{4}-(0[1-9]|1[0-2])$`), isMonth},
	}
	stamp := "1764892800000"
	cases := []string{
		"", "#", stamp, stamp + "#", stamp + "#a", stamp + "#A-b_c.9", stamp + "#" + strings.Repeat("x", 64),
		stamp + "#" + strings.Repeat("x", 65), stamp + "#" + strings.Repeat("x", 128), stamp + "#" + strings.Repeat("x", 129),
		stamp[1:] + "#a", stamp + "0#a", stamp + "#a#", stamp + "#a\n", stamp + "#é", "176489280000x#a", stamp + "#a b",
		"2026-01", "2026-12", "2026-00", "2026-13", "2026-1", "2026-012", "20261-1", "2026/01", "２026-01", "2026-09\n",
	}
	alphabet := []byte("0123456789#-_.aZ \n")
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(20))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(2) == 0 {
			b = append([]byte(stamp+"#"), b...)
		}
		cases = append(cases, string(b))
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range cases {
				if got, want := c.fn(s), c.re.MatchString(s); got != want {
					t.Errorf("%q: %v, want %v", s, got, want)
				}
			}
		})
	}
}
