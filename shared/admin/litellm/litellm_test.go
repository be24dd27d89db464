package litellm

import (
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
