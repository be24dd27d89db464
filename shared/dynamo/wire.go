package dynamo

// wire: the client a Store calls. The request path's five operations
// (GetItem, PutItem, UpdateItem, BatchGetItem, TransactWriteItems) are sent
// by wire itself: the SDK's input struct appended to DynamoDB's JSON
// protocol (wirejson.go), signed with the SDK's own SigV4 signer, posted on
// the SDK client's HTTP client (awsenv's timeouts), and the response or
// error decoded into the SDK's output and error types. The SDK's
// middleware stack (serialisation by schema, endpoint rules, user agent,
// invocation ids, retry bookkeeping) cost about two thirds of the CPU of
// each call (BenchmarkCall); the proxy makes four calls a request. Every
// other operation is the SDK client's.
//
// What the SDK did that wire does too: TransactWriteItems gets a client
// request token when it has none (set on the input, so a caller retrying
// the same input repeats the token, as with the SDK); throttling, server
// errors and failed connections are retried, three attempts in all, with
// jittered exponential backoff; errors are the SDK's types
// (*types.ConditionalCheckFailedException with its Item,
// *types.TransactionCanceledException with its reasons, ...), wrapped in a
// *CallError naming the operation.

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/stipend/stipend/shared/awsjson"
)

// api is the DynamoDB operations a Store calls, with the SDK client's
// signatures.
type api interface {
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	UpdateTable(context.Context, *dynamodb.UpdateTableInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error)
	UpdateTimeToLive(context.Context, *dynamodb.UpdateTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// Middleware wraps each DynamoDB call of a Store: op is the operation's
// name ("UpdateItem"), in its *dynamodb.<op>Input (which the middleware
// may change before calling next), and next makes the call, returning its
// *dynamodb.<op>Output. Benchmarks count calls and capacity with it.
type Middleware func(ctx context.Context, op string, in any, next func(context.Context) (any, error)) (any, error)

// Option changes how New builds a Store.
type Option func(*Store)

// WithMiddleware wraps every call of the Store in m, the first given
// outermost.
func WithMiddleware(m ...Middleware) Option {
	return func(s *Store) { s.wire.mw = append(s.wire.mw, m...) }
}

// CallError is an error answer, or no answer, to a call wire sent:
// Unwrap gives the SDK's typed error (or the transport's).
type CallError struct {
	Operation string
	Status    int // 0 when no response arrived
	Attempts  int
	Err       error
}

func (e *CallError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("dynamodb %s (%d attempts): %v", e.Operation, e.Attempts, e.Err)
	}
	return fmt.Sprintf("dynamodb %s: status %d: %v", e.Operation, e.Status, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// errLegacyInput: an input uses parameters wire does not send; the SDK
// sends it instead.
var errLegacyInput = errors.New("legacy parameters")

// wire is the client of one Store; safe for concurrent use.
type wire struct {
	sdk *dynamodb.Client
	c   *awsjson.Client
	mw  []Middleware

	// endpointErr is why there is no endpoint to call (the region has no
	// DynamoDB endpoint): each call wire sends returns it.
	endpointErr error
}

func newWire(sdk *dynamodb.Client) *wire {
	o := sdk.Options()
	endpoint, err := endpointOf(o)
	return &wire{
		sdk: sdk, endpointErr: err,
		c: awsjson.New(awsjson.Config{
			Service: awsjson.Service{ // DynamoDB's JSON protocol
				SigningName: "dynamodb", TargetPrefix: "DynamoDB_20120810.", ContentType: "application/x-amz-json-1.0",
			},
			Endpoint: endpoint, Region: o.Region, Credentials: o.Credentials, HTTPClient: o.HTTPClient,
		}),
	}
}

// endpointOf is the URL of the DynamoDB endpoint o's client calls: the
// configured one (AWS_ENDPOINT_URL_DYNAMODB, a test's server), else the
// one the SDK's endpoint rules give for the region (a computation, no
// call).
func endpointOf(o dynamodb.Options) (string, error) {
	if o.BaseEndpoint != nil {
		return *o.BaseEndpoint, nil
	}
	e, err := o.EndpointResolverV2.ResolveEndpoint(context.Background(), dynamodb.EndpointParameters{
		Region: aws.String(o.Region), UseDualStack: aws.Bool(false), UseFIPS: aws.Bool(false),
		AccountIdEndpointMode: aws.String(string(aws.AccountIDEndpointModeDisabled)),
	})
	if err != nil {
		return "", fmt.Errorf("resolve the DynamoDB endpoint of region %q: %w", o.Region, err)
	}
	return e.URI.String(), nil
}

// invoke runs call through the middlewares.
func invoke[O any](ctx context.Context, w *wire, op string, in any, call func(context.Context) (*O, error)) (*O, error) {
	next := func(ctx context.Context) (any, error) { return call(ctx) }
	for i := len(w.mw) - 1; i >= 0; i-- {
		m, inner := w.mw[i], next
		next = func(ctx context.Context) (any, error) { return m(ctx, op, in, inner) }
	}
	out, err := next(ctx)
	o, _ := out.(*O)
	return o, err
}

// call makes op by wire: in encoded by enc, the answer decoded by dec; or
// by the SDK's sdk when the caller passes per-call SDK options or enc finds
// parameters wire does not send.
func call[I, O any](ctx context.Context, w *wire, op string, in *I, optFns []func(*dynamodb.Options),
	enc func(*I) ([]byte, error), dec func([]byte) (*O, error),
	sdk func(context.Context, *I, ...func(*dynamodb.Options)) (*O, error),
) (*O, error) {
	return invoke(ctx, w, op, in, func(ctx context.Context) (*O, error) {
		if len(optFns) > 0 {
			return sdk(ctx, in, optFns...)
		}
		body, err := enc(in)
		if errors.Is(err, errLegacyInput) {
			return sdk(ctx, in)
		}
		if err != nil {
			return nil, &CallError{Operation: op, Err: err}
		}
		res, err := w.send(ctx, op, body)
		if err != nil {
			return nil, err
		}
		return dec(res)
	})
}

func (w *wire) GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return call(ctx, w, "GetItem", in, optFns, encodeGetItem, decodeGetItem, w.sdk.GetItem)
}

func (w *wire) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return call(ctx, w, "PutItem", in, optFns, encodePutItem, func(res []byte) (*dynamodb.PutItemOutput, error) {
		attrs, cc, err := decodeWrite("PutItem", res)
		if err != nil {
			return nil, err
		}
		return &dynamodb.PutItemOutput{Attributes: attrs, ConsumedCapacity: cc}, nil
	}, w.sdk.PutItem)
}

func (w *wire) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return call(ctx, w, "UpdateItem", in, optFns, encodeUpdateItem, func(res []byte) (*dynamodb.UpdateItemOutput, error) {
		attrs, cc, err := decodeWrite("UpdateItem", res)
		if err != nil {
			return nil, err
		}
		return &dynamodb.UpdateItemOutput{Attributes: attrs, ConsumedCapacity: cc}, nil
	}, w.sdk.UpdateItem)
}

