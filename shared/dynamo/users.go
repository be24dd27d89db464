package dynamo

// Users and the organisation's settings.
//
// Item types (pk / sk):
//
//	USER#<userId> / USER       user configuration        (gsi1: USERS / <createdAt>#<userId>)
//	ORG           / SETTINGS   organisation-wide limits  (absent until first set)
//
// Both hold their JSON in "data" and a "version" number bumped by every write,
// as keys do, so updates are optimistic.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/user"
)

const (
	skUser   = "USER"
	gsiUsers = "USERS"
	pkOrg    = "ORG"
	skOrg    = "SETTINGS"
)

func userPK(userID string) string { return "USER#" + userID }

func userItem(u *user.User) (map[string]ddb.AttributeValue, error) {
	b, err := json.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("encode user %s: %w", u.UserID, err)
	}
	item := key(userPK(u.UserID), skUser)
	item[attrGSI1PK] = str(gsiUsers)
	item[attrGSI1SK] = str(sortKey(u.CreatedAt, u.UserID))
	item["version"] = num(u.Version)
	item["data"] = str(string(b))
	return item, nil
}

func decodeUser(item map[string]ddb.AttributeValue) (*user.User, error) {
	var u user.User
	if err := json.Unmarshal([]byte(getS(item, "data")), &u); err != nil {
		return nil, fmt.Errorf("decode user %s: %w", getS(item, attrPK), err)
	}
	u.Version = getN(item, "version")
	return &u, nil
}

// CreateUser stores a new user with version 1; ErrExists if its UserID is taken.
func (s *Store) CreateUser(ctx context.Context, u *user.User) error {
	u.Version = 1
	item, err := userItem(u)
	if err != nil {
		return err
	}
	return s.putItem(ctx, item, ifAbsent, 0, "user "+u.UserID)
}

// UpdateUser writes u if the stored version is still u.Version, and bumps the
// version; ErrConflict if someone else changed it first, ErrNotFound if absent.
// The new version goes to the ledgers of the user's keys in the same
// transaction (keyledger.go, ucfg), so the next reserve of any of them sees
// the change without a transaction of its own. A user with more than
// maxUserLedgers keys has the rest written right after; a key created or
// given to the user moments before (the key listing is an index, eventually
// consistent) may be missed: the proxies' user cache expiring (KeyTTL)
// makes its next reserve seed it from the user item.
func (s *Store) UpdateUser(ctx context.Context, u *user.User) error {
	next := *u
	next.Version++
	item, err := userItem(&next)
	if err != nil {
		return err
	}
	keyIDs, err := s.userKeyIDs(ctx, u.UserID)
	if err != nil {
		return err
	}
	if len(keyIDs) == 0 {
		if err := s.putItem(ctx, item, ifVersion, u.Version, "user "+u.UserID); err != nil {
			return err
		}
		u.Version = next.Version
		return nil
	}
	first := keyIDs[:min(len(keyIDs), maxUserLedgers)]
	items := []ddb.TransactWriteItem{{Put: &ddb.Put{
		TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String(ifVersion),
		ExpressionAttributeValues:           map[string]ddb.AttributeValue{":v": num(u.Version)},
		ReturnValuesOnConditionCheckFailure: ddb.ReturnValuesOnConditionCheckFailureAllOld,
	}}}
	items = append(items, s.userLedgers(first, next.Version)...)
	err = s.transact(ctx, items, "put user "+u.UserID)
	var tc *ddb.TransactionCanceledException
	if errors.As(err, &tc) && len(tc.CancellationReasons) > 0 && aws.ToString(tc.CancellationReasons[0].Code) == "ConditionalCheckFailed" {
		if len(tc.CancellationReasons[0].Item) == 0 {
			return fmt.Errorf("user %s: %w", u.UserID, ErrNotFound)
		}
		return fmt.Errorf("user %s: %w", u.UserID, ErrConflict)
	}
	if err != nil {
		return err
	}
	u.Version = next.Version
	for rest := keyIDs[len(first):]; len(rest) > 0; {
		n := min(len(rest), maxTransactItems)
		if err := s.transact(ctx, s.userLedgers(rest[:n], next.Version), "versions of user "+u.UserID); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

const (
	maxTransactItems = 100
	// maxUserLedgers is how many of a user's keys' ledgers UpdateUser
	// writes in the user's own transaction.
	maxUserLedgers = maxTransactItems - 1
)

// userKeyIDs lists the ids of userID's keys.
func (s *Store) userKeyIDs(ctx context.Context, userID string) ([]string, error) {
	var ids []string
	err := s.queryGSI(ctx, gsiKeys, func(item map[string]ddb.AttributeValue) error {
		k, err := decodeKey(item)
		if err == nil && k.UserID == userID {
			ids = append(ids, k.ID)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("keys of user %s: %w", userID, err)
	}
	return ids, nil
}

// GetUser returns the user userID with a strongly consistent read;
// ErrNotFound if absent.
func (s *Store) GetUser(ctx context.Context, userID string) (*user.User, error) {
	item, err := s.getItem(ctx, userPK(userID), skUser, "user "+userID)
	if err != nil {
		return nil, err
	}
	return decodeUser(item)
}

// ListUsers returns every user, oldest first.
func (s *Store) ListUsers(ctx context.Context) ([]*user.User, error) {
	var list []*user.User
	err := s.queryGSI(ctx, gsiUsers, func(item map[string]ddb.AttributeValue) error {
		u, err := decodeUser(item)
		if err == nil {
			list = append(list, u)
		}
		return err
	})
	return list, err
}

// GetOrg returns the organisation's settings with a strongly consistent read:
// the zero Org (Version 0, no limits) when they were never set.
func (s *Store) GetOrg(ctx context.Context) (*user.Org, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: key(pkOrg, skOrg), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("get organisation settings: %w", err)
	}
	var o user.Org
	if out.Item == nil {
		return &o, nil
	}
	if err := json.Unmarshal([]byte(getS(out.Item, "data")), &o); err != nil {
		return nil, fmt.Errorf("decode organisation settings: %w", err)
	}
	o.Version = getN(out.Item, "version")
	return &o, nil
}

// PutOrg writes o if the stored version is still o.Version (0: if nothing is
// stored yet), and bumps o.Version; ErrConflict if someone else wrote first.
// Then it takes back every allowance of the organisation's lifetime and
// monthly spend (of the month of o.UpdatedAt, or now) that keys hold
// (allowance.go), so that the new limits apply at the next request; an
// error then means the settings are stored but some allowances may remain.
func (s *Store) PutOrg(ctx context.Context, o *user.Org) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode organisation settings: %w", err)
	}
	item := key(pkOrg, skOrg)
	item["version"] = num(o.Version + 1)
	item["data"] = str(string(b))
	in := &ddb.PutItemInput{TableName: aws.String(s.table), Item: item}
	if o.Version == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		in.ConditionExpression = aws.String("version = :v")
		in.ExpressionAttributeValues = map[string]ddb.AttributeValue{":v": num(o.Version)}
	}
	_, err = s.db.PutItem(ctx, in)
	if isConditionFailed(err) {
		return fmt.Errorf("organisation settings: %w", ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("put organisation settings: %w", err)
	}
	o.Version++
	at := time.Now()
	if o.UpdatedAt > 0 {
		at = time.Unix(o.UpdatedAt, 0)
	}
	if err := s.revokeAllowances(ctx, budget.MonthSpend(at)); err != nil {
		return fmt.Errorf("organisation settings stored, but: %w", err)
	}
	return nil
}
