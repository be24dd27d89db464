package dynamo

// Monthly statements: STMT#<yyyy-mm> items beside an owner's counters
// (pk KEY#<id> or USER#<userId>), written by the scheduled monthly close.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
)

// MonthStatement builds owner's statement for the month that contains t from
// its monthly counter (zero figures when the owner spent nothing). The
// statement's Owner is the owner's stored name ("KEY#<id>", "USER#<userId>").
func (s *Store) MonthStatement(ctx context.Context, owner budget.Owner, t time.Time) (ledger.Statement, error) {
	tot, err := s.CounterTotals(ctx, owner, budget.MonthSpend(t))
	if err != nil {
		return ledger.Statement{}, err
	}
	return ledger.Statement{
		Owner: ownerPK(owner), Month: t.UTC().Format("2006-01"),
		Cost: tot.Cost, Requests: tot.Requests, Successes: tot.Successes,
		PromptTokens: tot.PromptTokens, CompletionTokens: tot.CompletionTokens,
	}, nil
}

// PutStatement stores st, replacing an earlier statement of the same owner
// and month: closing a month twice from the same figures writes the same item.
func (s *Store) PutStatement(ctx context.Context, st ledger.Statement) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode statement %s %s: %w", st.Owner, st.Month, err)
	}
	item := key(st.Owner, "STMT#"+st.Month)
	item["data"] = str(string(b))
	if _, err := s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
		return fmt.Errorf("put statement %s %s: %w", st.Owner, st.Month, err)
	}
	return nil
}

// Statement returns owner's statement for month ("2026-11"); ErrNotFound
// when that month was not closed.
func (s *Store) Statement(ctx context.Context, owner, month string) (ledger.Statement, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(s.table), Key: key(owner, "STMT#"+month), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return ledger.Statement{}, fmt.Errorf("get statement %s %s: %w", owner, month, err)
	}
	if out.Item == nil {
		return ledger.Statement{}, fmt.Errorf("statement %s %s: %w", owner, month, ErrNotFound)
	}
	var st ledger.Statement
	if err := json.Unmarshal([]byte(getS(out.Item, "data")), &st); err != nil {
		return ledger.Statement{}, fmt.Errorf("decode statement %s %s: %w", owner, month, err)
	}
	return st, nil
}

// Statements returns owner's closed months, oldest first.
func (s *Store) Statements(ctx context.Context, owner string) ([]ledger.Statement, error) {
	p := ddb.NewQueryPaginator(s.db, &ddb.QueryInput{
		TableName:              aws.String(s.table),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{
			":pk": str(owner), ":p": str("STMT#"),
		},
	})
	list := []ledger.Statement{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("query statements of %s: %w", owner, err)
		}
		for _, item := range page.Items {
			var st ledger.Statement
			if err := json.Unmarshal([]byte(getS(item, "data")), &st); err != nil {
				return nil, fmt.Errorf("decode statement %s %s: %w", owner, getS(item, attrSK), err)
			}
			list = append(list, st)
		}
	}
	return list, nil
}
