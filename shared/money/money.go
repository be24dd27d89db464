// Package money represents amounts of US dollars as integer nano-dollars.
//
// Floats never hold money in stipend: prices, costs, limits and counters are
// Nanos, parsed from and formatted to exact decimal strings. One US dollar is
// 1e9 Nanos, so an int64 holds about 9.2 billion dollars.
package money

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Nanos is an amount of US dollars in units of 1e-9 USD.
type Nanos int64

// Common amounts.
const (
	Nano       Nanos = 1
	Micro      Nanos = 1_000
	Cent       Nanos = 10_000_000
	Dollar     Nanos = 1_000_000_000
	decimals         = 9
	maxDollars       = 9_000_000_000 // keeps every parsed amount far from overflow
)

// ErrInvalid reports a string that is not a decimal amount of dollars.
var ErrInvalid = errors.New("not a decimal amount of US dollars")

// Parse reads a decimal string of dollars ("1", "0.25", "1e-3" is rejected)
// exactly. More than nine decimal places are rejected rather than rounded, so
// no amount is silently changed.
func Parse(s string) (Nanos, error) {
	s = strings.TrimSpace(s)
	neg := false
	if strings.HasPrefix(s, "-") {
		neg = true
		s = s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || !digits(whole) || !digits(frac) || len(frac) > decimals {
		return 0, fmt.Errorf("%q: %w", s, ErrInvalid)
	}
	var w int64
	if whole != "" {
		var err error
		w, err = strconv.ParseInt(whole, 10, 64)
		if err != nil || w > maxDollars {
			return 0, fmt.Errorf("%q: %w (too large)", s, ErrInvalid)
		}
	}
	f := int64(0)
	if frac != "" {
		frac += strings.Repeat("0", decimals-len(frac))
		f, _ = strconv.ParseInt(frac, 10, 64)
	}
	n := Nanos(w)*Dollar + Nanos(f)
	if neg {
		n = -n
	}
	return n, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats n as dollars with trailing zeros removed: "0.00015", "2", "-1.5".
func (n Nanos) String() string { return string(n.Append(nil)) }

// Append appends n as String writes it.
func (n Nanos) Append(b []byte) []byte {
	u := uint64(n)
	if n < 0 {
		b = append(b, '-')
		u = -u // two's complement: right for math.MinInt64 too
	}
	b = strconv.AppendUint(b, u/uint64(Dollar), 10)
	frac := u % uint64(Dollar)
	if frac == 0 {
		return b
	}
	var digits [9]byte // frac's nine decimals, zero-padded
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	end := len(digits)
	for digits[end-1] == '0' {
		end--
	}
	b = append(b, '.')
	return append(b, digits[:end]...)
}

// MarshalJSON writes n as a JSON number of dollars, exactly.
func (n Nanos) MarshalJSON() ([]byte, error) { return n.Append(nil), nil }

// UnmarshalJSON reads a JSON number (or numeric string) of dollars exactly.
func (n *Nanos) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" {
		return nil
	}
	// JSON allows exponents; accept them only when they denote an exact value.
	if strings.ContainsAny(s, "eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q: %w", s, ErrInvalid)
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	v, err := Parse(s)
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// Dollars returns n as a float64 for display and reports only; never
// use the result in arithmetic that is stored.
func (n Nanos) Dollars() float64 { return float64(n) / float64(Dollar) }
