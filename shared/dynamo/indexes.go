package dynamo

// The table's global secondary indexes: declared here as template.yaml
// declares them, and added to an existing local table that lacks one.

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// globalIndexes are the table's global secondary indexes, as template.yaml
// declares them: gsi1 (listings of keys, providers, users, reservations and
// events by user), gsi2 (events by custom id) and gsi3 (key ledgers with
// open reservations, for the stale sweep and the fold: keyledger.go; events
// stored by earlier versions are there by month, unused).
func globalIndexes() []ddb.GlobalSecondaryIndex {
	gsi := func(name, pk, sk string, p *ddb.Projection) ddb.GlobalSecondaryIndex {
		return ddb.GlobalSecondaryIndex{
			IndexName: aws.String(name),
			KeySchema: []ddb.KeySchemaElement{
				{AttributeName: aws.String(pk), KeyType: ddb.KeyTypeHash},
				{AttributeName: aws.String(sk), KeyType: ddb.KeyTypeRange},
			},
			Projection: p,
		}
	}
	all := &ddb.Projection{ProjectionType: ddb.ProjectionTypeAll}
	return []ddb.GlobalSecondaryIndex{
		gsi(indexGSI1, attrGSI1PK, attrGSI1SK, all),
		gsi(indexGSI2, attrGSI2PK, attrGSI2SK, all),
		gsi(indexGSI3, attrGSI3PK, attrGSI3SK, &ddb.Projection{
			ProjectionType: ddb.ProjectionTypeInclude, NonKeyAttributes: []string{attrData},
		}),
	}
}

// attributeDefinitions declares the table's and its indexes' key attributes.
func attributeDefinitions() []ddb.AttributeDefinition {
	var defs []ddb.AttributeDefinition
	for _, name := range []string{attrPK, attrSK, attrGSI1PK, attrGSI1SK, attrGSI2PK, attrGSI2SK, attrGSI3PK, attrGSI3SK} {
		defs = append(defs, ddb.AttributeDefinition{AttributeName: aws.String(name), AttributeType: ddb.ScalarAttributeTypeS})
	}
	return defs
}

// ensureIndexes adds the global secondary indexes an existing table lacks
// (a local table created by an older version), one at a time as DynamoDB
// requires, waiting for each to become active.
func (s *Store) ensureIndexes(ctx context.Context) error {
	for _, want := range globalIndexes() {
		desc, err := s.db.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
		if err != nil {
			return fmt.Errorf("describe table %s: %w", s.table, err)
		}
		if indexStatus(desc.Table, aws.ToString(want.IndexName)) != "" {
			continue
		}
		_, err = s.db.UpdateTable(ctx, &ddb.UpdateTableInput{
			TableName:            aws.String(s.table),
			AttributeDefinitions: attributeDefinitions(),
			GlobalSecondaryIndexUpdates: []ddb.GlobalSecondaryIndexUpdate{{Create: &ddb.CreateGlobalSecondaryIndexAction{
				IndexName: want.IndexName, KeySchema: want.KeySchema, Projection: want.Projection,
			}}},
		})
		if err != nil {
			return fmt.Errorf("add index %s to table %s: %w", aws.ToString(want.IndexName), s.table, err)
		}
		active := func(t *ddb.TableDescription) bool {
			return indexStatus(t, aws.ToString(want.IndexName)) == ddb.IndexStatusActive
		}
		if err := s.waitTable(ctx, active); err != nil {
			return fmt.Errorf("wait for index %s of table %s: %w", aws.ToString(want.IndexName), s.table, err)
		}
	}
	return nil
}

// indexStatus returns the status of index name on table, "" when absent.
func indexStatus(table *ddb.TableDescription, name string) ddb.IndexStatus {
	if table == nil {
		return ""
	}
	for _, g := range table.GlobalSecondaryIndexes {
		if aws.ToString(g.IndexName) == name {
			if g.IndexStatus == "" {
				return ddb.IndexStatusActive // DynamoDB Local may leave it out
			}
			return g.IndexStatus
		}
	}
	return ""
}
