package dynamo

// Every key's events, merged: the listing of all events reads the
// partition of each key (keys are never deleted, so the keys' listing names
// every partition that can hold events) and merges them newest first.
//
// Each key's partition is read lazily, in pages that grow: the first page
// of each is small (about the listing's page divided among the keys), and a
// key's next page is read only when the merge has taken all it read of that
// key and still needs its next event. So a page of n events reads about n
// events plus a few per key, in one query per key and one more per page a
// busy key needs, not n from every key.

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// mergeParallel bounds the queries a merged listing runs at once.
const mergeParallel = 8

// keyIDs returns the id of every key, from the keys' listing (gsi1).
func (s *Store) keyIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.queryGSI(ctx, gsiKeys, func(item map[string]ddb.AttributeValue) error {
		if id, ok := strings.CutPrefix(getS(item, attrPK), keyPK("")); ok {
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// partitionReader reads one key's events in p's range, newest first, page
// by page, without bodies.
type partitionReader struct {
	in   *ddb.QueryInput // the next page's query; nil once the partition is read to its end
	size int32           // the next page's size
	buf  []map[string]ddb.AttributeValue
}

// fill reads the next page into r.buf, which must be empty.
func (r *partitionReader) fill(ctx context.Context, db *ddb.Client) error {
	r.in.Limit = aws.Int32(r.size)
	page, err := db.Query(ctx, r.in)
	if err != nil {
		return fmt.Errorf("query events of %s: %w", getS(r.in.ExpressionAttributeValues, ":pk"), err)
	}
	r.buf = page.Items
	if len(page.LastEvaluatedKey) == 0 {
		r.in = nil
	} else {
		r.in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	r.size = min(2*r.size, MaxEventLimit+1)
	return nil
}

// head is the newest event r holds, reading a page when it holds none and
// more may follow; nil when r is read to its end.
func (r *partitionReader) head(ctx context.Context, db *ddb.Client) (map[string]ddb.AttributeValue, error) {
	for len(r.buf) == 0 && r.in != nil {
		if err := r.fill(ctx, db); err != nil {
			return nil, err
		}
	}
	if len(r.buf) == 0 {
		return nil, nil
	}
	return r.buf[0], nil
}

// mergedEvents returns up to want events of every key in p's range after
// the cursor (nil: from the newest), newest first, without their bodies.
func (s *Store) mergedEvents(ctx context.Context, p *eventPlan, after *cursor, want int) ([]map[string]ddb.AttributeValue, error) {
	ids, err := s.keyIDs(ctx)
	if err != nil {
		return nil, err
	}
	first := int32(min(want, max(4, 2*want/max(len(ids), 1))))
	readers := make([]*partitionReader, len(ids))
	for i, id := range ids {
		in := s.keyEventsQuery(id, p.startMs, p.endMs)
		in.ScanIndexForward = aws.Bool(false)
		if after != nil {
			// Event ids are unique, so the cursor's sort key is a position
			// in every key's partition.
			in.ExclusiveStartKey = key(eventPK(id), after.SK)
		}
		readers[i] = &partitionReader{in: in, size: first}
	}
	// Every reader's first page, mergeParallel at a time.
	err = forEach(ctx, len(readers), mergeParallel, func(ctx context.Context, i int) error {
		return readers[i].fill(ctx, s.db)
	})
	if err != nil {
		return nil, err
	}
	var out []map[string]ddb.AttributeValue
	for len(out) < want {
		var newest *partitionReader
		var newestSK string
		for _, r := range readers {
			item, err := r.head(ctx, s.db)
			if err != nil {
				return nil, err
			}
			if item != nil && (newest == nil || getS(item, attrSK) > newestSK) {
				newest, newestSK = r, getS(item, attrSK)
			}
		}
		if newest == nil {
			break
		}
		out = append(out, newest.buf[0])
		newest.buf = newest.buf[1:]
	}
	return out, nil
}
