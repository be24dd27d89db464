package dynamo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

// BenchmarkCall measures the client's own cost of one DynamoDB call as the
// functions make it (awsenv's configuration, ddb.NewAt), answered at once
// by a local server, so what remains is encoding, signing, the HTTP round
// trip on a reused connection and decoding: a Ping (GetItem) and a
// reserve-shaped UpdateItem, sent by package ddb and, for comparison, by
// the SDK's client (which stipend used before). The server's share is the
// same for both; "bare" is that share plus net/http's alone.
func BenchmarkCall(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = io.WriteString(w, `{"Attributes":{"v":{"N":"120"},"REQ#minute#202612051200":{"N":"3"}},"ConsumedCapacity":{"TableName":"bench","CapacityUnits":1}}`)
	}))
	defer srv.Close()
	cfg, err := awsenv.FromEnv(func(k string) string {
		return map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}[k]
	})
	if err != nil {
		b.Fatal(err)
	}
	s := New(ddb.NewAt(cfg, srv.URL), "bench", time.Hour)
	sdk := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	update := func() *ddb.UpdateItemInput {
		e := newExpression()
		e.add(attrCommitted, 1200)
		e.add("REQ#minute#202612051200", 1)
		e.set(e.name("R#r-0123456789") + " = " + e.value(str(`{"d":1764936000000,"c":1200,"u":{"p":300,"o":900},"e":{"m":"gpt-4o-mini","a":"/v1/chat/completions","h":"POST","t":1764935940000}}`)))
		e.cond("attribute_not_exists(" + e.name("R#r-0123456789") + ") AND cfg = " + e.value(num(3)))
		in := updateItemInput(s.ledgerUpdate("k1", e))
		in.ReturnValues = ddb.ReturnValueUpdatedNew
		in.ReturnConsumedCapacity = ddb.ReturnConsumedCapacityTotal
		return in
	}()
	ctx := context.Background()
	sdkUpdate := &dynamodb.UpdateItemInput{
		TableName: update.TableName, Key: sdkItem(update.Key), UpdateExpression: update.UpdateExpression,
		ConditionExpression: update.ConditionExpression, ExpressionAttributeNames: update.ExpressionAttributeNames,
		ExpressionAttributeValues: sdkItem(update.ExpressionAttributeValues),
		ReturnValues:              types.ReturnValueUpdatedNew, ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
	}
	sdkKey := sdkItem(ledgerKey("k1"))
	for _, c := range []struct {
		name           string
		get, updateOne func() error
	}{
		{"sdk", func() error {
			_, err := sdk.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("bench"), Key: sdkKey, ConsistentRead: aws.Bool(true)})
			return err
		}, func() error { _, err := sdk.UpdateItem(ctx, sdkUpdate); return err }},
		{"ddb", func() error {
			_, err := s.db.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String("bench"), Key: ledgerKey("k1"), ConsistentRead: aws.Bool(true)})
			return err
		}, func() error { _, err := s.db.UpdateItem(ctx, update); return err }},
	} {
		b.Run("GetItem/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("UpdateItem/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.updateOne(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		body := []byte(`{"TableName":"bench","Key":{"pk":{"S":"KEY#k1"},"sk":{"S":"USAGE"}}}`)
		for b.Loop() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader(body))
			req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// sdkItem converts the benchmark's items (strings and numbers) to the
// SDK's attribute values.
func sdkItem(m map[string]ddb.AttributeValue) map[string]types.AttributeValue {
	out := make(map[string]types.AttributeValue, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case *ddb.AttributeValueMemberS:
			out[k] = &types.AttributeValueMemberS{Value: v.Value}
		case *ddb.AttributeValueMemberN:
			out[k] = &types.AttributeValueMemberN{Value: v.Value}
		default:
			panic(fmt.Sprintf("sdkItem: %T", v))
		}
	}
	return out
}
