// Package ddb is the part of DynamoDB's API that stipend uses: the shapes
// of its requests and answers, named and typed as the AWS SDK for Go v2
// names them (GetItemInput, AttributeValueMemberS, ...), and a Client that
// sends them over DynamoDB's JSON protocol (awsJson1_0) through
// shared/awsjson, which signs, retries and checks checksums as the SDK does.
//
// It exists so that no function links the SDK's DynamoDB packages: their
// initialisation (the service's schemas and endpoint tables) alone took
// about 4.5 ms of every cold start, a third of a hello-world function's
// whole start. Only the fields stipend sends or reads are declared; the
// tests check every body against the SDK's own serialisation and every
// answer against its decoding.
package ddb

// AttributeValue is one attribute's value: exactly one of the
// AttributeValueMember* types, always by pointer.
type AttributeValue interface{ isAttributeValue() }

// The AttributeValue kinds, as the SDK's types package names them.
type (
	AttributeValueMemberS    struct{ Value string }
	AttributeValueMemberN    struct{ Value string } // a number in decimal
	AttributeValueMemberB    struct{ Value []byte }
	AttributeValueMemberBOOL struct{ Value bool }
	AttributeValueMemberNULL struct{ Value bool }
	AttributeValueMemberM    struct{ Value map[string]AttributeValue }
	AttributeValueMemberL    struct{ Value []AttributeValue }
	AttributeValueMemberSS   struct{ Value []string }
	AttributeValueMemberNS   struct{ Value []string }
	AttributeValueMemberBS   struct{ Value [][]byte }
)

func (*AttributeValueMemberS) isAttributeValue()    {}
func (*AttributeValueMemberN) isAttributeValue()    {}
func (*AttributeValueMemberB) isAttributeValue()    {}
func (*AttributeValueMemberBOOL) isAttributeValue() {}
func (*AttributeValueMemberNULL) isAttributeValue() {}
func (*AttributeValueMemberM) isAttributeValue()    {}
func (*AttributeValueMemberL) isAttributeValue()    {}
func (*AttributeValueMemberSS) isAttributeValue()   {}
func (*AttributeValueMemberNS) isAttributeValue()   {}
func (*AttributeValueMemberBS) isAttributeValue()   {}

// Enumerations, as strings; "" leaves the parameter out.
type (
	ReturnConsumedCapacity              string
	ReturnValue                         string
	ReturnValuesOnConditionCheckFailure string
	Select                              string
	BillingMode                         string
	KeyType                             string
	ScalarAttributeType                 string
	ProjectionType                      string
	IndexStatus                         string
	TableStatus                         string
)

// The enumerations' values stipend uses.
const (
	ReturnConsumedCapacityTotal   ReturnConsumedCapacity = "TOTAL"
	ReturnConsumedCapacityIndexes ReturnConsumedCapacity = "INDEXES"
	ReturnConsumedCapacityNone    ReturnConsumedCapacity = "NONE"

	ReturnValueNone       ReturnValue = "NONE"
	ReturnValueAllOld     ReturnValue = "ALL_OLD"
	ReturnValueUpdatedOld ReturnValue = "UPDATED_OLD"
	ReturnValueAllNew     ReturnValue = "ALL_NEW"
	ReturnValueUpdatedNew ReturnValue = "UPDATED_NEW"

	ReturnValuesOnConditionCheckFailureAllOld ReturnValuesOnConditionCheckFailure = "ALL_OLD"
	ReturnValuesOnConditionCheckFailureNone   ReturnValuesOnConditionCheckFailure = "NONE"

	SelectCount Select = "COUNT"

	BillingModePayPerRequest BillingMode = "PAY_PER_REQUEST"

	KeyTypeHash  KeyType = "HASH"
	KeyTypeRange KeyType = "RANGE"

	ScalarAttributeTypeS ScalarAttributeType = "S"
	ScalarAttributeTypeN ScalarAttributeType = "N"
	ScalarAttributeTypeB ScalarAttributeType = "B"

	ProjectionTypeAll      ProjectionType = "ALL"
	ProjectionTypeKeysOnly ProjectionType = "KEYS_ONLY"
	ProjectionTypeInclude  ProjectionType = "INCLUDE"

	IndexStatusCreating IndexStatus = "CREATING"
	IndexStatusUpdating IndexStatus = "UPDATING"
	IndexStatusDeleting IndexStatus = "DELETING"
	IndexStatusActive   IndexStatus = "ACTIVE"

	TableStatusCreating TableStatus = "CREATING"
	TableStatusActive   TableStatus = "ACTIVE"
)

