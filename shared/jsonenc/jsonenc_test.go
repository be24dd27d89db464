package jsonenc

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestString compares String with encoding/json's Marshal on hand-picked
// and random strings.
func TestString(t *testing.T) {
	cases := []string{
		"", "plain", `quote " and backslash \`, "<script>&</script>", "\x00\x01\b\f\n\r\t\x1f\x7f",
		"é ü 中文 🙂", "\u2028 and \u2029", "bad \xff byte", "cut \xe2\x82", "\xed\xa0\x80 surrogate",
		strings.Repeat("a", 100) + "\n",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", " ", `"`, `\`, "<", ">", "&", "\n", "\x00", "\x1b", "é", "中", "🙂", "\u2028", "\xff", "\xe2\x82", "\x80"}
	for range 2000 {
		var s strings.Builder
		for range rng.IntN(20) {
			s.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, s.String())
	}
	for _, s := range cases {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := String(nil, s); string(got) != string(want) {
			t.Fatalf("String(%q) = %s, Marshal %s", s, got, want)
		}
	}
}

// TestObject checks an object's commas and members against Marshal.
func TestObject(t *testing.T) {
	type shape struct {
		A string `json:"a"`
		B int64  `json:"b"`
		C bool   `json:"c"`
	}
	want, _ := json.Marshal(shape{A: "x<", B: -7, C: true})
	o := Open([]byte("prefix"))
	o.String("a", "x<")
	o.Int("b", -7)
	o.Bool("c", true)
	if got := o.Close(); string(got) != "prefix"+string(want) {
		t.Errorf("object %s, want prefix%s", got, want)
	}
	empty := Open(nil)
	if got := empty.Close(); string(got) != "{}" {
		t.Errorf("empty object %s", got)
	}
}

// TestArray checks arrays against Marshal: empty, one element, several.
func TestArray(t *testing.T) {
	for _, xs := range [][]string{{}, {"a"}, {"a", "<b>", ""}} {
		want, _ := json.Marshal(xs)
		if got := Array(nil, xs, String); string(got) != string(want) {
			t.Errorf("Array(%q) = %s, Marshal %s", xs, got, want)
		}
	}
}
