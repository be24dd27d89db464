package dynamo

// Reservation items of stipend versions before the key's ledger (pk
// RES#<id>, sk RES; gsi1 RES / <deadline ms>#<id>, the JSON in "data"),
// whose counters were one item each. Only the stale sweep still meets them:
// one left by an invocation that died while the new version was deployed.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

const (
	skReservation  = "RES"
	gsiReservation = "RES"
)

// settleLegacy settles r, kept as its own item, with ev, in the one
// transaction of those versions: the reservation's delete (conditional on
// it being open, not a tombstone, so r ends once), each counter's move, the
// event and its aggregates (the event is not marked for the fold, fold.go).
// ErrSettled when r had already ended.
func (s *Store) settleLegacy(ctx context.Context, r *budget.Reservation, ev *ledger.Event) error {
	items := []ddb.TransactWriteItem{{Delete: &ddb.Delete{
		TableName: aws.String(s.table), Key: key("RES#"+r.ID, skReservation),
		ConditionExpression: aws.String("attribute_exists(" + attrGSI1PK + ")"),
	}}}
	items = append(items, counterMoves(s.table, r.Charges, ev, chargeKey)...)
	evItem, err := eventItem(ev, s.retention)
	if err != nil {
		return err
	}
	items = append(items, ddb.TransactWriteItem{Put: &ddb.Put{
		TableName: aws.String(s.table), Item: evItem, ConditionExpression: aws.String("attribute_not_exists(pk)"),
	}})
	sums := newAggSums()
	sums.add(ev)
	items = append(items, s.aggregateUpdates(ev.KeyID, sums)...)
	err = s.transact(ctx, items, "settle stale "+r.ID)
	if failed := conditionsFailed(err); len(failed) > 0 && failed[0] == 0 {
		return fmt.Errorf("settle stale %s: %w", r.ID, budget.ErrSettled)
	}
	return err
}

func encodeReservation(r *budget.Reservation) ([]byte, error) {
	st := storedReservation{ID: r.ID, KeyID: r.KeyID, Cost: r.Cost, Usage: r.Usage, Deadline: r.Deadline, Event: r.Event}
	for _, c := range r.Charges {
		if c.Deferred {
			pk, sk := counterKey(c.Owner, c.Counter)
			st.Deferred = append(st.Deferred, pk+" "+sk)
		} else {
			st.Charges = append(st.Charges, storeCharge(c))
		}
	}
	return json.Marshal(st)
}

func decodeReservation(data string) (*budget.Reservation, error) {
	var st storedReservation
	if err := json.Unmarshal([]byte(data), &st); err != nil {
		return nil, err
	}
	r := &budget.Reservation{ID: st.ID, KeyID: st.KeyID, Cost: st.Cost, Usage: st.Usage, Deadline: st.Deadline, Event: st.Event}
	for _, sc := range st.Charges {
		c, err := loadCharge(sc)
		if err != nil {
			return nil, err
		}
		r.Charges = append(r.Charges, c)
	}
	for _, d := range st.Deferred {
		owner, name, ok := strings.Cut(d, " ")
		if !ok {
			return nil, fmt.Errorf("deferred charge %q", d)
		}
		c, err := loadCharge(storedCharge{Owner: owner, Name: name, Kind: budget.Spend, Amount: int64(r.Cost), Deferred: true})
		if err != nil {
			return nil, err
		}
		r.Charges = append(r.Charges, c)
	}
	return r, nil
}

func reservationItem(r *budget.Reservation) (map[string]ddb.AttributeValue, error) {
	b, err := encodeReservation(r)
	if err != nil {
		return nil, fmt.Errorf("encode reservation %s: %w", r.ID, err)
	}
	item := key("RES#"+r.ID, skReservation)
	item[attrGSI1PK] = str(gsiReservation)
	item[attrGSI1SK] = str(fmt.Sprintf("%013d#%s", r.Deadline.UnixMilli(), r.ID))
	item["data"] = str(string(b))
	return item, nil
}
