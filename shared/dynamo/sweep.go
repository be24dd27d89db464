package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// StaleReservations returns reservations whose deadline is before now: their
// invocation died before it could settle them. It reads (strongly
// consistently) the ledgers the sweep's index names, tidying each
// (tidyLedger), and the reservation items of stipend versions that kept one
// item per reservation.
func (s *Store) StaleReservations(ctx context.Context, now time.Time) ([]*budget.Reservation, error) {
	before := str(fmt.Sprintf("%013d", now.UnixMilli()))
	var list []*budget.Reservation
	err := s.queryAll(ctx, &ddb.QueryInput{
		TableName: aws.String(s.table), IndexName: aws.String(indexGSI3),
		KeyConditionExpression:    aws.String("gsi3pk = :pk AND gsi3sk < :now"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{":pk": str(gsiLedgers), ":now": before},
	}, "query ledgers with stale reservations", func(found map[string]ddb.AttributeValue) error {
		keyID, ok := strings.CutPrefix(getS(found, attrPK), keyPK(""))
		if !ok {
			return nil
		}
		item, err := s.getItem(ctx, keyPK(keyID), skUsage, "ledger of key "+keyID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		stale, err := s.tidyLedger(ctx, keyID, item, now)
		list = append(list, stale...)
		return err
	})
	if err != nil {
		return nil, err
	}
	err = s.queryAll(ctx, &ddb.QueryInput{
		TableName: aws.String(s.table), IndexName: aws.String(indexGSI1),
		KeyConditionExpression:    aws.String("gsi1pk = :pk AND gsi1sk < :now"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{":pk": str(gsiReservation), ":now": before},
	}, "query stale reservations", func(item map[string]ddb.AttributeValue) error {
		r, err := decodeReservation(getS(item, "data"))
		if err != nil {
			return fmt.Errorf("decode reservation %s: %w", getS(item, attrPK), err)
		}
		list = append(list, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// SettleStale settles r at its reserved worst case — the true usage is
// unknown and the provider may have billed it — with its event marked
// incomplete (unless its invocation stored the true event before it died:
// then the ledger is settled with that). ErrSettled when someone settled it
// first.
func (s *Store) SettleStale(ctx context.Context, r *budget.Reservation) error {
	ev := r.Event
	ev.Usage, ev.Cost = r.Usage, r.Cost
	ev.Incomplete, ev.Estimated = true, true
	ev.ErrorCode = "reservation_expired"
	legacy, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: key("RES#"+r.ID, skReservation), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("settle stale %s: %w", r.ID, err)
	}
	if legacy.Item != nil {
		return s.settleLegacy(ctx, r, &ev)
	}
	return s.Settle(ctx, r, &ev)
}
