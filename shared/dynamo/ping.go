package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// Ping reports whether the table answers: one eventually consistent GetItem
// of a key that never exists (half a read unit, and only the GetItem
// permission every function already has). It fails when DynamoDB cannot be
// reached, the table does not exist, or access is denied.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table),
		Key: map[string]ddb.AttributeValue{
			attrPK: &ddb.AttributeValueMemberS{Value: "READYZ"},
			attrSK: &ddb.AttributeValueMemberS{Value: "READYZ"},
		},
		ProjectionExpression: aws.String(attrPK),
	})
	if err != nil {
		return fmt.Errorf("ping table %s: %w", s.table, err)
	}
	return nil
}
