package pricing

import (
	"os"
	"reflect"
	"testing"
)

// TestDefaultIsPricesJSON checks that the compiled-in table
// (default_prices.go) is what Parse reads from prices.json, the file people
// edit: after an edit, go generate ./shared/pricing/ makes it so.
func TestDefaultIsPricesJSON(t *testing.T) {
	b, err := os.ReadFile("prices.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(b)
	if err != nil {
		t.Fatalf("prices.json: %v", err)
	}
	got := defaultTable(t)
	if got.AsOf() != want.AsOf() || got.Source() != want.Source() {
		t.Errorf("date and source %q, %q; prices.json has %q, %q (run go generate ./shared/pricing/)",
			got.AsOf(), got.Source(), want.AsOf(), want.Source())
	}
	if !reflect.DeepEqual(got.names, want.names) {
		t.Errorf("models %v;\nprices.json has %v (run go generate ./shared/pricing/)", got.names, want.names)
	}
	for _, name := range want.names {
		if g, w := got.prices[name], want.prices[name]; g != w {
			t.Errorf("%s: %+v;\nprices.json has %+v (run go generate ./shared/pricing/)", name, g, w)
		}
	}
	if len(got.prices) != len(want.prices) {
		t.Errorf("%d prices, prices.json has %d", len(got.prices), len(want.prices))
	}
}
