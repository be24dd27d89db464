package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Ping reports whether the table answers: one eventually consistent GetItem
// of a key that never exists (half a read unit, and only the GetItem
// permission every function already has). It fails when DynamoDB cannot be
// reached, the table does not exist, or access is denied.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table),
		Key: map[string]types.AttributeValue{
			attrPK: &types.AttributeValueMemberS{Value: "READYZ"},
			attrSK: &types.AttributeValueMemberS{Value: "READYZ"},
		},
		ProjectionExpression: aws.String(attrPK),
	})
	if err != nil {
		return fmt.Errorf("ping table %s: %w", s.table, err)
	}
	return nil
}
