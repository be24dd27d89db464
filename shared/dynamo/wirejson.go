package dynamo

// DynamoDB's JSON protocol (awsJson1_0) for the operations wire sends
// itself: requests are appended field by field from the SDK's input
// structs; responses and errors are decoded into the SDK's output and
// error types, so the rest of the package cannot tell which client
// answered.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/stipend/stipend/shared/awsjson"
)

// jsonBuf appends a JSON object field by field.
type jsonBuf struct {
	b     []byte
	first bool // no field written yet in the innermost object or array
}

func (j *jsonBuf) open(c byte) {
	j.b = append(j.b, c)
	j.first = true
}

func (j *jsonBuf) close(c byte) {
	j.b = append(j.b, c)
	j.first = false
}

// sep writes the comma before every element but the first.
func (j *jsonBuf) sep() {
	if !j.first {
		j.b = append(j.b, ',')
	}
	j.first = false
}

// key writes the separator and a member's name.
func (j *jsonBuf) key(name string) {
	j.sep()
	j.str(name)
	j.b = append(j.b, ':')
	j.first = true // the value follows without a comma
}

// str appends s as a JSON string, escaped as encoding/json does (invalid
// UTF-8 becomes U+FFFD), without escaping HTML characters.
func (j *jsonBuf) str(s string) {
	const hex = "0123456789abcdef"
	j.b = append(j.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			j.b = append(j.b, s[start:i]...)
			switch c {
			case '"', '\\':
				j.b = append(j.b, '\\', c)
			case '\n':
				j.b = append(j.b, '\\', 'n')
			case '\r':
				j.b = append(j.b, '\\', 'r')
			case '\t':
				j.b = append(j.b, '\\', 't')
			default:
				j.b = append(j.b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			j.b = append(j.b, s[start:i]...)
			j.b = append(j.b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	j.b = append(j.b, s[start:]...)
	j.b = append(j.b, '"')
	j.first = false
}

func (j *jsonBuf) strField(name string, v *string) {
	if v != nil {
		j.key(name)
		j.str(*v)
	}
}

func (j *jsonBuf) enumField(name, v string) {
	if v != "" {
		j.key(name)
		j.str(v)
	}
}

func (j *jsonBuf) boolField(name string, v *bool) {
	if v != nil {
		j.key(name)
		j.b = strconv.AppendBool(j.b, *v)
		j.first = false
	}
}

func (j *jsonBuf) namesField(name string, m map[string]string) {
	if m == nil {
		return
	}
	j.key(name)
	j.open('{')
	for _, k := range sortedNames(m) {
		j.key(k)
		j.str(m[k])
	}
	j.close('}')
}

func (j *jsonBuf) itemField(name string, m map[string]types.AttributeValue) error {
	if m == nil {
		return nil
	}
	j.key(name)
	return j.item(m)
}

// item appends an attribute map, its names sorted (a stable body).
func (j *jsonBuf) item(m map[string]types.AttributeValue) error {
	j.open('{')
	for _, k := range sortedNames(m) {
		j.key(k)
		if err := j.value(m[k]); err != nil {
			return fmt.Errorf("attribute %q: %w", k, err)
		}
	}
	j.close('}')
	return nil
}

func (j *jsonBuf) strings(ss []string) {
	j.open('[')
	for _, s := range ss {
		j.sep()
		j.str(s)
	}
	j.close(']')
}

func (j *jsonBuf) bytes(b []byte) {
	j.b = append(j.b, '"')
	j.b = base64.StdEncoding.AppendEncode(j.b, b)
	j.b = append(j.b, '"')
	j.first = false
}

// value appends one AttributeValue as {"<type>": ...}.
func (j *jsonBuf) value(v types.AttributeValue) error {
	j.open('{')
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		j.key("S")
		j.str(v.Value)
	case *types.AttributeValueMemberN:
		j.key("N")
		j.str(v.Value)
	case *types.AttributeValueMemberB:
		j.key("B")
		j.bytes(v.Value)
	case *types.AttributeValueMemberBOOL:
		j.key("BOOL")
		j.b = strconv.AppendBool(j.b, v.Value)
		j.first = false
	case *types.AttributeValueMemberNULL:
		j.key("NULL")
		j.b = strconv.AppendBool(j.b, v.Value)
		j.first = false
	case *types.AttributeValueMemberM:
		j.key("M")
		if err := j.item(v.Value); err != nil {
			return err
		}
	case *types.AttributeValueMemberL:
		j.key("L")
		j.open('[')
		for _, e := range v.Value {
			j.sep()
			if err := j.value(e); err != nil {
				return err
			}
		}
		j.close(']')
	case *types.AttributeValueMemberSS:
		j.key("SS")
		j.strings(v.Value)
	case *types.AttributeValueMemberNS:
		j.key("NS")
		j.strings(v.Value)
	case *types.AttributeValueMemberBS:
		j.key("BS")
		j.open('[')
		for _, b := range v.Value {
			j.sep()
			j.bytes(b)
		}
		j.close(']')
	default:
		return fmt.Errorf("unsupported attribute value %T", v)
	}
	j.close('}')
	return nil
}

// writeCommon appends what Put, Update, Delete and ConditionCheck share.
func (j *jsonBuf) writeCommon(table *string, cond *string, names map[string]string, values map[string]types.AttributeValue, onFailure types.ReturnValuesOnConditionCheckFailure) error {
	j.strField("TableName", table)
	j.strField("ConditionExpression", cond)
	j.namesField("ExpressionAttributeNames", names)
	if err := j.itemField("ExpressionAttributeValues", values); err != nil {
		return err
	}
	j.enumField("ReturnValuesOnConditionCheckFailure", string(onFailure))
	return nil
}

// encodeGetItem and its siblings return the body of one call, or an error
// for an input using what wire does not send (the legacy parameters): the
// caller then lets the SDK send it.
func encodeGetItem(in *dynamodb.GetItemInput) ([]byte, error) {
	if in.AttributesToGet != nil {
		return nil, errLegacyInput
	}
	j := &jsonBuf{}
	j.open('{')
	j.strField("TableName", in.TableName)
	if err := j.itemField("Key", in.Key); err != nil {
		return nil, err
	}
	j.boolField("ConsistentRead", in.ConsistentRead)
	j.strField("ProjectionExpression", in.ProjectionExpression)
	j.namesField("ExpressionAttributeNames", in.ExpressionAttributeNames)
	j.enumField("ReturnConsumedCapacity", string(in.ReturnConsumedCapacity))
	j.close('}')
	return j.b, nil
}

func encodePutItem(in *dynamodb.PutItemInput) ([]byte, error) {
	if in.Expected != nil || in.ConditionalOperator != "" || in.ReturnItemCollectionMetrics != "" {
		return nil, errLegacyInput
	}
	j := &jsonBuf{}
	j.open('{')
	if err := j.itemField("Item", in.Item); err != nil {
		return nil, err
	}
	if err := j.writeCommon(in.TableName, in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues, in.ReturnValuesOnConditionCheckFailure); err != nil {
		return nil, err
	}
	j.enumField("ReturnValues", string(in.ReturnValues))
	j.enumField("ReturnConsumedCapacity", string(in.ReturnConsumedCapacity))
	j.close('}')
	return j.b, nil
}

func encodeUpdateItem(in *dynamodb.UpdateItemInput) ([]byte, error) {
	if in.AttributeUpdates != nil || in.Expected != nil || in.ConditionalOperator != "" || in.ReturnItemCollectionMetrics != "" {
		return nil, errLegacyInput
	}
	j := &jsonBuf{}
	j.open('{')
	if err := j.itemField("Key", in.Key); err != nil {
		return nil, err
	}
	j.strField("UpdateExpression", in.UpdateExpression)
	if err := j.writeCommon(in.TableName, in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues, in.ReturnValuesOnConditionCheckFailure); err != nil {
		return nil, err
	}
	j.enumField("ReturnValues", string(in.ReturnValues))
	j.enumField("ReturnConsumedCapacity", string(in.ReturnConsumedCapacity))
	j.close('}')
	return j.b, nil
}

func encodeBatchGetItem(in *dynamodb.BatchGetItemInput) ([]byte, error) {
	j := &jsonBuf{}
	j.open('{')
	j.key("RequestItems")
	j.open('{')
	for _, table := range sortedNames(in.RequestItems) {
		ka := in.RequestItems[table]
		if ka.AttributesToGet != nil {
			return nil, errLegacyInput
		}
		j.key(table)
		j.open('{')
		j.key("Keys")
		j.open('[')
		for _, k := range ka.Keys {
			j.sep()
			if err := j.item(k); err != nil {
				return nil, err
			}
		}
		j.close(']')
		j.boolField("ConsistentRead", ka.ConsistentRead)
		j.strField("ProjectionExpression", ka.ProjectionExpression)
		j.namesField("ExpressionAttributeNames", ka.ExpressionAttributeNames)
		j.close('}')
	}
	j.close('}')
	j.enumField("ReturnConsumedCapacity", string(in.ReturnConsumedCapacity))
	j.close('}')
	return j.b, nil
}

func encodeTransactWriteItems(in *dynamodb.TransactWriteItemsInput) ([]byte, error) {
	if in.ReturnItemCollectionMetrics != "" {
		return nil, errLegacyInput
	}
	j := &jsonBuf{}
	j.open('{')
	j.key("TransactItems")
	j.open('[')
	for i, it := range in.TransactItems {
		j.sep()
		j.open('{')
		var err error
		switch {
		case it.ConditionCheck != nil:
			c := it.ConditionCheck
			j.key("ConditionCheck")
			j.open('{')
			if err = j.itemField("Key", c.Key); err == nil {
				err = j.writeCommon(c.TableName, c.ConditionExpression, c.ExpressionAttributeNames, c.ExpressionAttributeValues, c.ReturnValuesOnConditionCheckFailure)
			}
		case it.Put != nil:
			p := it.Put
			j.key("Put")
			j.open('{')
			if err = j.itemField("Item", p.Item); err == nil {
				err = j.writeCommon(p.TableName, p.ConditionExpression, p.ExpressionAttributeNames, p.ExpressionAttributeValues, p.ReturnValuesOnConditionCheckFailure)
			}
		case it.Update != nil:
			u := it.Update
			j.key("Update")
			j.open('{')
			if err = j.itemField("Key", u.Key); err == nil {
				j.strField("UpdateExpression", u.UpdateExpression)
				err = j.writeCommon(u.TableName, u.ConditionExpression, u.ExpressionAttributeNames, u.ExpressionAttributeValues, u.ReturnValuesOnConditionCheckFailure)
			}
		case it.Delete != nil:
			d := it.Delete
			j.key("Delete")
			j.open('{')
			if err = j.itemField("Key", d.Key); err == nil {
				err = j.writeCommon(d.TableName, d.ConditionExpression, d.ExpressionAttributeNames, d.ExpressionAttributeValues, d.ReturnValuesOnConditionCheckFailure)
			}
		default:
			err = fmt.Errorf("transaction item %d has no action", i)
		}
		if err != nil {
			return nil, err
		}
		j.close('}')
		j.close('}')
	}
	j.close(']')
	j.strField("ClientRequestToken", in.ClientRequestToken)
	j.enumField("ReturnConsumedCapacity", string(in.ReturnConsumedCapacity))
	j.close('}')
	return j.b, nil
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// jsonValue is an AttributeValue as the protocol carries it.
type jsonValue struct {
	S    *string               `json:"S"`
	N    *string               `json:"N"`
	B    []byte                `json:"B"` // base64, as encoding/json decodes []byte
	BOOL *bool                 `json:"BOOL"`
	NULL *bool                 `json:"NULL"`
	M    map[string]*jsonValue `json:"M"`
	L    []*jsonValue          `json:"L"`
	SS   []string              `json:"SS"`
	NS   []string              `json:"NS"`
	BS   [][]byte              `json:"BS"`
}

type jsonItem map[string]*jsonValue

func (v *jsonValue) attribute() (types.AttributeValue, error) {
	switch {
	case v == nil:
		return nil, fmt.Errorf("null attribute value")
	case v.S != nil:
		return &types.AttributeValueMemberS{Value: *v.S}, nil
	case v.N != nil:
		return &types.AttributeValueMemberN{Value: *v.N}, nil
	case v.B != nil:
		return &types.AttributeValueMemberB{Value: v.B}, nil
	case v.BOOL != nil:
		return &types.AttributeValueMemberBOOL{Value: *v.BOOL}, nil
	case v.NULL != nil:
		return &types.AttributeValueMemberNULL{Value: *v.NULL}, nil
	case v.M != nil:
		m, err := jsonItem(v.M).attributes()
		return &types.AttributeValueMemberM{Value: m}, err
	case v.L != nil:
		l := make([]types.AttributeValue, len(v.L))
		for i, e := range v.L {
			a, err := e.attribute()
			if err != nil {
				return nil, err
			}
			l[i] = a
		}
		return &types.AttributeValueMemberL{Value: l}, nil
	case v.SS != nil:
		return &types.AttributeValueMemberSS{Value: v.SS}, nil
	case v.NS != nil:
		return &types.AttributeValueMemberNS{Value: v.NS}, nil
	case v.BS != nil:
		return &types.AttributeValueMemberBS{Value: v.BS}, nil
	}
	return nil, fmt.Errorf("attribute value of no known type")
}

// attributes converts it; nil stays nil (no item).
func (it jsonItem) attributes() (map[string]types.AttributeValue, error) {
	if it == nil {
		return nil, nil
	}
	m := make(map[string]types.AttributeValue, len(it))
	for k, v := range it {
		a, err := v.attribute()
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", k, err)
		}
		m[k] = a
	}
	return m, nil
}

type jsonCapacity struct {
	CapacityUnits      *float64 `json:"CapacityUnits"`
	ReadCapacityUnits  *float64 `json:"ReadCapacityUnits"`
	WriteCapacityUnits *float64 `json:"WriteCapacityUnits"`
}

type jsonConsumed struct {
	jsonCapacity
	TableName              *string                 `json:"TableName"`
	Table                  *jsonCapacity           `json:"Table"`
	GlobalSecondaryIndexes map[string]jsonCapacity `json:"GlobalSecondaryIndexes"`
	LocalSecondaryIndexes  map[string]jsonCapacity `json:"LocalSecondaryIndexes"`
}

func (c jsonCapacity) sdk() types.Capacity {
	return types.Capacity{CapacityUnits: c.CapacityUnits, ReadCapacityUnits: c.ReadCapacityUnits, WriteCapacityUnits: c.WriteCapacityUnits}
}

func (c *jsonConsumed) sdk() *types.ConsumedCapacity {
	if c == nil {
		return nil
	}
	out := &types.ConsumedCapacity{
		CapacityUnits: c.CapacityUnits, ReadCapacityUnits: c.ReadCapacityUnits, WriteCapacityUnits: c.WriteCapacityUnits,
		TableName: c.TableName,
	}
	if c.Table != nil {
		t := c.Table.sdk()
		out.Table = &t
	}
	indexes := func(m map[string]jsonCapacity) map[string]types.Capacity {
		if m == nil {
			return nil
		}
		out := make(map[string]types.Capacity, len(m))
		for k, v := range m {
			out[k] = v.sdk()
		}
		return out
	}
	out.GlobalSecondaryIndexes = indexes(c.GlobalSecondaryIndexes)
	out.LocalSecondaryIndexes = indexes(c.LocalSecondaryIndexes)
	return out
}

func consumedList(cs []jsonConsumed) []types.ConsumedCapacity {
	if cs == nil {
		return nil
	}
	out := make([]types.ConsumedCapacity, len(cs))
	for i := range cs {
		out[i] = *cs[i].sdk()
	}
	return out
}

func decodeGetItem(body []byte) (*dynamodb.GetItemOutput, error) {
	var r struct {
		Item             jsonItem      `json:"Item"`
		ConsumedCapacity *jsonConsumed `json:"ConsumedCapacity"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode GetItem response: %w", err)
	}
	item, err := r.Item.attributes()
	if err != nil {
		return nil, fmt.Errorf("decode GetItem response: %w", err)
	}
	return &dynamodb.GetItemOutput{Item: item, ConsumedCapacity: r.ConsumedCapacity.sdk()}, nil
}

// writeResult is the response of PutItem and UpdateItem.
type writeResult struct {
	Attributes       jsonItem      `json:"Attributes"`
	ConsumedCapacity *jsonConsumed `json:"ConsumedCapacity"`
}

func decodeWrite(op string, body []byte) (map[string]types.AttributeValue, *types.ConsumedCapacity, error) {
	var r writeResult
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, nil, fmt.Errorf("decode %s response: %w", op, err)
	}
	attrs, err := r.Attributes.attributes()
	if err != nil {
		return nil, nil, fmt.Errorf("decode %s response: %w", op, err)
	}
	return attrs, r.ConsumedCapacity.sdk(), nil
}

func decodeBatchGetItem(body []byte) (*dynamodb.BatchGetItemOutput, error) {
	var r struct {
		Responses       map[string][]jsonItem `json:"Responses"`
		UnprocessedKeys map[string]struct {
			Keys                     []jsonItem        `json:"Keys"`
			ConsistentRead           *bool             `json:"ConsistentRead"`
			ProjectionExpression     *string           `json:"ProjectionExpression"`
			ExpressionAttributeNames map[string]string `json:"ExpressionAttributeNames"`
		} `json:"UnprocessedKeys"`
		ConsumedCapacity []jsonConsumed `json:"ConsumedCapacity"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode BatchGetItem response: %w", err)
	}
	out := &dynamodb.BatchGetItemOutput{ConsumedCapacity: consumedList(r.ConsumedCapacity)}
	items := func(its []jsonItem) ([]map[string]types.AttributeValue, error) {
		out := make([]map[string]types.AttributeValue, len(its))
		for i, it := range its {
			m, err := it.attributes()
			if err != nil {
				return nil, fmt.Errorf("decode BatchGetItem response: %w", err)
			}
			out[i] = m
		}
		return out, nil
	}
	if r.Responses != nil {
		out.Responses = make(map[string][]map[string]types.AttributeValue, len(r.Responses))
		for table, its := range r.Responses {
			ms, err := items(its)
			if err != nil {
				return nil, err
			}
			out.Responses[table] = ms
		}
	}
	if len(r.UnprocessedKeys) > 0 {
		out.UnprocessedKeys = make(map[string]types.KeysAndAttributes, len(r.UnprocessedKeys))
		for table, ka := range r.UnprocessedKeys {
			keys, err := items(ka.Keys)
			if err != nil {
				return nil, err
			}
			out.UnprocessedKeys[table] = types.KeysAndAttributes{
				Keys: keys, ConsistentRead: ka.ConsistentRead, ProjectionExpression: ka.ProjectionExpression,
				ExpressionAttributeNames: ka.ExpressionAttributeNames,
			}
		}
	}
	return out, nil
}

func decodeTransactWriteItems(body []byte) (*dynamodb.TransactWriteItemsOutput, error) {
	var r struct {
		ConsumedCapacity []jsonConsumed `json:"ConsumedCapacity"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode TransactWriteItems response: %w", err)
	}
	return &dynamodb.TransactWriteItemsOutput{ConsumedCapacity: consumedList(r.ConsumedCapacity)}, nil
}

// jsonError is what an error answer's body holds beyond its code and
// message.
type jsonError struct {
	Item                jsonItem `json:"Item"`
	CancellationReasons []struct {
		Code    *string  `json:"Code"`
		Message *string  `json:"Message"`
		Item    jsonItem `json:"Item"`
	} `json:"CancellationReasons"`
}

// decodeError turns an error response into the error the SDK would have
// returned inside its wrapping: the typed exception for the codes this
// package tests for or retries on, a smithy.GenericAPIError otherwise.
func decodeError(ae *awsjson.Error) error {
	var e jsonError
	_ = json.Unmarshal(ae.Body, &e) // an undecodable body leaves the status to speak
	code, msg := ae.Code, ae.Message
	var m *string
	if msg != "" {
		m = aws.String(msg)
	}
	switch code {
	case "ConditionalCheckFailedException":
		item, _ := e.Item.attributes()
		return &types.ConditionalCheckFailedException{Message: m, Item: item}
	case "TransactionCanceledException":
		tc := &types.TransactionCanceledException{Message: m}
		for _, r := range e.CancellationReasons {
			item, _ := r.Item.attributes()
			tc.CancellationReasons = append(tc.CancellationReasons, types.CancellationReason{Code: r.Code, Message: r.Message, Item: item})
		}
		return tc
	case "ResourceNotFoundException":
		return &types.ResourceNotFoundException{Message: m}
	case "ProvisionedThroughputExceededException":
		return &types.ProvisionedThroughputExceededException{Message: m}
	case "RequestLimitExceeded":
		return &types.RequestLimitExceeded{Message: m}
	case "ThrottlingException":
		return &types.ThrottlingException{Message: m}
	case "InternalServerError":
		return &types.InternalServerError{Message: m}
	case "ItemCollectionSizeLimitExceededException":
		return &types.ItemCollectionSizeLimitExceededException{Message: m}
	case "TransactionConflictException":
		return &types.TransactionConflictException{Message: m}
	case "TransactionInProgressException":
		return &types.TransactionInProgressException{Message: m}
	case "IdempotentParameterMismatchException":
		return &types.IdempotentParameterMismatchException{Message: m}
	case "":
		code = "HTTP " + strconv.Itoa(ae.Status)
	}
	return &smithy.GenericAPIError{Code: code, Message: msg}
}
