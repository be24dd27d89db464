package ddb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/stipend/stipend/shared/awsenv"
)

// wireServer records the requests it gets and answers each with the next
// of its canned answers (the last one repeats).
type wireServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
	answers  []answer
}

type recorded struct {
	header http.Header
	body   []byte
}

type answer struct {
	status int
	body   string
}

func newWireServer(t *testing.T, answers ...answer) *wireServer {
	t.Helper()
	s := &wireServer{answers: answers}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, recorded{r.Header.Clone(), body})
		a := answer{200, "{}"}
		if len(s.answers) > 0 {
			a = s.answers[0]
			if len(s.answers) > 1 {
				s.answers = s.answers[1:]
			}
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *wireServer) last(t *testing.T) recorded {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		t.Fatal("the server got no request")
	}
	return s.requests[len(s.requests)-1]
}

func (s *wireServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// wireClients returns the SDK's client and a Client for url, configured as
// the functions configure them (awsenv).
func wireClients(t testing.TB, url string, env map[string]string) (*sdkClient, *Client) {
	t.Helper()
	base := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDWIRE", "AWS_SECRET_ACCESS_KEY": "wire-secret"}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := awsenv.FromEnv(func(k string) string { return base[k] })
	if err != nil {
		t.Fatal(err)
	}
	return &sdkClient{dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(url) })}, NewAt(cfg, url)
}

// everyKind is an item with every kind of attribute value, and strings
// that need escaping.
func everyKind() map[string]AttributeValue {
	return map[string]AttributeValue{
		"pk":      &AttributeValueMemberS{Value: "KEY#a\"b\\c\n\t\x01 é 日本 \u2028 </script>"},
		"n":       &AttributeValueMemberN{Value: "-12.5e3"},
		"b":       &AttributeValueMemberB{Value: []byte{0, 1, 2, 250, 255}},
		"t":       &AttributeValueMemberBOOL{Value: true},
		"f":       &AttributeValueMemberBOOL{Value: false},
		"null":    &AttributeValueMemberNULL{Value: true},
		"ss":      &AttributeValueMemberSS{Value: []string{"x", "y"}},
		"ns":      &AttributeValueMemberNS{Value: []string{"1", "2.5"}},
		"bs":      &AttributeValueMemberBS{Value: [][]byte{{1}, {2, 3}}},
		"empty":   &AttributeValueMemberS{Value: ""},
		"m":       &AttributeValueMemberM{Value: map[string]AttributeValue{"in": &AttributeValueMemberN{Value: "1"}, "deep": &AttributeValueMemberM{Value: map[string]AttributeValue{}}}},
		"l":       &AttributeValueMemberL{Value: []AttributeValue{&AttributeValueMemberS{Value: "x"}, &AttributeValueMemberL{Value: nil}, &AttributeValueMemberNULL{Value: true}}},
		"R#abc12": &AttributeValueMemberS{Value: `{"d":1,"c":2}`},
	}
}

func wireKey() map[string]AttributeValue {
	return map[string]AttributeValue{"pk": &AttributeValueMemberS{Value: "KEY#k1"}, "sk": &AttributeValueMemberS{Value: "USAGE"}}
}

