package reporting

import "testing"

func TestPercentile(t *testing.T) {
	seq := func(n int) []int64 {
		s := make([]int64, n)
		for i := range s {
			s[i] = int64(i + 1)
		}
		return s
	}
	tests := []struct {
		sorted []int64
		p      int
		want   int64
	}{
		{nil, 50, 0},
		{[]int64{7}, 50, 7},
		{[]int64{7}, 99, 7},
		{[]int64{1, 2}, 50, 1},
		{[]int64{1, 2, 3}, 50, 2},
		{seq(100), 50, 50},
		{seq(100), 99, 99},
		{seq(200), 99, 198},
		{seq(10), 99, 10},
	}
	for _, tc := range tests {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %d) = %d, want %d", len(tc.sorted), tc.p, got, tc.want)
		}
	}
}
