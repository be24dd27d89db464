package dynamo

import (
	"strconv"
	"strings"
	"testing"
)

// TestPlaceholder: the placeholders taken from the tables are the ones
// built from their numbers, under 64 and past it.
func TestPlaceholder(t *testing.T) {
	for i := 0; i < 70; i++ {
		for _, k := range []struct{ table, prefix string }{{namePlaceholders, "#n"}, {valuePlaceholders, ":v"}} {
			if got, want := placeholder(k.table, k.prefix, i), k.prefix+strconv.Itoa(i); got != want {
				t.Fatalf("placeholder %d = %q, want %q", i, got, want)
			}
		}
	}
	e := newExpression()
	for i := 0; i < 3; i++ {
		e.add("attr"+strconv.Itoa(i), int64(i))
	}
	if got := e.update(); got != "ADD #n0 :v0, #n1 :v1, #n2 :v2" {
		t.Fatalf("update = %q", got)
	}
}

// TestExpressionStrings: update and condition write what joining their
// clauses writes, for every mix of zero to two clauses of each kind.
func TestExpressionStrings(t *testing.T) {
	join := func(keyword string, cs []string) []string {
		if len(cs) == 0 {
			return nil
		}
		return []string{keyword + strings.Join(cs, ", ")}
	}
	for mix := 0; mix < 3*3*3*3*3; mix++ {
		counts := [5]int{mix % 3, mix / 3 % 3, mix / 9 % 3, mix / 27 % 3, mix / 81 % 3}
		e := newExpression()
		var sets, adds, deletes, removes, conds []string
		for i := 0; i < counts[0]; i++ {
			c := e.name("s"+strconv.Itoa(i)) + " = " + e.value(num(int64(i)))
			e.set(c)
			sets = append(sets, c)
		}
		for i := 0; i < counts[1]; i++ {
			e.add("a"+strconv.Itoa(i), int64(i))
			adds = append(adds, e.named[len(e.named)-1].placeholder+" "+placeholder(valuePlaceholders, ":v", len(e.values)-1))
		}
		for i := 0; i < counts[2]; i++ {
			e.deleteFrom("d"+strconv.Itoa(i), "x")
			deletes = append(deletes, e.named[len(e.named)-1].placeholder+" "+placeholder(valuePlaceholders, ":v", len(e.values)-1))
		}
		for i := 0; i < counts[3]; i++ {
			e.remove("r" + strconv.Itoa(i))
			removes = append(removes, e.named[len(e.named)-1].placeholder)
		}
		for i := 0; i < counts[4]; i++ {
			c := "attribute_exists(" + e.name("c"+strconv.Itoa(i)) + ")"
			e.cond(c)
			conds = append(conds, c)
		}
		var parts []string
		parts = append(parts, join("SET ", sets)...)
		parts = append(parts, join("ADD ", adds)...)
		parts = append(parts, join("DELETE ", deletes)...)
		parts = append(parts, join("REMOVE ", removes)...)
		if got, want := e.update(), strings.Join(parts, " "); got != want {
			t.Fatalf("counts %v: update = %q, want %q", counts, got, want)
		}
		got := e.condition()
		if len(conds) == 0 {
			if got != nil {
				t.Fatalf("counts %v: condition = %q, want none", counts, *got)
			}
			continue
		}
		if want := "(" + strings.Join(conds, ") AND (") + ")"; got == nil || *got != want {
			t.Fatalf("counts %v: condition = %v, want %q", counts, got, want)
		}
	}
}