// TestWireMatchesSDK sends each input through the SDK and through the Client and
// compares the JSON bodies DynamoDB would get, and the target header.
func TestWireMatchesSDK(t *testing.T) {
	names := map[string]string{"#e": "R#abc12", "#v": "v"}
	values := map[string]AttributeValue{":a": &AttributeValueMemberN{Value: "5"}, ":s": &AttributeValueMemberS{Value: "x\u00e9"}}
	tests := []struct {
		op   string
		call func(ctx context.Context, c api) error
	}{
		{"GetItem", func(ctx context.Context, c api) error {
			_, err := c.GetItem(ctx, &GetItemInput{TableName: aws.String("t"), Key: wireKey(), ConsistentRead: aws.Bool(true),
				ProjectionExpression: aws.String("#e, #v"), ExpressionAttributeNames: names, ReturnConsumedCapacity: ReturnConsumedCapacityTotal})
			return err
		}},
		{"GetItem", func(ctx context.Context, c api) error {
			_, err := c.GetItem(ctx, &GetItemInput{TableName: aws.String("t"), Key: wireKey()})
			return err
		}},
		{"PutItem", func(ctx context.Context, c api) error {
			_, err := c.PutItem(ctx, &PutItemInput{TableName: aws.String("t"), Item: everyKind(),
				ConditionExpression: aws.String("attribute_not_exists(pk)"), ReturnValuesOnConditionCheckFailure: ReturnValuesOnConditionCheckFailureAllOld,
				ReturnConsumedCapacity: ReturnConsumedCapacityTotal})
			return err
		}},
		{"UpdateItem", func(ctx context.Context, c api) error {
			_, err := c.UpdateItem(ctx, &UpdateItemInput{TableName: aws.String("t"), Key: wireKey(),
				UpdateExpression: aws.String("ADD #v :a SET #e = :s"), ConditionExpression: aws.String("attribute_not_exists(#e)"),
				ExpressionAttributeNames: names, ExpressionAttributeValues: values, ReturnValues: ReturnValueUpdatedNew,
				ReturnValuesOnConditionCheckFailure: ReturnValuesOnConditionCheckFailureAllOld, ReturnConsumedCapacity: ReturnConsumedCapacityTotal})
			return err
		}},
		{"BatchGetItem", func(ctx context.Context, c api) error {
			_, err := c.BatchGetItem(ctx, &BatchGetItemInput{RequestItems: map[string]KeysAndAttributes{
				"t":     {Keys: []map[string]AttributeValue{wireKey(), {"pk": &AttributeValueMemberS{Value: "ORG"}, "sk": &AttributeValueMemberS{Value: "SPEND#s1"}}}, ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String("#v"), ExpressionAttributeNames: map[string]string{"#v": "v"}},
				"other": {Keys: []map[string]AttributeValue{wireKey()}},
			}, ReturnConsumedCapacity: ReturnConsumedCapacityTotal})
			return err
		}},
		{"TransactWriteItems", func(ctx context.Context, c api) error {
			_, err := c.TransactWriteItems(ctx, &TransactWriteItemsInput{ClientRequestToken: aws.String("token-1"), ReturnConsumedCapacity: ReturnConsumedCapacityTotal,
				TransactItems: []TransactWriteItem{
					{ConditionCheck: &ConditionCheck{TableName: aws.String("t"), Key: wireKey(), ConditionExpression: aws.String("version = :a"), ExpressionAttributeValues: map[string]AttributeValue{":a": &AttributeValueMemberN{Value: "3"}}}},
					{Put: &Put{TableName: aws.String("t"), Item: everyKind(), ConditionExpression: aws.String("attribute_not_exists(pk)"), ReturnValuesOnConditionCheckFailure: ReturnValuesOnConditionCheckFailureAllOld}},
					{Update: &Update{TableName: aws.String("t"), Key: wireKey(), UpdateExpression: aws.String("ADD #v :a"), ExpressionAttributeNames: map[string]string{"#v": "v"}, ExpressionAttributeValues: map[string]AttributeValue{":a": &AttributeValueMemberN{Value: "-7"}}}},
					{Delete: &Delete{TableName: aws.String("t"), Key: wireKey(), ConditionExpression: aws.String("attribute_exists(pk)")}},
				}})
			return err
		}},
		{"DeleteItem", func(ctx context.Context, c api) error {
			_, err := c.DeleteItem(ctx, &DeleteItemInput{TableName: aws.String("t"), Key: wireKey(), ConditionExpression: aws.String("#v = :a"),
				ExpressionAttributeNames: map[string]string{"#v": "v"}, ExpressionAttributeValues: values, ReturnValues: ReturnValueAllOld,
				ReturnValuesOnConditionCheckFailure: ReturnValuesOnConditionCheckFailureAllOld, ReturnConsumedCapacity: ReturnConsumedCapacityTotal})
			return err
		}},
		{"Query", func(ctx context.Context, c api) error {
			_, err := c.Query(ctx, &QueryInput{TableName: aws.String("t"), IndexName: aws.String("gsi1"),
				KeyConditionExpression: aws.String("#e = :s AND begins_with(sk, :s)"), FilterExpression: aws.String("#v > :a"),
				ProjectionExpression: aws.String("#e, #v"), ExpressionAttributeNames: names, ExpressionAttributeValues: values,
				ExclusiveStartKey: everyKind(), Limit: aws.Int32(250), ScanIndexForward: aws.Bool(false), ConsistentRead: aws.Bool(true),
				Select: SelectCount, ReturnConsumedCapacity: ReturnConsumedCapacityIndexes})
			return err
		}},
		{"Query", func(ctx context.Context, c api) error {
			_, err := c.Query(ctx, &QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :s"), ExpressionAttributeValues: values})
			return err
		}},
		{"BatchWriteItem", func(ctx context.Context, c api) error {
			_, err := c.BatchWriteItem(ctx, &BatchWriteItemInput{RequestItems: map[string][]WriteRequest{
				"t":     {{PutRequest: &PutRequest{Item: everyKind()}}, {DeleteRequest: &DeleteRequest{Key: wireKey()}}},
				"other": {{DeleteRequest: &DeleteRequest{Key: wireKey()}}},
			}, ReturnConsumedCapacity: ReturnConsumedCapacityTotal})
			return err
		}},
		{"CreateTable", func(ctx context.Context, c api) error {
			_, err := c.CreateTable(ctx, &CreateTableInput{TableName: aws.String("t"), BillingMode: BillingModePayPerRequest,
				AttributeDefinitions: []AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ScalarAttributeTypeS}, {AttributeName: aws.String("n"), AttributeType: ScalarAttributeTypeN}},
				KeySchema:            []KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: KeyTypeRange}},
				GlobalSecondaryIndexes: []GlobalSecondaryIndex{
					{IndexName: aws.String("g1"), KeySchema: []KeySchemaElement{{AttributeName: aws.String("n"), KeyType: KeyTypeHash}}, Projection: &Projection{ProjectionType: ProjectionTypeAll}},
					{IndexName: aws.String("g2"), KeySchema: []KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: KeyTypeHash}}, Projection: &Projection{ProjectionType: ProjectionTypeInclude, NonKeyAttributes: []string{"a", "b"}}},
				}})
			return err
		}},
		{"DescribeTable", func(ctx context.Context, c api) error {
			_, err := c.DescribeTable(ctx, &DescribeTableInput{TableName: aws.String("t")})
			return err
		}},
		{"UpdateTable", func(ctx context.Context, c api) error {
			_, err := c.UpdateTable(ctx, &UpdateTableInput{TableName: aws.String("t"),
				AttributeDefinitions: []AttributeDefinition{{AttributeName: aws.String("n"), AttributeType: ScalarAttributeTypeS}},
				GlobalSecondaryIndexUpdates: []GlobalSecondaryIndexUpdate{{Create: &CreateGlobalSecondaryIndexAction{IndexName: aws.String("g3"),
					KeySchema: []KeySchemaElement{{AttributeName: aws.String("n"), KeyType: KeyTypeHash}}, Projection: &Projection{ProjectionType: ProjectionTypeKeysOnly}}}}})
			return err
		}},
		{"UpdateTimeToLive", func(ctx context.Context, c api) error {
			_, err := c.UpdateTimeToLive(ctx, &UpdateTimeToLiveInput{TableName: aws.String("t"),
				TimeToLiveSpecification: &TimeToLiveSpecification{AttributeName: aws.String("expiresAt"), Enabled: aws.Bool(true)}})
			return err
		}},
	}
	srv := newWireServer(t)
	sdk, w := wireClients(t, srv.URL, nil)
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			if err := tt.call(ctx, sdk); err != nil {
				t.Fatalf("SDK: %v", err)
			}
			want := srv.last(t)
			if err := tt.call(ctx, w); err != nil {
				t.Fatalf("Client: %v", err)
			}
			got := srv.last(t)
			if g, w := got.header.Get("X-Amz-Target"), want.header.Get("X-Amz-Target"); g != w || g != "DynamoDB_20120810."+tt.op {
				t.Errorf("X-Amz-Target = %q, the SDK's %q", g, w)
			}
			if g, w := got.header.Get("Content-Type"), want.header.Get("Content-Type"); g != w {
				t.Errorf("Content-Type = %q, the SDK's %q", g, w)
			}
			var g, wa any
			if err := json.Unmarshal(got.body, &g); err != nil {
				t.Fatalf("the Client's body is not JSON: %v\n%s", err, got.body)
			}
			if err := json.Unmarshal(want.body, &wa); err != nil {
				t.Fatalf("the SDK's body is not JSON: %v\n%s", err, want.body)
			}
			if !reflect.DeepEqual(g, wa) {
				t.Errorf("bodies differ\nClient: %s\nSDK:  %s", got.body, want.body)
			}
		})
	}
}

