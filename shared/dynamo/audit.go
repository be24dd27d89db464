package dynamo

// The audit trail of admin actions.
//
// Item type (pk / sk):
//
//	AUDIT#<yyyy-mm> / <unix ms, 13 digits>#<id>   one admin action (no TTL)
//
// One partition per calendar month (UTC) keeps a month's entries in time
// order; a listing walks the months of its range newest first. The entry's
// JSON is in "data" and its target ids also in "targets" (a list), which a
// targetId filter matches with contains().

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stipend/stipend/shared/auditlog"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// ErrBadAuditCursor reports an auditlog.Query.Cursor that this store did not
// issue (the caller's mistake: a 400).
var ErrBadAuditCursor = auditlog.ErrBadCursor

// Bounds of an audit listing.
const (
	auditDefaultLimit = 100
	auditMaxLimit     = 1000
	monthLayout       = "2006-01"
)

func auditPK(month string) string { return "AUDIT#" + month }

func auditSK(ms int64, id string) string { return fmt.Sprintf("%013d#%s", ms, id) }

func auditMonth(ms int64) string { return time.UnixMilli(ms).UTC().Format(monthLayout) }

// PutAudit stores e; e.ID and e.CreatedAtMs must be set. ErrExists if an
// entry with the same time and id is already stored.
func (s *Store) PutAudit(ctx context.Context, e *auditlog.Entry) error {
	if e.ID == "" || e.CreatedAtMs <= 0 {
		return errors.New("put audit entry: id and time are required")
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry %s: %w", e.ID, err)
	}
	item := key(auditPK(auditMonth(e.CreatedAtMs)), auditSK(e.CreatedAtMs, e.ID))
	item["data"] = str(string(b))
	if len(e.TargetIDs) > 0 {
		list := make([]ddb.AttributeValue, len(e.TargetIDs))
		for i, id := range e.TargetIDs {
			list[i] = str(id)
		}
		item["targets"] = &ddb.AttributeValueMemberL{Value: list}
	}
	_, err = s.db.PutItem(ctx, &ddb.PutItemInput{
		TableName: aws.String(s.table), Item: item,
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	if isConditionFailed(err) {
		return fmt.Errorf("audit entry %s: %w", e.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("put audit entry %s: %w", e.ID, err)
	}
	return nil
}

// auditCursor is where a listing stopped: the month and sort key of the
// last entry returned.
type auditCursor struct {
	Month string `json:"m"`
	SK    string `json:"sk"`
}

// isAuditSK reports whether sk is an audit entry's sort key: a stamp, '#'
// and up to 64 letters and digits.
func isAuditSK(sk string) bool { return isStampedSK(sk, 64, "") }

func encodeCursor(c auditCursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (auditCursor, error) {
	var c auditCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil || !isMonth(c.Month) || !isAuditSK(c.SK) {
		return auditCursor{}, ErrBadAuditCursor
	}
	return c, nil
}

// ListAudit returns the entries q selects, newest first, one page at a time.
func (s *Store) ListAudit(ctx context.Context, q auditlog.Query) (auditlog.Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = auditDefaultLimit
	}
	limit = min(limit, auditMaxLimit)
	startMs, endMs := q.Start.UnixMilli(), q.End.UnixMilli()
	page := auditlog.Page{Entries: []*auditlog.Entry{}}
	if endMs <= startMs {
		return page, nil
	}
	var from *auditCursor
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return page, err
		}
		from = &c
	}
	first, err := time.Parse(monthLayout, auditMonth(startMs))
	if err != nil {
		return page, fmt.Errorf("audit range: %w", err)
	}
	for m, _ := time.Parse(monthLayout, auditMonth(endMs-1)); !m.Before(first); m = m.AddDate(0, -1, 0) {
		month := m.Format(monthLayout)
		in := &ddb.QueryInput{
			TableName:              aws.String(s.table),
			KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :a AND :b"),
			ExpressionAttributeValues: map[string]ddb.AttributeValue{
				":pk": str(auditPK(month)),
				":a":  str(auditSK(startMs, "")),
				":b":  str(auditSK(endMs-1, "~")),
			},
			ScanIndexForward: aws.Bool(false),
		}
		if from != nil {
			if month > from.Month {
				continue // newer than where the last page stopped
			}
			if month == from.Month {
				in.ExclusiveStartKey = key(auditPK(month), from.SK)
			}
		}
		if q.TargetID != "" {
			in.FilterExpression = aws.String("contains(targets, :t)")
			in.ExpressionAttributeValues[":t"] = str(q.TargetID)
		}
		for {
			in.Limit = aws.Int32(int32(limit - len(page.Entries)))
			out, err := s.db.Query(ctx, in)
			if err != nil {
				return page, fmt.Errorf("query audit entries of %s: %w", month, err)
			}
			for _, item := range out.Items {
				var e auditlog.Entry
				if err := json.Unmarshal([]byte(getS(item, "data")), &e); err != nil {
					return page, fmt.Errorf("decode audit entry %s: %w", getS(item, attrSK), err)
				}
				page.Entries = append(page.Entries, &e)
				if len(page.Entries) == limit {
					page.Cursor = encodeCursor(auditCursor{Month: month, SK: getS(item, attrSK)})
					return page, nil
				}
			}
			if len(out.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	return page, nil
}
