package dynamo

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/budget"
)

// TestEntryJSON holds ledgerEntry.appendJSON to encoding/json's Marshal, on
// entries with every field set (a field added to ledgerEntry and not to
// appendJSON fails here), with none, and with random subsets, since the
// settle's conditions read the stored entry (fundedTag).
func TestEntryJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	entries := []ledgerEntry{{}, randomEntry(rng, 1)}
	for range 500 {
		entries = append(entries, randomEntry(rng, 0.5))
	}
	for _, en := range entries {
		want, err := json.Marshal(en)
		if err != nil {
			t.Fatal(err)
		}
		got, err := en.appendJSON([]byte("x"))
		if err != nil || string(got) != "x"+string(want) {
			t.Fatalf("appendJSON (%v):\n%s\nMarshal:\nx%s", err, got, want)
		}
	}
}

// randomEntry is a ledgerEntry whose fields (nested ones too) are each
// set, with probability p, to a random non-zero value; slices get one to
// three elements.
func randomEntry(rng *rand.Rand, p float64) ledgerEntry {
	strs := []string{"KEY#k1", "gpt-4o-mini", `q"<>&\`, "é\u2028\xff", "\n\t\x01"}
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				if rng.Float64() < p {
					v.Set(reflect.ValueOf(time.UnixMilli(rng.Int64N(1 << 42)).UTC()))
				}
				return
			}
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
			if v.Type() == reflect.TypeFor[budget.Kind]() {
				v.SetString(string(budget.Spend))
				return
			}
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
			panic("randomEntry: a field of kind " + v.Kind().String() + ": teach randomEntry and appendJSON about it")
		}
	}
	var en ledgerEntry
	fill(reflect.ValueOf(&en).Elem())
	return en
}