// TestWireInvalidUTF8 checks strings that are not UTF-8 reach DynamoDB as
// valid JSON with U+FFFD in place of each bad byte, as encoding/json
// writes them.
func TestWireInvalidUTF8(t *testing.T) {
	j := &jsonBuf{}
	j.str("a\xffb\xc3")
	var s string
	if err := json.Unmarshal(j.b, &s); err != nil {
		t.Fatalf("%s: %v", j.b, err)
	}
	want, _ := json.Marshal("a\xffb\xc3")
	if string(j.b) != string(want) || s != "a\ufffdb\ufffd" {
		t.Errorf("str = %s (%q), want %s", j.b, s, want)
	}
}

// TestWireDecodesAsSDK has the SDK and the Client decode the same answers and
// compares what they return.
func TestWireDecodesAsSDK(t *testing.T) {
	item := `{"pk":{"S":"KEY#k1"},"n":{"N":"42"},"b":{"B":"AAEC+v8="},"t":{"BOOL":true},"z":{"NULL":true},` +
		`"ss":{"SS":["x","y"]},"ns":{"NS":["1"]},"bs":{"BS":["AQ==","AgM="]},"m":{"M":{"in":{"L":[{"S":"é"},{"M":{}}]}}},"e":{"L":[]}}`
	capacity := `{"TableName":"t","CapacityUnits":2.5,"WriteCapacityUnits":2,"Table":{"CapacityUnits":1.5},"GlobalSecondaryIndexes":{"gsi3":{"CapacityUnits":1}}}`
	tests := []struct {
		name string
		body string
		call func(ctx context.Context, c api) (any, error)
	}{
		{"GetItem item", `{"Item":` + item + `,"ConsumedCapacity":` + capacity + `}`, func(ctx context.Context, c api) (any, error) {
			return c.GetItem(ctx, &GetItemInput{TableName: aws.String("t"), Key: wireKey()})
		}},
		{"GetItem none", `{}`, func(ctx context.Context, c api) (any, error) {
			return c.GetItem(ctx, &GetItemInput{TableName: aws.String("t"), Key: wireKey()})
		}},
		{"UpdateItem", `{"Attributes":` + item + `,"ConsumedCapacity":` + capacity + `}`, func(ctx context.Context, c api) (any, error) {
			return c.UpdateItem(ctx, &UpdateItemInput{TableName: aws.String("t"), Key: wireKey(), UpdateExpression: aws.String("ADD v :a")})
		}},
		{"PutItem", `{"ConsumedCapacity":` + capacity + `}`, func(ctx context.Context, c api) (any, error) {
			return c.PutItem(ctx, &PutItemInput{TableName: aws.String("t"), Item: wireKey()})
		}},
		{"BatchGetItem", `{"Responses":{"t":[` + item + `,{"pk":{"S":"x"}}],"u":[]},"UnprocessedKeys":{"t":{"Keys":[{"pk":{"S":"KEY#k2"},"sk":{"S":"USAGE"}}],"ConsistentRead":true,"ProjectionExpression":"#v","ExpressionAttributeNames":{"#v":"v"}}},"ConsumedCapacity":[` + capacity + `,{"TableName":"u","CapacityUnits":0.5}]}`,
			func(ctx context.Context, c api) (any, error) {
				return c.BatchGetItem(ctx, &BatchGetItemInput{RequestItems: map[string]KeysAndAttributes{"t": {Keys: []map[string]AttributeValue{wireKey()}}}})
			}},
		{"TransactWriteItems", `{"ConsumedCapacity":[` + capacity + `]}`, func(ctx context.Context, c api) (any, error) {
			return c.TransactWriteItems(ctx, &TransactWriteItemsInput{ClientRequestToken: aws.String("x"), TransactItems: []TransactWriteItem{{Put: &Put{TableName: aws.String("t"), Item: wireKey()}}}})
		}},
		{"DeleteItem", `{"Attributes":` + item + `,"ConsumedCapacity":` + capacity + `}`, func(ctx context.Context, c api) (any, error) {
			return c.DeleteItem(ctx, &DeleteItemInput{TableName: aws.String("t"), Key: wireKey()})
		}},
		{"Query page", `{"Items":[` + item + `,{"pk":{"S":"x"}}],"Count":2,"ScannedCount":5,"LastEvaluatedKey":{"pk":{"S":"KEY#k2"},"sk":{"S":"USAGE"}},"ConsumedCapacity":` + capacity + `}`,
			func(ctx context.Context, c api) (any, error) {
				return c.Query(ctx, &QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :p")})
			}},
		{"Query last page", `{"Items":[],"Count":0,"ScannedCount":0}`, func(ctx context.Context, c api) (any, error) {
			return c.Query(ctx, &QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :p")})
		}},
		{"BatchWriteItem", `{"UnprocessedItems":{"t":[{"PutRequest":{"Item":` + item + `}},{"DeleteRequest":{"Key":{"pk":{"S":"x"}}}}]},"ConsumedCapacity":[` + capacity + `]}`,
			func(ctx context.Context, c api) (any, error) {
				return c.BatchWriteItem(ctx, &BatchWriteItemInput{RequestItems: map[string][]WriteRequest{"t": {{DeleteRequest: &DeleteRequest{Key: wireKey()}}}}})
			}},
		{"DescribeTable", `{"Table":{"TableName":"t","TableStatus":"ACTIVE","ItemCount":3,"GlobalSecondaryIndexes":[{"IndexName":"g1","IndexStatus":"CREATING","Backfilling":true},{"IndexName":"g2"}]}}`,
			func(ctx context.Context, c api) (any, error) {
				return c.DescribeTable(ctx, &DescribeTableInput{TableName: aws.String("t")})
			}},
		{"CreateTable", `{"TableDescription":{"TableName":"t","TableStatus":"CREATING"}}`, func(ctx context.Context, c api) (any, error) {
			return c.CreateTable(ctx, &CreateTableInput{TableName: aws.String("t")})
		}},
		{"UpdateTimeToLive", `{"TimeToLiveSpecification":{"AttributeName":"expiresAt","Enabled":true}}`, func(ctx context.Context, c api) (any, error) {
			return c.UpdateTimeToLive(ctx, &UpdateTimeToLiveInput{TableName: aws.String("t"),
				TimeToLiveSpecification: &TimeToLiveSpecification{AttributeName: aws.String("expiresAt"), Enabled: aws.Bool(true)}})
		}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newWireServer(t, answer{200, tt.body})
			sdk, w := wireClients(t, srv.URL, nil)
			want, err := tt.call(ctx, sdk)
			if err != nil {
				t.Fatalf("SDK: %v", err)
			}
			got, err := tt.call(ctx, w)
			if err != nil {
				t.Fatalf("Client: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the Client decoded\n%#v\nthe SDK\n%#v", got, want)
			}
		})
	}
}

// TestWireErrors checks error answers become the SDK's typed errors with
// their details, that retryable ones are retried and others are not.
func TestWireErrors(t *testing.T) {
	const prefix = "com.amazonaws.dynamodb.v20120810#"
	update := func(ctx context.Context, c api) error {
		_, err := c.UpdateItem(ctx, &UpdateItemInput{TableName: aws.String("t"), Key: wireKey(), UpdateExpression: aws.String("ADD v :a")})
		return err
	}
	transact := func(ctx context.Context, c api) error {
		_, err := c.TransactWriteItems(ctx, &TransactWriteItemsInput{TransactItems: []TransactWriteItem{{Put: &Put{TableName: aws.String("t"), Item: wireKey()}}}})
		return err
	}
	tests := []struct {
		name     string
		answers  []answer
		call     func(context.Context, api) error
		requests int
		check    func(t *testing.T, err error)
	}{
		{"conditional check failed, with the item", []answer{{400, `{"__type":"` + prefix + `ConditionalCheckFailedException","message":"The conditional request failed","Item":{"v":{"N":"7"}}}`}},
			update, 1, func(t *testing.T, err error) {
				var ccf *ConditionalCheckFailedException
				if !errors.As(err, &ccf) {
					t.Fatalf("error %v is not a ConditionalCheckFailedException", err)
				}
				if n, ok := ccf.Item["v"].(*AttributeValueMemberN); !ok || n.Value != "7" || aws.ToString(ccf.Message) != "The conditional request failed" {
					t.Errorf("item %#v, message %q", ccf.Item, aws.ToString(ccf.Message))
				}
			}},
		{"transaction cancelled, with reasons", []answer{{400, `{"__type":"` + prefix + `TransactionCanceledException","Message":"Transaction cancelled","CancellationReasons":[{"Code":"None"},{"Code":"ConditionalCheckFailed","Message":"The conditional request failed","Item":{"pk":{"S":"x"}}},{"Code":"TransactionConflict"}]}`}},
			transact, 1, func(t *testing.T, err error) {
				var tc *TransactionCanceledException
				if !errors.As(err, &tc) {
					t.Fatalf("error %v is not a TransactionCanceledException", err)
				}
				codes := []string{}
				for _, r := range tc.CancellationReasons {
					codes = append(codes, aws.ToString(r.Code))
				}
				if strings.Join(codes, ",") != "None,ConditionalCheckFailed,TransactionConflict" || tc.CancellationReasons[1].Item["pk"] == nil {
					t.Errorf("reasons %v, second item %v", codes, tc.CancellationReasons[1].Item)
				}
			}},
		{"validation: a client error, not retried", []answer{{400, `{"__type":"` + prefix + `ValidationException","message":"bad expression"}`}},
			update, 1, func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" || ae.ErrorMessage() != "bad expression" || ae.ClientFault() {
					t.Fatalf("error %v: want a ValidationException API error of no modelled fault", err)
				}
			}},
		{"not found: typed", []answer{{400, `{"__type":"` + prefix + `ResourceNotFoundException","message":"no table"}`}},
			update, 1, func(t *testing.T, err error) {
				var nf *ResourceNotFoundException
				if !errors.As(err, &nf) || !nf.ClientFault() {
					t.Fatalf("error %v: want a ResourceNotFoundException, a client fault", err)
				}
			}},
		{"throttled, then served", []answer{{400, `{"__type":"` + prefix + `ThrottlingException","message":"slow down"}`}, {200, `{}`}},
			update, 2, func(t *testing.T, err error) {
				if err != nil {
					t.Fatalf("error %v after a retry", err)
				}
			}},
		{"server errors: three attempts", []answer{{500, `{"__type":"` + prefix + `InternalServerError","message":"oops"}`}},
			transact, 3, func(t *testing.T, err error) {
				var ae *APIError
				var ce *CallError
				if !errors.As(err, &ae) || ae.Code != "InternalServerError" || ae.ClientFault() || !errors.As(err, &ce) || ce.Attempts != 3 || ce.Operation != "TransactWriteItems" {
					t.Fatalf("error %v: want an InternalServerError after 3 attempts, not a client fault", err)
				}
			}},
		{"an error type in the header", []answer{{503, ``}},
			update, 3, func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.ErrorCode() != "HTTP 503" {
					t.Fatalf("error %v: want an API error naming the status", err)
				}
			}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newWireServer(t, tt.answers...)
			_, w := wireClients(t, srv.URL, nil)
			err := tt.call(ctx, w)
			tt.check(t, err)
			if n := srv.count(); n != tt.requests {
				t.Errorf("the server got %d requests, want %d", n, tt.requests)
			}
		})
	}
}