// Capacity is the capacity one table or index consumed.
type Capacity struct {
	CapacityUnits      *float64 `json:",omitempty"`
	ReadCapacityUnits  *float64 `json:",omitempty"`
	WriteCapacityUnits *float64 `json:",omitempty"`
}

// ConsumedCapacity is what one call consumed on one table, when asked
// for with ReturnConsumedCapacity.
type ConsumedCapacity struct {
	TableName              *string             `json:",omitempty"`
	CapacityUnits          *float64            `json:",omitempty"`
	ReadCapacityUnits      *float64            `json:",omitempty"`
	WriteCapacityUnits     *float64            `json:",omitempty"`
	Table                  *Capacity           `json:",omitempty"`
	GlobalSecondaryIndexes map[string]Capacity `json:",omitempty"`
	LocalSecondaryIndexes  map[string]Capacity `json:",omitempty"`
}

// GetItemInput reads one item.
type GetItemInput struct {
	TableName                *string
	Key                      map[string]AttributeValue
	ConsistentRead           *bool
	ProjectionExpression     *string
	ExpressionAttributeNames map[string]string
	ReturnConsumedCapacity   ReturnConsumedCapacity
}

// GetItemOutput: Item is nil when there is no such item.
type GetItemOutput struct {
	Item             map[string]AttributeValue
	ConsumedCapacity *ConsumedCapacity
}

// PutItemInput writes one whole item.
type PutItemInput struct {
	TableName                           *string
	Item                                map[string]AttributeValue
	ConditionExpression                 *string
	ExpressionAttributeNames            map[string]string
	ExpressionAttributeValues           map[string]AttributeValue
	ReturnValues                        ReturnValue
	ReturnConsumedCapacity              ReturnConsumedCapacity
	ReturnValuesOnConditionCheckFailure ReturnValuesOnConditionCheckFailure
}

// PutItemOutput: Attributes as ReturnValues asked.
type PutItemOutput struct {
	Attributes       map[string]AttributeValue
	ConsumedCapacity *ConsumedCapacity
}

// UpdateItemInput changes one item by an update expression.
type UpdateItemInput struct {
	TableName                           *string
	Key                                 map[string]AttributeValue
	UpdateExpression                    *string
	ConditionExpression                 *string
	ExpressionAttributeNames            map[string]string
	ExpressionAttributeValues           map[string]AttributeValue
	ReturnValues                        ReturnValue
	ReturnConsumedCapacity              ReturnConsumedCapacity
	ReturnValuesOnConditionCheckFailure ReturnValuesOnConditionCheckFailure
}

// UpdateItemOutput: Attributes as ReturnValues asked.
type UpdateItemOutput struct {
	Attributes       map[string]AttributeValue
	ConsumedCapacity *ConsumedCapacity
}

// DeleteItemInput deletes one item.
type DeleteItemInput struct {
	TableName                           *string
	Key                                 map[string]AttributeValue
	ConditionExpression                 *string
	ExpressionAttributeNames            map[string]string
	ExpressionAttributeValues           map[string]AttributeValue
	ReturnValues                        ReturnValue
	ReturnConsumedCapacity              ReturnConsumedCapacity
	ReturnValuesOnConditionCheckFailure ReturnValuesOnConditionCheckFailure
}

// DeleteItemOutput: Attributes as ReturnValues asked.
type DeleteItemOutput struct {
	Attributes       map[string]AttributeValue
	ConsumedCapacity *ConsumedCapacity
}

// KeysAndAttributes is what BatchGetItem reads from one table.
type KeysAndAttributes struct {
	Keys                     []map[string]AttributeValue
	ConsistentRead           *bool
	ProjectionExpression     *string
	ExpressionAttributeNames map[string]string
}