func (w *wire) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	return call(ctx, w, "BatchGetItem", in, optFns, encodeBatchGetItem, decodeBatchGetItem, w.sdk.BatchGetItem)
}

// TransactWriteItems gives in a client request token when it has none,
// before the middlewares see it, whoever sends it.
func (w *wire) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if in.ClientRequestToken == nil {
		token, err := awsjson.RequestToken()
		if err != nil {
			return nil, &CallError{Operation: "TransactWriteItems", Err: err}
		}
		in.ClientRequestToken = &token
	}
	return call(ctx, w, "TransactWriteItems", in, optFns, encodeTransactWriteItems, decodeTransactWriteItems, w.sdk.TransactWriteItems)
}

func (w *wire) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return invoke(ctx, w, "BatchWriteItem", in, func(ctx context.Context) (*dynamodb.BatchWriteItemOutput, error) {
		return w.sdk.BatchWriteItem(ctx, in, optFns...)
	})
}

func (w *wire) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	return invoke(ctx, w, "CreateTable", in, func(ctx context.Context) (*dynamodb.CreateTableOutput, error) {
		return w.sdk.CreateTable(ctx, in, optFns...)
	})
}

func (w *wire) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return invoke(ctx, w, "DeleteItem", in, func(ctx context.Context) (*dynamodb.DeleteItemOutput, error) {
		return w.sdk.DeleteItem(ctx, in, optFns...)
	})
}

func (w *wire) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return invoke(ctx, w, "DescribeTable", in, func(ctx context.Context) (*dynamodb.DescribeTableOutput, error) {
		return w.sdk.DescribeTable(ctx, in, optFns...)
	})
}

func (w *wire) Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return invoke(ctx, w, "Query", in, func(ctx context.Context) (*dynamodb.QueryOutput, error) {
		return w.sdk.Query(ctx, in, optFns...)
	})
}

func (w *wire) UpdateTable(ctx context.Context, in *dynamodb.UpdateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error) {
	return invoke(ctx, w, "UpdateTable", in, func(ctx context.Context) (*dynamodb.UpdateTableOutput, error) {
		return w.sdk.UpdateTable(ctx, in, optFns...)
	})
}

func (w *wire) UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error) {
	return invoke(ctx, w, "UpdateTimeToLive", in, func(ctx context.Context) (*dynamodb.UpdateTimeToLiveOutput, error) {
		return w.sdk.UpdateTimeToLive(ctx, in, optFns...)
	})
}

// send posts body as op and returns the body of a 2xx answer; anything
// else is a *CallError whose Err is the SDK's typed error (or the
// transport's). awsjson retries what the SDK would.
func (w *wire) send(ctx context.Context, op string, body []byte) ([]byte, error) {
	if w.endpointErr != nil {
		return nil, &CallError{Operation: op, Err: w.endpointErr}
	}
	res, err := w.c.Call(ctx, op, body)
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

var _ api = (*wire)(nil)