// TestWireKeepsToken checks a transaction without a token gets one, kept
// on the input so that a caller's retry repeats it (as the SDK does), and
// that the server's retry of one call repeats it too.
func TestWireKeepsToken(t *testing.T) {
	srv := newWireServer(t, answer{500, `{}`}, answer{200, `{}`})
	_, w := wireClients(t, srv.URL, nil)
	in := &TransactWriteItemsInput{TransactItems: []TransactWriteItem{{Put: &Put{TableName: aws.String("t"), Item: wireKey()}}}}
	if _, err := w.TransactWriteItems(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	token := aws.ToString(in.ClientRequestToken)
	if len(token) < 16 || len(token) > 36 {
		t.Fatalf("token %q: want 16 to 36 characters", token)
	}
	for i, r := range srv.requests {
		var body struct{ ClientRequestToken string }
		if err := json.Unmarshal(r.body, &body); err != nil || body.ClientRequestToken != token {
			t.Errorf("attempt %d sent token %q (%v), want %q", i+1, body.ClientRequestToken, err, token)
		}
	}
}

// TestWireSigns checks each request carries a SigV4 signature for the
// region and service, over the target header, that the SDK's signer
// reproduces from the request as sent, and the session token.
func TestWireSigns(t *testing.T) {
	srv := newWireServer(t)
	_, w := wireClients(t, srv.URL, map[string]string{"AWS_SESSION_TOKEN": "session-tok"})
	if _, err := w.GetItem(context.Background(), &GetItemInput{TableName: aws.String("t"), Key: wireKey()}); err != nil {
		t.Fatal(err)
	}
	got := srv.last(t)
	auth := got.header.Get("Authorization")
	date := got.header.Get("X-Amz-Date")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDWIRE/"+date[:8]+"/eu-west-1/dynamodb/aws4_request, SignedHeaders=") {
		t.Fatalf("Authorization = %q", auth)
	}
	for _, h := range []string{"host", "x-amz-date", "x-amz-target", "x-amz-security-token", "content-type"} {
		if !strings.Contains(auth, h) {
			t.Errorf("Authorization %q does not sign %s", auth, h)
		}
	}
	if got.header.Get("X-Amz-Security-Token") != "session-tok" {
		t.Errorf("X-Amz-Security-Token = %q", got.header.Get("X-Amz-Security-Token"))
	}
	// Sign the request as received again: the same signature.
	at, err := time.Parse("20060102T150405Z", date)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(got.body)))
	for _, h := range []string{"Content-Type", "X-Amz-Target", "Accept-Encoding"} {
		req.Header.Set(h, got.header.Get(h))
	}
	creds := aws.Credentials{AccessKeyID: "AKIDWIRE", SecretAccessKey: "wire-secret", SessionToken: "session-tok"}
	digest := sha256.Sum256(got.body)
	sum := hex.EncodeToString(digest[:])
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, sum, "dynamodb", "eu-west-1", at); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Authorization") != auth {
		t.Errorf("signature does not verify:\n got %s\nwant %s", auth, req.Header.Get("Authorization"))
	}
}

