package dynamo

// Roster markers: which key a class roster (POST /api/v1/secret-keys/bulk)
// gave each user.
//
// Item type (pk / sk):
//
//	USER#<userId> / ROSTERKEY   the user's roster key: keyId, updatedAt (no gsi1)
//
// The marker is what makes a roster exact under concurrency: a roster key is
// created in one transaction with its marker (both attribute_not_exists), and
// replaced (rotate, reissue after a revoke) in one transaction conditioned on
// the marker still naming the previous key. Two identical rosters sent at the
// same time therefore never give a student two keys.
//
// The key item is the one CreateKey writes (keyItem). Keys created one at a
// time (CreateKey, POST /api/v1/secret-keys) write no marker, even when they
// name a user: only roster keys are tracked here.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

const (
	skRosterKey = "ROSTERKEY"
	attrKeyID   = "keyId"
	// batchGetMax is BatchGetItem's limit of keys per call.
	batchGetMax = 100
	// batchGetAttempts bounds the retries of keys DynamoDB left unprocessed.
	batchGetAttempts = 8
)

func rosterMarker(userID, keyID string, updatedAt int64) map[string]ddb.AttributeValue {
	item := key(userPK(userID), skRosterKey)
	item[attrKeyID] = str(keyID)
	item["updatedAt"] = num(updatedAt)
	return item
}

