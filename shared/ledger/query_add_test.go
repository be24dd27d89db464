package ledger

import (
	"reflect"
	"testing"
)

// TestTotalsAdd sets every field of Totals to a distinct value, so a field
// added to Totals and forgotten in Add fails here.
func TestTotalsAdd(t *testing.T) {
	var d Totals
	v := reflect.ValueOf(&d).Elem()
	for i := range v.NumField() {
		v.Field(i).SetInt(int64(i + 1))
	}
	tot := d
	tot.Add(d)
	w := reflect.ValueOf(tot)
	for i := range w.NumField() {
		if got, want := w.Field(i).Int(), 2*int64(i+1); got != want {
			t.Errorf("%s = %d after Add, want %d", w.Type().Field(i).Name, got, want)
		}
	}
}