// BatchGetItemInput reads up to 100 items, by table.
type BatchGetItemInput struct {
	RequestItems           map[string]KeysAndAttributes
	ReturnConsumedCapacity ReturnConsumedCapacity
}

// BatchGetItemOutput: the items found, by table, and the keys left for
// another call.
type BatchGetItemOutput struct {
	Responses        map[string][]map[string]AttributeValue
	UnprocessedKeys  map[string]KeysAndAttributes
	ConsumedCapacity []ConsumedCapacity
}

// PutRequest and DeleteRequest are BatchWriteItem's two kinds of write.
type (
	PutRequest    struct{ Item map[string]AttributeValue }
	DeleteRequest struct{ Key map[string]AttributeValue }
)

// WriteRequest is one of BatchWriteItem's writes: exactly one of its
// fields is set.
type WriteRequest struct {
	PutRequest    *PutRequest
	DeleteRequest *DeleteRequest
}

// BatchWriteItemInput writes up to 25 items, by table.
type BatchWriteItemInput struct {
	RequestItems           map[string][]WriteRequest
	ReturnConsumedCapacity ReturnConsumedCapacity
}

// BatchWriteItemOutput: the writes left for another call.
type BatchWriteItemOutput struct {
	UnprocessedItems map[string][]WriteRequest
	ConsumedCapacity []ConsumedCapacity
}

// ConditionCheck, Put, Update and Delete are a transaction's actions.
type (
	ConditionCheck struct {
		TableName                           *string
		Key                                 map[string]AttributeValue
		ConditionExpression                 *string
		ExpressionAttributeNames            map[string]string
		ExpressionAttributeValues           map[string]AttributeValue
		ReturnValuesOnConditionCheckFailure ReturnValuesOnConditionCheckFailure
	}
	Put struct {
		TableName                           *string
		Item                                map[string]AttributeValue
		ConditionExpression                 *string
		ExpressionAttributeNames            map[string]string
		ExpressionAttributeValues           map[string]AttributeValue
		ReturnValuesOnConditionCheckFailure ReturnValuesOnConditionCheckFailure
	}
	Update struct {
		TableName                           *string
		Key                                 map[string]AttributeValue
		UpdateExpression                    *string
		ConditionExpression                 *string
		ExpressionAttributeNames            map[string]string
		ExpressionAttributeValues           map[string]AttributeValue
		ReturnValuesOnConditionCheckFailure ReturnValuesOnConditionCheckFailure
	}
	Delete struct {
		TableName                           *string
		Key                                 map[string]AttributeValue
		ConditionExpression                 *string
		ExpressionAttributeNames            map[string]string
		ExpressionAttributeValues           map[string]AttributeValue
		ReturnValuesOnConditionCheckFailure ReturnValuesOnConditionCheckFailure
	}
)

// TransactWriteItem is one action of a transaction: exactly one of its
// fields is set.
type TransactWriteItem struct {
	ConditionCheck *ConditionCheck
	Put            *Put
	Update         *Update
	Delete         *Delete
}

// TransactWriteItemsInput applies up to 100 actions, all or none.
// ClientRequestToken makes a retry of the same transaction idempotent.
type TransactWriteItemsInput struct {
	TransactItems          []TransactWriteItem
	ClientRequestToken     *string
	ReturnConsumedCapacity ReturnConsumedCapacity
}

// TransactWriteItemsOutput: the capacity, by table.
type TransactWriteItemsOutput struct {
	ConsumedCapacity []ConsumedCapacity
}

// QueryInput reads the items of one partition, of the table or an index.
type QueryInput struct {
	TableName                 *string
	IndexName                 *string
	KeyConditionExpression    *string
	FilterExpression          *string
	ProjectionExpression      *string
	ExpressionAttributeNames  map[string]string
	ExpressionAttributeValues map[string]AttributeValue
	ExclusiveStartKey         map[string]AttributeValue
	Limit                     *int32
	ScanIndexForward          *bool
	ConsistentRead            *bool
	Select                    Select
	ReturnConsumedCapacity    ReturnConsumedCapacity
}

