// Package jsonenctest fills structs with random values, for the tests that
// hold a hand-written encoder (built on jsonenc) to encoding/json's Marshal:
// with every field set, a field added to the struct and not to its encoder
// fails them.
package jsonenctest

import (
	"math/rand/v2"
	"reflect"
)

// Fill sets each field of the struct ptr points to, and of the structs and
// slices it holds, with probability p (1: all of them), to a random
// non-zero value: a string from a list that includes what encoding/json
// escapes, true, an integer of either sign, or a slice of one to three
// filled elements. special, when not nil, is asked first about every
// value and returns true when it dealt with it (types whose values are
// constrained, such as time.Time or an enumeration). A kind Fill does not
// know panics, naming it: teach Fill and the encoder about it.
func Fill(rng *rand.Rand, p float64, ptr any, special func(reflect.Value) bool) {
	// Plain strings, and ones encoding/json escapes (a quote, <>&, a
	// backslash, U+2028, invalid UTF-8, control bytes).
	strs := [...]string{"a", "KEY#k1", "gpt-4o-mini", `q"<>&\`, "é\u2028\xff", "\n\t\x01"}
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		if special != nil && special(v) {
			return
		}
		if v.Kind() == reflect.Struct {
			for i := range v.NumField() {
				fill(v.Field(i))
			}
			return
		}
		if rng.Float64() >= p {
			return
		}
		switch v.Kind() {
		case reflect.String:
			v.SetString(strs[rng.IntN(len(strs))])
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int, reflect.Int64:
			n := rng.Int64N(1<<40) + 1
			if rng.IntN(4) == 0 {
				n = -n
			}
			v.SetInt(n)
		case reflect.Slice:
			s := reflect.MakeSlice(v.Type(), 1+rng.IntN(3), 3)
			for i := range s.Len() {
				fill(s.Index(i))
			}
			v.Set(s)
		default:
			panic("jsonenctest.Fill: a field of kind " + v.Kind().String() + ": teach Fill and the encoder about it")
		}
	}
	fill(reflect.ValueOf(ptr).Elem())
}
