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
	sets, adds, deletes, removes, conds []string
	names                               map[string]string // placeholder -> attribute
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
	p := "#n" + strconv.Itoa(len(e.named))
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
	p := ":v" + strconv.Itoa(len(e.values))
	e.values[p] = v
	return p
}

func (e *expression) set(clause string)  { e.sets = append(e.sets, clause) }
func (e *expression) remove(attr string) { e.removes = append(e.removes, e.name(attr)) }
func (e *expression) cond(clause string) { e.conds = append(e.conds, clause) }
func (e *expression) add(attr string, n int64) {
	e.adds = append(e.adds, e.name(attr)+" "+e.value(num(n)))
}

// addTo adds the strings vs to the string set attr (ADD).
func (e *expression) addTo(attr string, vs ...string) {
	e.adds = append(e.adds, e.name(attr)+" "+e.value(&ddb.AttributeValueMemberSS{Value: vs}))
}

// deleteFrom takes the strings vs out of the string set attr (DELETE); the
// attribute goes when it is left empty.
func (e *expression) deleteFrom(attr string, vs ...string) {
	e.deletes = append(e.deletes, e.name(attr)+" "+e.value(&ddb.AttributeValueMemberSS{Value: vs}))
}

// update is the update expression.
func (e *expression) update() string {
	var parts []string
	if len(e.sets) > 0 {
		parts = append(parts, "SET "+strings.Join(e.sets, ", "))
	}
	if len(e.adds) > 0 {
		parts = append(parts, "ADD "+strings.Join(e.adds, ", "))
	}
	if len(e.deletes) > 0 {
		parts = append(parts, "DELETE "+strings.Join(e.deletes, ", "))
	}
	if len(e.removes) > 0 {
		parts = append(parts, "REMOVE "+strings.Join(e.removes, ", "))
	}
	return strings.Join(parts, " ")
}

// condition is the condition expression, nil when there is none.
func (e *expression) condition() *string {
	if len(e.conds) == 0 {
		return nil
	}
	c := "(" + strings.Join(e.conds, ") AND (") + ")"
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
