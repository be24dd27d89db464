package ddb

// DynamoDB's JSON protocol (awsJson1_0): bodies holding attribute values
// are appended field by field (encoding/json's reflection cost a third of a
// call's CPU); answers are read by the scanner (scan.go), with
// encoding/json for their small or rare parts; the table-management
// shapes, which hold no attribute values, go through encoding/json both
// ways.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// jsonBuf appends a JSON object field by field.
type jsonBuf struct {
	b     []byte
	first bool // no field written yet in the innermost object or array
}

// requestRoom is the room a request's body starts with: a request of the
// proxy's (an UpdateItem of a ledger with its expression, an event's
// PutItem) takes about a kilobyte, so it is written without growing its
// buffer again and again.
const requestRoom = 1 << 10

// newJSONBuf returns an empty jsonBuf with requestRoom bytes of room.
func newJSONBuf() *jsonBuf { return &jsonBuf{b: make([]byte, 0, requestRoom)} }

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

func (j *jsonBuf) itemField(name string, m map[string]AttributeValue) error {
	if m == nil {
		return nil
	}
	j.key(name)
	return j.item(m)
}

// item appends an attribute map, its names sorted (a stable body).
func (j *jsonBuf) item(m map[string]AttributeValue) error {
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
func (j *jsonBuf) value(v AttributeValue) error {
	j.open('{')
	switch v := v.(type) {
	case *AttributeValueMemberS:
		j.key("S")
		j.str(v.Value)
	case *AttributeValueMemberN:
		j.key("N")
		j.str(v.Value)
	case *AttributeValueMemberB:
		j.key("B")
		j.bytes(v.Value)
	case *AttributeValueMemberBOOL:
		j.key("BOOL")
		j.b = strconv.AppendBool(j.b, v.Value)
		j.first = false
	case *AttributeValueMemberNULL:
		j.key("NULL")
		j.b = strconv.AppendBool(j.b, v.Value)
		j.first = false
	case *AttributeValueMemberM:
		j.key("M")
		if err := j.item(v.Value); err != nil {
			return err
		}
	case *AttributeValueMemberL:
		j.key("L")
		j.open('[')
		for _, e := range v.Value {
			j.sep()
			if err := j.value(e); err != nil {
				return err
			}
		}
		j.close(']')
	case *AttributeValueMemberSS:
		j.key("SS")
		j.strings(v.Value)
	case *AttributeValueMemberNS:
		j.key("NS")
		j.strings(v.Value)
	case *AttributeValueMemberBS:
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
func (j *jsonBuf) writeCommon(table *string, cond *string, names map[string]string, values map[string]AttributeValue, onFailure ReturnValuesOnConditionCheckFailure) error {
	j.strField("TableName", table)
	j.strField("ConditionExpression", cond)
	j.namesField("ExpressionAttributeNames", names)
	if err := j.itemField("ExpressionAttributeValues", values); err != nil {
		return err
	}
	j.enumField("ReturnValuesOnConditionCheckFailure", string(onFailure))
	return nil
}

// encodeGetItem and its siblings return the body of one call.
func encodeGetItem(in *GetItemInput) ([]byte, error) {
	j := newJSONBuf()
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

// encodePutItem, encodeUpdateItem and encodeDeleteItem: a single-item
// write's body is its transaction action's members (writeAction) and what
// only a call has.
func encodePutItem(in *PutItemInput) ([]byte, error) {
	return encodeWrite(TransactWriteItem{Put: &Put{
		TableName: in.TableName, Item: in.Item, ConditionExpression: in.ConditionExpression,
		ExpressionAttributeNames: in.ExpressionAttributeNames, ExpressionAttributeValues: in.ExpressionAttributeValues,
		ReturnValuesOnConditionCheckFailure: in.ReturnValuesOnConditionCheckFailure,
	}}, in.ReturnValues, in.ReturnConsumedCapacity)
}

func encodeUpdateItem(in *UpdateItemInput) ([]byte, error) {
	return encodeWrite(TransactWriteItem{Update: &Update{
		TableName: in.TableName, Key: in.Key, UpdateExpression: in.UpdateExpression, ConditionExpression: in.ConditionExpression,
		ExpressionAttributeNames: in.ExpressionAttributeNames, ExpressionAttributeValues: in.ExpressionAttributeValues,
		ReturnValuesOnConditionCheckFailure: in.ReturnValuesOnConditionCheckFailure,
	}}, in.ReturnValues, in.ReturnConsumedCapacity)
}

func encodeDeleteItem(in *DeleteItemInput) ([]byte, error) {
	return encodeWrite(TransactWriteItem{Delete: &Delete{
		TableName: in.TableName, Key: in.Key, ConditionExpression: in.ConditionExpression,
		ExpressionAttributeNames: in.ExpressionAttributeNames, ExpressionAttributeValues: in.ExpressionAttributeValues,
		ReturnValuesOnConditionCheckFailure: in.ReturnValuesOnConditionCheckFailure,
	}}, in.ReturnValues, in.ReturnConsumedCapacity)
}

func encodeWrite(it TransactWriteItem, rv ReturnValue, rcc ReturnConsumedCapacity) ([]byte, error) {
	j := newJSONBuf()
	j.open('{')
	if err := j.writeAction(it, false); err != nil {
		return nil, err
	}
	j.enumField("ReturnValues", string(rv))
	j.enumField("ReturnConsumedCapacity", string(rcc))
	j.close('}')
	return j.b, nil
}

// writeAction appends the members of it's one action to the object open
// (a single-item call's), or, named, the action as a member of its own
// ({"Put":{...}} in a transaction); an error when it has none.
func (j *jsonBuf) writeAction(it TransactWriteItem, named bool) error {
	begin := func(action string) {
		if named {
			j.key(action)
			j.open('{')
		}
	}
	var err error
	switch {
	case it.ConditionCheck != nil:
		c := it.ConditionCheck
		begin("ConditionCheck")
		if err = j.itemField("Key", c.Key); err == nil {
			err = j.writeCommon(c.TableName, c.ConditionExpression, c.ExpressionAttributeNames, c.ExpressionAttributeValues, c.ReturnValuesOnConditionCheckFailure)
		}
	case it.Put != nil:
		p := it.Put
		begin("Put")
		if err = j.itemField("Item", p.Item); err == nil {
			err = j.writeCommon(p.TableName, p.ConditionExpression, p.ExpressionAttributeNames, p.ExpressionAttributeValues, p.ReturnValuesOnConditionCheckFailure)
		}
	case it.Update != nil:
		u := it.Update
		begin("Update")
		if err = j.itemField("Key", u.Key); err == nil {
			j.strField("UpdateExpression", u.UpdateExpression)
			err = j.writeCommon(u.TableName, u.ConditionExpression, u.ExpressionAttributeNames, u.ExpressionAttributeValues, u.ReturnValuesOnConditionCheckFailure)
		}
	case it.Delete != nil:
		d := it.Delete
		begin("Delete")
		if err = j.itemField("Key", d.Key); err == nil {
			err = j.writeCommon(d.TableName, d.ConditionExpression, d.ExpressionAttributeNames, d.ExpressionAttributeValues, d.ReturnValuesOnConditionCheckFailure)
		}
	default:
		return errors.New("no action")
	}
	if named {
		j.close('}')
	}
	return err
}

func encodeBatchGetItem(in *BatchGetItemInput) ([]byte, error) {
	j := newJSONBuf()
	j.open('{')
	j.key("RequestItems")
	j.open('{')
	for _, table := range sortedNames(in.RequestItems) {
		ka := in.RequestItems[table]
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

func encodeTransactWriteItems(in *TransactWriteItemsInput) ([]byte, error) {
	j := newJSONBuf()
	j.open('{')
	j.key("TransactItems")
	j.open('[')
	for i, it := range in.TransactItems {
		j.sep()
		j.open('{')
		if err := j.writeAction(it, true); err != nil {
			return nil, fmt.Errorf("transaction item %d: %w", i, err)
		}
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

// readAnswer reads a top-level answer's members with a scanner: read gets
// each member's name and reads its value (s.skip for one it ignores).
func readAnswer(op string, body []byte, read func(s *scanner, name string) error) error {
	s := &scanner{b: body}
	err := s.members(func(name string) error { return read(s, name) })
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return fmt.Errorf("decode %s response: %w", op, err)
	}
	return nil
}

// consumed reads a ConsumedCapacity (or a list of them) into out.
func consumed(s *scanner, out any) error {
	raw, err := s.raw()
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// oneItem reads an answer that holds at most one item, under member (Item
// or Attributes), and its ConsumedCapacity.
func oneItem(op, member string, body []byte) (item map[string]AttributeValue, cc *ConsumedCapacity, err error) {
	err = readAnswer(op, body, func(s *scanner, name string) (err error) {
		switch name {
		case member:
			item, err = s.item()
		case "ConsumedCapacity":
			err = consumed(s, &cc)
		default:
			err = s.skip(0)
		}
		return err
	})
	return item, cc, err
}

func decodeGetItem(body []byte) (*GetItemOutput, error) {
	item, cc, err := oneItem("GetItem", "Item", body)
	if err != nil {
		return nil, err
	}
	return &GetItemOutput{Item: item, ConsumedCapacity: cc}, nil
}

// writeOutput is PutItemOutput, UpdateItemOutput and DeleteItemOutput
// alike: each converts from it.
type writeOutput struct {
	Attributes       map[string]AttributeValue
	ConsumedCapacity *ConsumedCapacity
}

// decodeWrite reads the answer of PutItem, UpdateItem and DeleteItem.
func decodeWrite[O PutItemOutput | UpdateItemOutput | DeleteItemOutput](op string) func([]byte) (*O, error) {
	return func(body []byte) (*O, error) {
		item, cc, err := oneItem(op, "Attributes", body)
		if err != nil {
			return nil, err
		}
		o := O(writeOutput{Attributes: item, ConsumedCapacity: cc})
		return &o, nil
	}
}

func decodeBatchGetItem(body []byte) (*BatchGetItemOutput, error) {
	out := &BatchGetItemOutput{}
	err := readAnswer("BatchGetItem", body, func(s *scanner, name string) (err error) {
		switch name {
		case "Responses":
			if s.null() {
				return nil
			}
			out.Responses = map[string][]map[string]AttributeValue{}
			return s.members(func(table string) error {
				items, err := s.items()
				out.Responses[table] = items
				return err
			})
		case "UnprocessedKeys":
			raw, err := s.raw()
			if err != nil {
				return err
			}
			out.UnprocessedKeys, err = unprocessedKeys(raw)
			return err
		case "ConsumedCapacity":
			return consumed(s, &out.ConsumedCapacity)
		}
		return s.skip(0)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// unprocessedKeys decodes BatchGetItem's keys left for another call (rare:
// encoding/json is fast enough).
func unprocessedKeys(raw []byte) (map[string]KeysAndAttributes, error) {
	var r map[string]struct {
		Keys                     []scannedItem     `json:"Keys"`
		ConsistentRead           *bool             `json:"ConsistentRead"`
		ProjectionExpression     *string           `json:"ProjectionExpression"`
		ExpressionAttributeNames map[string]string `json:"ExpressionAttributeNames"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || len(r) == 0 {
		return nil, err
	}
	out := make(map[string]KeysAndAttributes, len(r))
	for table, ka := range r {
		keys := make([]map[string]AttributeValue, len(ka.Keys))
		for i, k := range ka.Keys {
			keys[i] = k
		}
		out[table] = KeysAndAttributes{
			Keys: keys, ConsistentRead: ka.ConsistentRead, ProjectionExpression: ka.ProjectionExpression,
			ExpressionAttributeNames: ka.ExpressionAttributeNames,
		}
	}
	return out, nil
}

func decodeTransactWriteItems(body []byte) (*TransactWriteItemsOutput, error) {
	var r struct {
		ConsumedCapacity []ConsumedCapacity `json:"ConsumedCapacity"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode TransactWriteItems response: %w", err)
	}
	return &TransactWriteItemsOutput{ConsumedCapacity: r.ConsumedCapacity}, nil
}

func encodeQuery(in *QueryInput) ([]byte, error) {
	j := newJSONBuf()
	j.open('{')
	j.strField("TableName", in.TableName)
	j.strField("IndexName", in.IndexName)
	j.strField("KeyConditionExpression", in.KeyConditionExpression)
	j.strField("FilterExpression", in.FilterExpression)
	j.strField("ProjectionExpression", in.ProjectionExpression)
	j.namesField("ExpressionAttributeNames", in.ExpressionAttributeNames)
	if err := j.itemField("ExpressionAttributeValues", in.ExpressionAttributeValues); err != nil {
		return nil, err
	}
	if err := j.itemField("ExclusiveStartKey", in.ExclusiveStartKey); err != nil {
		return nil, err
	}
	if in.Limit != nil {
		j.key("Limit")
		j.b = strconv.AppendInt(j.b, int64(*in.Limit), 10)
		j.first = false
	}
	j.boolField("ScanIndexForward", in.ScanIndexForward)
	j.boolField("ConsistentRead", in.ConsistentRead)
	j.enumField("Select", string(in.Select))
	j.enumField("ReturnConsumedCapacity", string(in.ReturnConsumedCapacity))
	j.close('}')
	return j.b, nil
}

func encodeBatchWriteItem(in *BatchWriteItemInput) ([]byte, error) {
	j := newJSONBuf()
	j.open('{')
	j.key("RequestItems")
	j.open('{')
	for _, table := range sortedNames(in.RequestItems) {
		j.key(table)
		j.open('[')
		for i, w := range in.RequestItems[table] {
			j.sep()
			j.open('{')
			var err error
			switch {
			case w.PutRequest != nil:
				j.key("PutRequest")
				j.open('{')
				err = j.itemField("Item", w.PutRequest.Item)
			case w.DeleteRequest != nil:
				j.key("DeleteRequest")
				j.open('{')
				err = j.itemField("Key", w.DeleteRequest.Key)
			default:
				err = fmt.Errorf("write request %d of table %q has no action", i, table)
			}
			if err != nil {
				return nil, err
			}
			j.close('}')
			j.close('}')
		}
		j.close(']')
	}
	j.close('}')
	j.enumField("ReturnConsumedCapacity", string(in.ReturnConsumedCapacity))
	j.close('}')
	return j.b, nil
}

func decodeQuery(body []byte) (*QueryOutput, error) {
	out := &QueryOutput{}
	err := readAnswer("Query", body, func(s *scanner, name string) (err error) {
		switch name {
		case "Items":
			out.Items, err = s.items()
		case "LastEvaluatedKey":
			out.LastEvaluatedKey, err = s.item()
		case "Count", "ScannedCount":
			raw, err := s.raw()
			if err != nil {
				return err
			}
			n, err := strconv.ParseInt(string(raw), 10, 32)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if name == "Count" {
				out.Count = int32(n)
			} else {
				out.ScannedCount = int32(n)
			}
		case "ConsumedCapacity":
			err = consumed(s, &out.ConsumedCapacity)
		default:
			err = s.skip(0)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func decodeBatchWriteItem(body []byte) (*BatchWriteItemOutput, error) {
	var r struct {
		UnprocessedItems map[string][]struct {
			PutRequest *struct {
				Item scannedItem `json:"Item"`
			} `json:"PutRequest"`
			DeleteRequest *struct {
				Key scannedItem `json:"Key"`
			} `json:"DeleteRequest"`
		} `json:"UnprocessedItems"`
		ConsumedCapacity []ConsumedCapacity `json:"ConsumedCapacity"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode BatchWriteItem response: %w", err)
	}
	out := &BatchWriteItemOutput{ConsumedCapacity: r.ConsumedCapacity}
	if len(r.UnprocessedItems) > 0 {
		out.UnprocessedItems = make(map[string][]WriteRequest, len(r.UnprocessedItems))
	}
	for table, ws := range r.UnprocessedItems {
		list := make([]WriteRequest, len(ws))
		for i, w := range ws {
			switch {
			case w.PutRequest != nil:
				list[i].PutRequest = &PutRequest{Item: w.PutRequest.Item}
			case w.DeleteRequest != nil:
				list[i].DeleteRequest = &DeleteRequest{Key: w.DeleteRequest.Key}
			}
		}
		out.UnprocessedItems[table] = list
	}
	return out, nil
}

// encodeJSON and decodeJSON carry the table-management shapes, which hold
// no attribute values.
func encodeJSON[I any](in *I) ([]byte, error) { return json.Marshal(in) }

func decodeJSON[O any](op string) func([]byte) (*O, error) {
	return func(body []byte) (*O, error) {
		out := new(O)
		if err := json.Unmarshal(body, out); err != nil {
			return nil, fmt.Errorf("decode %s response: %w", op, err)
		}
		return out, nil
	}
}