// TestWireMiddleware checks middlewares see every call in order, and may
// change the input.
func TestWireMiddleware(t *testing.T) {
	srv := newWireServer(t, answer{200, `{"Items":[],"Count":0}`})
	_, w := wireClients(t, srv.URL, nil)
	var seen []string
	c := w.With(
		func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
			seen = append(seen, "outer "+op)
			if g, ok := in.(*GetItemInput); ok {
				g.ReturnConsumedCapacity = ReturnConsumedCapacityTotal
			}
			return next(ctx)
		},
		func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error) {
			seen = append(seen, "inner "+op)
			out, err := next(ctx)
			if _, ok := out.(*GetItemOutput); op == "GetItem" && !ok {
				t.Errorf("GetItem's output is %T", out)
			}
			return out, err
		})
	ctx := context.Background()
	if _, err := c.GetItem(ctx, &GetItemInput{TableName: aws.String("t"), Key: wireKey()}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(srv.last(t).body), `"ReturnConsumedCapacity":"TOTAL"`) {
		t.Errorf("the middleware's change did not reach the request: %s", srv.last(t).body)
	}
	if _, err := c.Query(ctx, &QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]AttributeValue{":p": &AttributeValueMemberS{Value: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if want := "outer GetItem,inner GetItem,outer Query,inner Query"; strings.Join(seen, ",") != want {
		t.Errorf("middlewares saw %v, want %s", seen, want)
	}
}

// recordingHTTP answers every request with an error after noting its URL.
type recordingHTTP struct {
	mu   sync.Mutex
	urls []string
}

func (r *recordingHTTP) Do(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.urls = append(r.urls, req.URL.Scheme+"://"+req.URL.Host)
	return nil, errors.New("recorded")
}

// TestWireEndpoint checks the Client posts where the SDK would: the region's
// endpoint by the SDK's rules, or the configured one.
func TestWireEndpoint(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"region", map[string]string{"AWS_REGION": "eu-west-1"}, "https://dynamodb.eu-west-1.amazonaws.com"},
		{"China partition", map[string]string{"AWS_REGION": "cn-north-1"}, "https://dynamodb.cn-north-1.amazonaws.com.cn"},
		{"GovCloud", map[string]string{"AWS_REGION": "us-gov-west-1"}, "https://dynamodb.us-gov-west-1.amazonaws.com"},
		{"configured", map[string]string{"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000"}, "http://127.0.0.1:8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"AWS_ACCESS_KEY_ID": "AKIDWIRE", "AWS_SECRET_ACCESS_KEY": "wire-secret"}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := awsenv.FromEnv(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			rec := &recordingHTTP{}
			cfg.HTTPClient = rec
			sdk := &sdkClient{dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })}
			w, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			in := &GetItemInput{TableName: aws.String("t"), Key: wireKey()}
			_, _ = sdk.GetItem(context.Background(), in)
			_, _ = w.GetItem(context.Background(), in)
			if len(rec.urls) < 2 {
				t.Fatalf("requests to %v, want the SDK's and the Client's", rec.urls)
			}
			sdkURL, wireURL := rec.urls[0], rec.urls[len(rec.urls)-1]
			if sdkURL != tt.want || wireURL != tt.want {
				t.Errorf("SDK posted to %s, the Client to %s, want %s", sdkURL, wireURL, tt.want)
			}
		})
	}
}