// QueryOutput is one page; LastEvaluatedKey is nil on the last.
type QueryOutput struct {
	Items            []map[string]AttributeValue
	Count            int32
	ScannedCount     int32
	LastEvaluatedKey map[string]AttributeValue
	ConsumedCapacity *ConsumedCapacity
}

// AttributeDefinition, KeySchemaElement, Projection and
// GlobalSecondaryIndex describe a table's keys and indexes.
type (
	AttributeDefinition struct {
		AttributeName *string             `json:",omitempty"`
		AttributeType ScalarAttributeType `json:",omitempty"`
	}
	KeySchemaElement struct {
		AttributeName *string `json:",omitempty"`
		KeyType       KeyType `json:",omitempty"`
	}
	Projection struct {
		ProjectionType   ProjectionType `json:",omitempty"`
		NonKeyAttributes []string       `json:",omitempty"`
	}
	GlobalSecondaryIndex struct {
		IndexName  *string            `json:",omitempty"`
		KeySchema  []KeySchemaElement `json:",omitempty"`
		Projection *Projection        `json:",omitempty"`
	}
)

// CreateTableInput creates a table on demand (stipend's tables are
// PAY_PER_REQUEST).
type CreateTableInput struct {
	TableName              *string                `json:",omitempty"`
	AttributeDefinitions   []AttributeDefinition  `json:",omitempty"`
	KeySchema              []KeySchemaElement     `json:",omitempty"`
	GlobalSecondaryIndexes []GlobalSecondaryIndex `json:",omitempty"`
	BillingMode            BillingMode            `json:",omitempty"`
}

// GlobalSecondaryIndexDescription is what DescribeTable says of an index.
type GlobalSecondaryIndexDescription struct {
	IndexName   *string     `json:",omitempty"`
	IndexStatus IndexStatus `json:",omitempty"`
}

// TableDescription is what stipend reads of a table's description.
type TableDescription struct {
	TableName              *string                           `json:",omitempty"`
	TableStatus            TableStatus                       `json:",omitempty"`
	GlobalSecondaryIndexes []GlobalSecondaryIndexDescription `json:",omitempty"`
}

// CreateTableOutput describes the new table.
type CreateTableOutput struct {
	TableDescription *TableDescription `json:",omitempty"`
}

// DescribeTableInput names the table to describe.
type DescribeTableInput struct {
	TableName *string `json:",omitempty"`
}

// DescribeTableOutput describes it.
type DescribeTableOutput struct {
	Table *TableDescription `json:",omitempty"`
}

// CreateGlobalSecondaryIndexAction adds an index to a table.
type CreateGlobalSecondaryIndexAction struct {
	IndexName  *string            `json:",omitempty"`
	KeySchema  []KeySchemaElement `json:",omitempty"`
	Projection *Projection        `json:",omitempty"`
}

// GlobalSecondaryIndexUpdate is one change to a table's indexes.
type GlobalSecondaryIndexUpdate struct {
	Create *CreateGlobalSecondaryIndexAction `json:",omitempty"`
}

// UpdateTableInput changes a table; stipend only adds indexes.
type UpdateTableInput struct {
	TableName                   *string                      `json:",omitempty"`
	AttributeDefinitions        []AttributeDefinition        `json:",omitempty"`
	GlobalSecondaryIndexUpdates []GlobalSecondaryIndexUpdate `json:",omitempty"`
}

// UpdateTableOutput describes the table.
type UpdateTableOutput struct {
	TableDescription *TableDescription `json:",omitempty"`
}

// TimeToLiveSpecification names the attribute whose time expires an item.
type TimeToLiveSpecification struct {
	AttributeName *string `json:",omitempty"`
	Enabled       *bool   `json:",omitempty"`
}

// UpdateTimeToLiveInput turns TTL on or off.
type UpdateTimeToLiveInput struct {
	TableName               *string                  `json:",omitempty"`
	TimeToLiveSpecification *TimeToLiveSpecification `json:",omitempty"`
}

// UpdateTimeToLiveOutput says what was set.
type UpdateTimeToLiveOutput struct {
	TimeToLiveSpecification *TimeToLiveSpecification `json:",omitempty"`
}
