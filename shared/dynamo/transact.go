package dynamo

// Write transactions: retried while they only collide with concurrent
// ones, and the errors no retry can cure.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// transact runs a write transaction, retrying cancellations caused only by
// conflicts with concurrent transactions on the same items.
func (s *Store) transact(ctx context.Context, items []ddb.TransactWriteItem, what string) error {
	in := &ddb.TransactWriteItemsInput{TransactItems: items}
	backoff := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		out, err := s.db.TransactWriteItems(ctx, in)
		s.account(1, out)
		if err == nil {
			return nil
		}
		var tc *ddb.TransactionCanceledException
		if !errors.As(err, &tc) || !onlyConflicts(tc) || attempt >= 30 {
			if permanent(err) {
				return fmt.Errorf("%s: %w: %w", what, budget.ErrRejected, err)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		sleep := backoff/2 + rand.N(backoff)
		backoff = min(backoff*2, 200*time.Millisecond)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(sleep):
		}
	}
}

// permanent reports an error no retry can cure: DynamoDB refused the
// request itself (malformed, an item too large), as opposed to a timeout, a
// throttle, a server error or a conflict. Conditional check failures are
// the callers' to interpret and are not permanent here.
func permanent(err error) bool {
	var tc *ddb.TransactionCanceledException
	if errors.As(err, &tc) {
		for _, r := range tc.CancellationReasons {
			switch aws.ToString(r.Code) {
			case "ValidationError", "ItemCollectionSizeLimitExceeded":
				return true
			}
		}
		return false
	}
	var ae interface {
		ErrorCode() string
		ClientFault() bool
	}
	if !errors.As(err, &ae) || !ae.ClientFault() {
		return false
	}
	switch ae.ErrorCode() {
	case "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
		"TransactionInProgressException", "LimitExceededException", "ConditionalCheckFailedException":
		return false
	}
	return true
}

func onlyConflicts(tc *ddb.TransactionCanceledException) bool {
	conflict := false
	for _, r := range tc.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "TransactionConflict":
			conflict = true
		case "None", "":
		default:
			return false
		}
	}
	return conflict
}
