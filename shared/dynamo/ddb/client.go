package ddb

// The Client: each call's input appended to DynamoDB's JSON protocol
// (json.go), posted, signed and retried by awsjson (SigV4, the SDK's
// standard retryer's codes, three attempts with jittered backoff, the
// X-Amz-Crc32 check), its answer decoded into the output or the typed
// error. What the SDK's client did that Client does too: TransactWriteItems
// gets a client request token when it has none (set on the input, so a
// caller retrying the same input repeats the token); errors are wrapped in
// a *CallError naming the operation.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/awsjson"
)

// Middleware wraps each call of a Client: op is the operation's name
// ("UpdateItem"), in its *<op>Input (which the middleware may change
// before calling next), and next makes the call, returning its
// *<op>Output. Benchmarks count calls and capacity with it.
type Middleware func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error)

// Client calls DynamoDB. It is safe for concurrent use.
type Client struct {
	c  *awsjson.Client
	mw []Middleware
}

// New returns a Client for cfg's region, credentials and HTTP client, at
// the endpoint cfg configures for DynamoDB (AWS_ENDPOINT_URL_DYNAMODB,
// else AWS_ENDPOINT_URL; see awsenv), else the region's.
func New(ctx context.Context, cfg aws.Config) (*Client, error) {
	url, err := awsjson.ServiceEndpoint(ctx, cfg, "DynamoDB", "dynamodb")
	if err != nil {
		return nil, fmt.Errorf("dynamodb: %w", err)
	}
	return NewAt(cfg, url), nil
}

// NewAt returns a Client calling DynamoDB at url (DynamoDB Local in tests
// and `make dev`) with cfg's region, credentials and HTTP client.
func NewAt(cfg aws.Config, url string) *Client {
	return &Client{c: awsjson.New(awsjson.Config{
		Service: awsjson.Service{ // DynamoDB's JSON protocol
			SigningName: "dynamodb", TargetPrefix: "DynamoDB_20120810.", ContentType: "application/x-amz-json-1.0",
		},
		Endpoint: strings.TrimSuffix(url, "/"), Region: cfg.Region, Credentials: cfg.Credentials, HTTPClient: cfg.HTTPClient,
	})}
}

// With returns a copy of c whose calls also go through m, the first given
// outermost, inside c's own middlewares.
func (c *Client) With(m ...Middleware) *Client {
	return &Client{c: c.c, mw: append(append([]Middleware(nil), c.mw...), m...)}
}

// call makes op: in encoded by enc, through the middlewares, posted, and
// the answer decoded by dec.
func call[I, O any](ctx context.Context, c *Client, op string, in *I, enc func(*I) ([]byte, error), dec func([]byte) (*O, error)) (*O, error) {
	next := func(ctx context.Context) (any, error) {
		body, err := enc(in)
		if err != nil {
			return nil, &CallError{Operation: op, Err: err}
		}
		res, err := c.send(ctx, op, body)
		if err != nil {
			return nil, err
		}
		return dec(res)
	}
	for i := len(c.mw) - 1; i >= 0; i-- {
		m, inner := c.mw[i], next
		next = func(ctx context.Context) (any, error) { return m(ctx, op, in, inner) }
	}
	out, err := next(ctx)
	o, _ := out.(*O)
	return o, err
}

// send posts body as op and returns the body of a 2xx answer; anything
// else is a *CallError.
func (c *Client) send(ctx context.Context, op string, body []byte) ([]byte, error) {
	res, err := c.c.Call(ctx, op, body)
	var ae *awsjson.Error
	if !errors.As(err, &ae) {
		return res, err
	}
	ce := &CallError{Operation: op, Status: ae.Status, Attempts: ae.Attempts, Err: ae.Err}
	if ae.Status != 0 {
		ce.Err = decodeError(ae)
	}
	return nil, ce
}

// GetItem reads one item.
func (c *Client) GetItem(ctx context.Context, in *GetItemInput) (*GetItemOutput, error) {
	return call(ctx, c, "GetItem", in, encodeGetItem, decodeGetItem)
}

// PutItem writes one item.
func (c *Client) PutItem(ctx context.Context, in *PutItemInput) (*PutItemOutput, error) {
	return call(ctx, c, "PutItem", in, encodePutItem, decodeWrite[PutItemOutput]("PutItem"))
}

// UpdateItem changes one item.
func (c *Client) UpdateItem(ctx context.Context, in *UpdateItemInput) (*UpdateItemOutput, error) {
	return call(ctx, c, "UpdateItem", in, encodeUpdateItem, decodeWrite[UpdateItemOutput]("UpdateItem"))
}