// TestQueryPaginator checks pages are read in turn, each starting at the
// previous page's LastEvaluatedKey, until a page has none, and that the
// caller's input is left as it was.
func TestQueryPaginator(t *testing.T) {
	srv := newWireServer(t,
		answer{200, `{"Items":[{"n":{"N":"1"}}],"Count":1,"LastEvaluatedKey":{"pk":{"S":"a"}}}`},
		answer{200, `{"Items":[{"n":{"N":"2"}}],"Count":1,"LastEvaluatedKey":{"pk":{"S":"b"}}}`},
		answer{200, `{"Items":[],"Count":0}`})
	_, c := wireClients(t, srv.URL, nil)
	in := &QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :p"), Limit: aws.Int32(1),
		ExpressionAttributeValues: map[string]AttributeValue{":p": &AttributeValueMemberS{Value: "x"}}}
	p := NewQueryPaginator(c, in)
	var got []string
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			got = append(got, it["n"].(*AttributeValueMemberN).Value)
		}
	}
	if strings.Join(got, ",") != "1,2" || srv.count() != 3 {
		t.Errorf("items %v over %d pages, want 1,2 over 3", got, srv.count())
	}
	var starts []string
	for _, r := range srv.requests {
		var body struct {
			ExclusiveStartKey map[string]map[string]string
			Limit             int
		}
		if err := json.Unmarshal(r.body, &body); err != nil || body.Limit != 1 {
			t.Fatalf("request %s: %v", r.body, err)
		}
		starts = append(starts, body.ExclusiveStartKey["pk"]["S"])
	}
	if strings.Join(starts, ",") != ",a,b" {
		t.Errorf("pages started at %q, want none, a, b", starts)
	}
	if in.ExclusiveStartKey != nil {
		t.Errorf("the caller's input was changed: %v", in.ExclusiveStartKey)
	}
	if _, err := p.NextPage(context.Background()); err == nil {
		t.Error("NextPage after the last page did not fail")
	}
}