// RosterKeys returns the roster marker of each of userIDs that has one, with
// the key it names, keyed by userId. It reads in strongly consistent batches:
// one BatchGetItem per 100 users for the markers and one per 100 keys.
func (s *Store) RosterKeys(ctx context.Context, userIDs []string) (map[string]apikey.RosterKey, error) {
	seen := make(map[string]bool, len(userIDs))
	keys := make([]map[string]ddb.AttributeValue, 0, len(userIDs))
	for _, id := range userIDs {
		if !seen[id] {
			seen[id] = true
			keys = append(keys, key(userPK(id), skRosterKey))
		}
	}
	out := make(map[string]apikey.RosterKey, len(keys))
	byKey := map[string]string{} // keyId -> userId
	err := s.batchGet(ctx, keys, "read roster markers", func(item map[string]ddb.AttributeValue) error {
		userID := getS(item, attrPK)[len("USER#"):]
		keyID := getS(item, attrKeyID)
		out[userID] = apikey.RosterKey{UserID: userID, KeyID: keyID}
		byKey[keyID] = userID
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys = keys[:0]
	for keyID := range byKey {
		keys = append(keys, key(keyPK(keyID), skKey))
	}
	err = s.batchGet(ctx, keys, "read roster keys", func(item map[string]ddb.AttributeValue) error {
		k, err := decodeKey(item)
		if err != nil {
			return err
		}
		rk := out[byKey[k.ID]]
		rk.Key = k
		out[rk.UserID] = rk
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// batchGet reads keys with strongly consistent BatchGetItem calls of at most
// 100 keys, retrying what DynamoDB leaves unprocessed, and calls each for
// every item found (in no particular order).
func (s *Store) batchGet(ctx context.Context, keys []map[string]ddb.AttributeValue, what string, each func(map[string]ddb.AttributeValue) error) error {
	for len(keys) > 0 {
		n := min(len(keys), batchGetMax)
		req := map[string]ddb.KeysAndAttributes{s.table: {Keys: keys[:n], ConsistentRead: aws.Bool(true)}}
		keys = keys[n:]
		backoff := 10 * time.Millisecond
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if attempt >= batchGetAttempts {
					return fmt.Errorf("%s: %d keys still unprocessed after %d attempts", what, len(req[s.table].Keys), attempt)
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s: %w", what, ctx.Err())
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, time.Second)
			}
			res, err := s.db.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			for _, item := range res.Responses[s.table] {
				if err := each(item); err != nil {
					return err
				}
			}
			req = res.UnprocessedKeys
		}
	}
	return nil
}

// CreateRosterKey stores k, a new key naming its user in k.UserID, as that
// user's roster key: the key item (as CreateKey writes it, version 1) and
// the marker naming it, in one transaction. ErrExists if the user already
// has a roster marker or the key id is taken; nothing is written then.
func (s *Store) CreateRosterKey(ctx context.Context, k *apikey.Key) error {
	if k.UserID == "" {
		return fmt.Errorf("roster key %s: no userId", k.ID)
	}
	next := *k
	next.Version = 1
	item, err := keyItem(&next)
	if err != nil {
		return err
	}
	err = s.transact(ctx, []ddb.TransactWriteItem{
		{Put: &ddb.Put{TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Put: &ddb.Put{
			TableName: aws.String(s.table), Item: rosterMarker(k.UserID, k.ID, k.CreatedAt),
			ConditionExpression: aws.String("attribute_not_exists(pk)"),
		}},
		s.ledgerVersion(k.ID, 1),
	}, "create roster key "+k.ID+" of user "+k.UserID)
	if failed := conditionsFailed(err); len(failed) > 0 {
		return fmt.Errorf("roster key of user %s: %w", k.UserID, ErrExists)
	}
	if err != nil {
		return err
	}
	k.Version = 1
	return nil
}

// ReplaceRosterKey makes k (a new key naming its user in k.UserID) that
// user's roster key in place of prevKeyID, in one transaction: it stores k,
// moves the marker if it still names prevKeyID, and, when revoke is not nil
// (the previous key as read, with Revoked set), writes revoke if its version
// is still revoke.Version, bumping it. ErrConflict if the marker or the
// previous key changed first; nothing is written then.
func (s *Store) ReplaceRosterKey(ctx context.Context, prevKeyID string, revoke, k *apikey.Key) error {
	if k.UserID == "" {
		return fmt.Errorf("roster key %s: no userId", k.ID)
	}
	if revoke != nil && revoke.ID != prevKeyID {
		return fmt.Errorf("roster key of user %s: revoking %s but replacing %s", k.UserID, revoke.ID, prevKeyID)
	}
	next := *k
	next.Version = 1
	item, err := keyItem(&next)
	if err != nil {
		return err
	}
	items := []ddb.TransactWriteItem{
		{Put: &ddb.Put{TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Put: &ddb.Put{
			TableName: aws.String(s.table), Item: rosterMarker(k.UserID, k.ID, k.CreatedAt),
			ConditionExpression:       aws.String("keyId = :prev"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":prev": str(prevKeyID)},
		}},
	}
	var revoked apikey.Key
	if revoke != nil {
		revoked = *revoke
		revoked.Version = revoke.Version + 1
		old, err := keyItem(&revoked)
		if err != nil {
			return err
		}
		items = append(items, ddb.TransactWriteItem{Put: &ddb.Put{
			TableName: aws.String(s.table), Item: old,
			ConditionExpression:       aws.String("attribute_exists(pk) AND version = :v"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{":v": num(revoke.Version)},
		}}, s.ledgerVersion(revoke.ID, revoked.Version))
	}
	items = append(items, s.ledgerVersion(k.ID, 1))
	err = s.transact(ctx, items, "replace roster key "+prevKeyID+" of user "+k.UserID)
	if failed := conditionsFailed(err); len(failed) > 0 {
		if failed[0] == 0 {
			return fmt.Errorf("key %s: %w", k.ID, ErrExists)
		}
		return fmt.Errorf("roster key %s of user %s: %w", prevKeyID, k.UserID, ErrConflict)
	}
	if err != nil {
		return err
	}
	k.Version = 1
	if revoke != nil {
		revoke.Version = revoked.Version
	}
	return nil
}

// conditionsFailed returns the indexes of the items whose condition failed
// when err is a cancelled transaction, in order.
func conditionsFailed(err error) []int {
	var tc *ddb.TransactionCanceledException
	if !errors.As(err, &tc) {
		return nil
	}
	var out []int
	for i, r := range tc.CancellationReasons {
		if aws.ToString(r.Code) == "ConditionalCheckFailed" {
			out = append(out, i)
		}
	}
	return out
}
