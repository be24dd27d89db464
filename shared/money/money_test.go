package money

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Nanos
		err  bool
	}{
		{"1", Dollar, false},
		{"0.2", 200_000_000, false},
		{"0.000000001", 1, false},
		{".5", 500_000_000, false},
		{"-1.5", -1_500_000_000, false},
		{"100", 100 * Dollar, false},
		{"0.0000000001", 0, true},
		{"abc", 0, true},
		{"", 0, true},
		{"1.2.3", 0, true},
		{"99999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("Parse(%q) err = %v, want err %v", tt.in, err, tt.err)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) err = %v, want ErrInvalid", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestStringRoundTrip(t *testing.T) {
	for _, n := range []Nanos{0, 1, 150, Dollar, 1_500_000_000, -25, 123456789012} {
		got, err := Parse(n.String())
		if err != nil || got != n {
			t.Errorf("Parse(%q) = %d, %v; want %d", n.String(), got, err, n)
		}
	}
}

func TestJSON(t *testing.T) {
	var v struct{ A, B, C Nanos }
	if err := json.Unmarshal([]byte(`{"A": 0.1, "B": "2.5", "C": 1e-3}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != 100_000_000 || v.B != 2_500_000_000 || v.C != Dollar/1000 {
		t.Fatalf("got %+v", v)
	}
	b, _ := json.Marshal(v)
	if string(b) != `{"A":0.1,"B":2.5,"C":0.001}` {
		t.Fatalf("marshal = %s", b)
	}
}

// TestAppend checks Append (and so String) against a plain formatting of
// the same value with fmt, on random values of every size.
func TestAppend(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	values := []Nanos{0, 1, -1, Dollar, -Dollar, 1500000000, 150000, 123456789, 999999999, 1<<63 - 1, -(1<<63 - 1)}
	for range 5000 {
		v := Nanos(rng.Int64() >> rng.IntN(63))
		if rng.IntN(2) == 0 {
			v = -v
		}
		values = append(values, v)
	}
	for _, v := range values {
		sign, u := "", int64(v)
		if u < 0 {
			sign, u = "-", -u
		}
		want := sign + strconv.FormatInt(u/int64(Dollar), 10)
		if frac := u % int64(Dollar); frac != 0 {
			want += "." + strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
		}
		if got := string(v.Append([]byte("x"))); got != "x"+want {
			t.Fatalf("Append(%d) = %s, want x%s", int64(v), got, want)
		}
		if got := v.String(); got != want {
			t.Fatalf("String(%d) = %s, want %s", int64(v), got, want)
		}
	}
	if got := Nanos(-1 << 63).String(); got != "-9223372036.854775808" {
		t.Errorf("the smallest Nanos is %s", got)
	}
}