// DeleteItem deletes one item.
func (c *Client) DeleteItem(ctx context.Context, in *DeleteItemInput) (*DeleteItemOutput, error) {
	return call(ctx, c, "DeleteItem", in, encodeDeleteItem, decodeWrite[DeleteItemOutput]("DeleteItem"))
}

// BatchGetItem reads up to 100 items.
func (c *Client) BatchGetItem(ctx context.Context, in *BatchGetItemInput) (*BatchGetItemOutput, error) {
	return call(ctx, c, "BatchGetItem", in, encodeBatchGetItem, decodeBatchGetItem)
}

// BatchWriteItem writes up to 25 items.
func (c *Client) BatchWriteItem(ctx context.Context, in *BatchWriteItemInput) (*BatchWriteItemOutput, error) {
	return call(ctx, c, "BatchWriteItem", in, encodeBatchWriteItem, decodeBatchWriteItem)
}

// TransactWriteItems gives in a client request token when it has none,
// before the middlewares see it.
func (c *Client) TransactWriteItems(ctx context.Context, in *TransactWriteItemsInput) (*TransactWriteItemsOutput, error) {
	if in.ClientRequestToken == nil {
		token, err := awsjson.RequestToken()
		if err != nil {
			return nil, &CallError{Operation: "TransactWriteItems", Err: err}
		}
		in.ClientRequestToken = &token
	}
	return call(ctx, c, "TransactWriteItems", in, encodeTransactWriteItems, decodeTransactWriteItems)
}

// Query reads one page of a partition.
func (c *Client) Query(ctx context.Context, in *QueryInput) (*QueryOutput, error) {
	return call(ctx, c, "Query", in, encodeQuery, decodeQuery)
}

// CreateTable creates a table.
func (c *Client) CreateTable(ctx context.Context, in *CreateTableInput) (*CreateTableOutput, error) {
	return call(ctx, c, "CreateTable", in, encodeJSON, decodeJSON[CreateTableOutput]("CreateTable"))
}

// DescribeTable describes a table.
func (c *Client) DescribeTable(ctx context.Context, in *DescribeTableInput) (*DescribeTableOutput, error) {
	return call(ctx, c, "DescribeTable", in, encodeJSON, decodeJSON[DescribeTableOutput]("DescribeTable"))
}

// UpdateTable changes a table.
func (c *Client) UpdateTable(ctx context.Context, in *UpdateTableInput) (*UpdateTableOutput, error) {
	return call(ctx, c, "UpdateTable", in, encodeJSON, decodeJSON[UpdateTableOutput]("UpdateTable"))
}

// UpdateTimeToLive turns a table's TTL on or off.
func (c *Client) UpdateTimeToLive(ctx context.Context, in *UpdateTimeToLiveInput) (*UpdateTimeToLiveOutput, error) {
	return call(ctx, c, "UpdateTimeToLive", in, encodeJSON, decodeJSON[UpdateTimeToLiveOutput]("UpdateTimeToLive"))
}

// QueryAPI is what a QueryPaginator calls.
type QueryAPI interface {
	Query(context.Context, *QueryInput) (*QueryOutput, error)
}

// QueryPaginator reads a query's pages in turn, as the SDK's does.
type QueryPaginator struct {
	client    QueryAPI
	in        QueryInput
	nextKey   map[string]AttributeValue
	firstPage bool
}

// NewQueryPaginator returns a paginator over in's pages, starting at its
// ExclusiveStartKey; in is copied.
func NewQueryPaginator(client QueryAPI, in *QueryInput) *QueryPaginator {
	return &QueryPaginator{client: client, in: *in, nextKey: in.ExclusiveStartKey, firstPage: true}
}

// HasMorePages reports whether NextPage has a page to read.
func (p *QueryPaginator) HasMorePages() bool { return p.firstPage || len(p.nextKey) != 0 }

// NextPage reads the next page.
func (p *QueryPaginator) NextPage(ctx context.Context) (*QueryOutput, error) {
	if !p.HasMorePages() {
		return nil, errors.New("dynamodb query: no more pages")
	}
	in := p.in
	in.ExclusiveStartKey = p.nextKey
	out, err := p.client.Query(ctx, &in)
	if err != nil {
		return nil, err
	}
	p.firstPage = false
	p.nextKey = out.LastEvaluatedKey
	return out, nil
}
