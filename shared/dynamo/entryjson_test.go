package dynamo

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/jsonenc/jsonenctest"
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
	var en ledgerEntry
	jsonenctest.Fill(rng, p, &en, func(v reflect.Value) bool {
		switch v.Type() {
		case reflect.TypeFor[time.Time]():
			if rng.Float64() < p {
				v.Set(reflect.ValueOf(time.UnixMilli(rng.Int64N(1 << 42)).UTC()))
			}
			return true
		case reflect.TypeFor[budget.Kind]():
			if rng.Float64() < p {
				v.SetString(string(budget.Spend))
			}
			return true
		}
		return false
	})
	return en
}
