package dynamo

// Conditional writes and reads of configuration items (keys, users,
// providers), shared so that every entity gets the same errors.

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// Conditions for putItem.
const (
	ifAbsent  = "attribute_not_exists(pk)"
	ifPresent = "attribute_exists(pk)"
	ifVersion = "attribute_exists(pk) AND version = :v"
)

// putItem writes item under cond; what names the item in errors. A failed
// condition gives ErrExists (ifAbsent), ErrNotFound (ifPresent, or ifVersion
// on a missing item) or ErrConflict (ifVersion on another version): the
// failed check returns the stored item, so telling them apart costs no read.
func (s *Store) putItem(ctx context.Context, item map[string]ddb.AttributeValue, cond string, version int64, what string) error {
	in := &ddb.PutItemInput{
		TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String(cond),
		ReturnValuesOnConditionCheckFailure: ddb.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if cond == ifVersion {
		in.ExpressionAttributeValues = map[string]ddb.AttributeValue{":v": num(version)}
	}
	_, err := s.db.PutItem(ctx, in)
	var ccf *ddb.ConditionalCheckFailedException
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ccf):
		return fmt.Errorf("put %s: %w", what, err)
	case cond == ifAbsent:
		return fmt.Errorf("%s: %w", what, ErrExists)
	case cond == ifPresent || len(ccf.Item) == 0:
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	default:
		return fmt.Errorf("%s: %w", what, ErrConflict)
	}
}

// getItem reads one item strongly consistently; ErrNotFound if absent.
func (s *Store) getItem(ctx context.Context, pk, sk, what string) (map[string]ddb.AttributeValue, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: key(pk, sk), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", what, err)
	}
	if out.ConsumedCapacity != nil {
		s.addStats(1, aws.ToFloat64(out.ConsumedCapacity.CapacityUnits))
	}
	if out.Item == nil {
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return out.Item, nil
}
