package dynamo

// Moderation strikes: each flagged request of a key with moderation on is
// one strike, counted atomically on the key's STRIKES item (pk KEY#<id>) with
// the flagged event's id. When the count reaches the key's limit, the key is
// suspended by a versioned write of its configuration, which also makes
// every reservation planned on the old version stale, so the suspension
// applies at the next request everywhere. The strikes live apart from the
// key's configuration item so that an admin's write of the key never loses
// a strike counted meanwhile.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

const skStrikes = "STRIKES"

// suspendAttempts bounds the read-modify-write of a suspension that keeps
// losing races with other writers of the key.
const suspendAttempts = 8

// Strike counts one flagged request (its event eventID) against key keyID
// and returns the key's strikes since they were last reset, this one
// included. Concurrent strikes are each counted once.
func (s *Store) Strike(ctx context.Context, keyID, eventID string) (apikey.Strikes, error) {
	out, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:        aws.String(s.table),
		Key:              key(keyPK(keyID), skStrikes),
		UpdateExpression: aws.String("ADD strikes :one SET eventIds = list_append(if_not_exists(eventIds, :none), :ev)"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{
			":one":  num(1),
			":none": &ddb.AttributeValueMemberL{Value: []ddb.AttributeValue{}},
			":ev":   &ddb.AttributeValueMemberL{Value: []ddb.AttributeValue{str(eventID)}},
		},
		ReturnValues: ddb.ReturnValueAllNew,
	})
	if err != nil {
		return apikey.Strikes{}, fmt.Errorf("count a strike on key %s: %w", keyID, err)
	}
	return strikesOf(out.Attributes), nil
}

// Strikes returns key keyID's strikes since they were last reset.
func (s *Store) Strikes(ctx context.Context, keyID string) (apikey.Strikes, error) {
	item, err := s.getItem(ctx, keyPK(keyID), skStrikes, "strikes of key "+keyID)
	if errors.Is(err, ErrNotFound) {
		return apikey.Strikes{}, nil
	}
	if err != nil {
		return apikey.Strikes{}, err
	}
	return strikesOf(item), nil
}

// ResetStrikes forgets key keyID's strikes.
func (s *Store) ResetStrikes(ctx context.Context, keyID string) error {
	_, err := s.db.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName: aws.String(s.table), Key: key(keyPK(keyID), skStrikes),
	})
	if err != nil {
		return fmt.Errorf("reset the strikes of key %s: %w", keyID, err)
	}
	return nil
}

// Suspend marks key keyID suspended at at, for reason, naming the flagged
// events that led to it, unless it is suspended already. It reports
// whether this call suspended it: of any number of concurrent calls, one.
func (s *Store) Suspend(ctx context.Context, keyID string, at time.Time, reason string, eventIDs []string) (bool, error) {
	for range suspendAttempts {
		k, err := s.GetKey(ctx, keyID)
		if err != nil {
			return false, err
		}
		if k.Suspended {
			return false, nil
		}
		k.Suspended, k.SuspendedAt, k.SuspendedReason = true, at.Unix(), reason
		k.SuspendedEventIDs = eventIDs
		k.UpdatedAt = at.Unix()
		err = s.UpdateKey(ctx, k)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, ErrConflict) {
			return false, err
		}
	}
	return false, fmt.Errorf("suspend key %s: %w", keyID, ErrConflict)
}

func strikesOf(item map[string]ddb.AttributeValue) apikey.Strikes {
	st := apikey.Strikes{Count: getN(item, "strikes")}
	if l, ok := item["eventIds"].(*ddb.AttributeValueMemberL); ok {
		for _, v := range l.Value {
			if s, ok := v.(*ddb.AttributeValueMemberS); ok {
				st.EventIDs = append(st.EventIDs, s.Value)
			}
		}
	}
	return st
}
