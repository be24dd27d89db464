package dynamo

// expression builds an update (or condition) expression with generated
// placeholders, so attribute names that are not identifiers (counter names
// such as "SPEND#mo#202612", reservation entries "R#<id>") can be used.

import (
	"strconv"
	"strings"

	"github.com/stipend/stipend/shared/dynamo/ddb"
)

type expression struct {
	sets, removes, conds []string
	adds, deletes        []operand
	names                map[string]string // placeholder -> attribute
	// named are the attributes named and their placeholders, found by a
	// scan, which for the dozen or so an expression names costs less than
	// a second map.
	named  []namedAttr
	values map[string]ddb.AttributeValue
	// updated, when set, asks an UpdateItem for the attributes it wrote
	// and is given them once it succeeded (not in a transaction, which
	// returns none).
	updated func(map[string]ddb.AttributeValue)
}

// placeholders is the room an expression's maps start with: a settle of
// a key's ledger names about a dozen attributes and values, so its maps
// are made once instead of growing (and rehashing) on the way.
const placeholders = 16

func newExpression() *expression {
	return &expression{
		names:  make(map[string]string, placeholders),
		named:  make([]namedAttr, 0, placeholders),
		values: make(map[string]ddb.AttributeValue, placeholders),
	}
}

// namedAttr is an attribute an expression names, and its placeholder.
type namedAttr struct{ attr, placeholder string }

// name returns the placeholder of attribute a.
func (e *expression) name(a string) string {
	if p, ok := e.placeholder(a); ok {
		return p
	}
	p := placeholder(namePlaceholders, "#n", len(e.named))
	e.names[p] = a
	e.named = append(e.named, namedAttr{a, p})
	return p
}

// placeholder returns attribute a's placeholder, if e names it.
func (e *expression) placeholder(a string) (string, bool) {
	for _, n := range e.named {
		if n.attr == a {
			return n.placeholder, true
		}
	}
	return "", false
}

// value returns a new placeholder for v.
func (e *expression) value(v ddb.AttributeValue) string {
	p := placeholder(valuePlaceholders, ":v", len(e.values))
	e.values[p] = v
	return p
}

func (e *expression) set(clause string)  { e.sets = append(e.sets, clause) }
func (e *expression) remove(attr string) { e.removes = append(e.removes, e.name(attr)) }
func (e *expression) cond(clause string) { e.conds = append(e.conds, clause) }
func (e *expression) add(attr string, n int64) {
	e.adds = append(e.adds, operand{e.name(attr), e.value(num(n))})
}

// operand is an ADD's or a DELETE's attribute and value placeholders, kept
// apart until update joins them (a string each would be an allocation each).
type operand struct{ name, value string }

// addTo adds the strings vs to the string set attr (ADD).
func (e *expression) addTo(attr string, vs ...string) {
	e.adds = append(e.adds, operand{e.name(attr), e.value(&ddb.AttributeValueMemberSS{Value: vs})})
}

// deleteFrom takes the strings vs out of the string set attr (DELETE); the
// attribute goes when it is left empty.
func (e *expression) deleteFrom(attr string, vs ...string) {
	e.deletes = append(e.deletes, operand{e.name(attr), e.value(&ddb.AttributeValueMemberSS{Value: vs})})
}

// update is the update expression: "SET a, b ADD c d DELETE e f REMOVE g",
// each kind present only when e has clauses of it.
func (e *expression) update() string {
	var b strings.Builder
	n := len(" SET  ADD  DELETE  REMOVE ")
	for _, c := range e.sets {
		n += len(c) + 2
	}
	for _, c := range e.removes {
		n += len(c) + 2
	}
	for _, o := range e.adds {
		n += len(o.name) + len(o.value) + 3
	}
	for _, o := range e.deletes {
		n += len(o.name) + len(o.value) + 3
	}
	b.Grow(n)
	// clause writes keyword and n items, comma-separated, each by item;
	// nothing when n is 0.
	clause := func(keyword string, n int, item func(i int)) {
		if n == 0 {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(keyword)
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			item(i)
		}
	}
	writeOperand := func(o operand) {
		b.WriteString(o.name)
		b.WriteByte(' ')
		b.WriteString(o.value)
	}
	clause("SET ", len(e.sets), func(i int) { b.WriteString(e.sets[i]) })
	clause("ADD ", len(e.adds), func(i int) { writeOperand(e.adds[i]) })
	clause("DELETE ", len(e.deletes), func(i int) { writeOperand(e.deletes[i]) })
	clause("REMOVE ", len(e.removes), func(i int) { b.WriteString(e.removes[i]) })
	return b.String()
}

// condition is the condition expression, nil when there is none: each
// clause in parentheses, joined by AND.
func (e *expression) condition() *string {
	if len(e.conds) == 0 {
		return nil
	}
	n := 0
	for _, c := range e.conds {
		n += len(c) + len("() AND ")
	}
	var b strings.Builder
	b.Grow(n)
	for i, c := range e.conds {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteByte('(')
		b.WriteString(c)
		b.WriteByte(')')
	}
	c := b.String()
	return &c
}

// valuesOrNil is nil when no value is used (DynamoDB refuses an empty map).
func (e *expression) valuesOrNil() map[string]ddb.AttributeValue {
	if len(e.values) == 0 {
		return nil
	}
	return e.values
}

func (e *expression) namesOrNil() map[string]string {
	if len(e.names) == 0 {
		return nil
	}
	return e.names
}

// namePlaceholders and valuePlaceholders are the first 64 placeholders of
// each kind back to back ("#n0#n1…#n63"): placeholder takes one out of
// them without building a string (an allocation for each of the two dozen
// placeholders of a request's writes).
const (
	namePlaceholders  = "#n0#n1#n2#n3#n4#n5#n6#n7#n8#n9#n10#n11#n12#n13#n14#n15#n16#n17#n18#n19#n20#n21#n22#n23#n24#n25#n26#n27#n28#n29#n30#n31#n32#n33#n34#n35#n36#n37#n38#n39#n40#n41#n42#n43#n44#n45#n46#n47#n48#n49#n50#n51#n52#n53#n54#n55#n56#n57#n58#n59#n60#n61#n62#n63"
	valuePlaceholders = ":v0:v1:v2:v3:v4:v5:v6:v7:v8:v9:v10:v11:v12:v13:v14:v15:v16:v17:v18:v19:v20:v21:v22:v23:v24:v25:v26:v27:v28:v29:v30:v31:v32:v33:v34:v35:v36:v37:v38:v39:v40:v41:v42:v43:v44:v45:v46:v47:v48:v49:v50:v51:v52:v53:v54:v55:v56:v57:v58:v59:v60:v61:v62:v63"
)

// placeholder is prefix followed by i in decimal, taken from table (which
// holds prefix0 to prefix63) when i is under 64.
func placeholder(table, prefix string, i int) string {
	if i < 0 || i >= 64 {
		return prefix + strconv.Itoa(i)
	}
	at, n := 3*i, 3 // 0 to 9: prefix and one digit
	if i >= 10 {
		at, n = 30+4*(i-10), 4
	}
	return table[at : at+n]
}
