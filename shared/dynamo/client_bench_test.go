package dynamo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stipend/stipend/shared/awsenv"
)

// BenchmarkCall measures the client's own cost of one DynamoDB call as the
// functions make it (awsenv's configuration, NewClientAt), answered at once
// by a local server, so what remains is encoding, signing, the HTTP round
// trip on a reused connection and decoding: a Ping (GetItem) and a
// reserve-shaped UpdateItem, sent by the SDK and by wire. The server's
// share is the same for both; "bare" is that share plus net/http's alone.
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
	s := New(NewClientAt(cfg, srv.URL), "bench", time.Hour)
	update := func() *dynamodb.UpdateItemInput {
		e := newExpression()
		e.add(attrCommitted, 1200)
		e.add("REQ#minute#202612051200", 1)
		e.set(e.name("R#r-0123456789") + " = " + e.value(str(`{"d":1764936000000,"c":1200,"u":{"p":300,"o":900},"e":{"m":"gpt-4o-mini","a":"/v1/chat/completions","h":"POST","t":1764935940000}}`)))
		e.cond("attribute_not_exists(" + e.name("R#r-0123456789") + ") AND cfg = " + e.value(num(3)))
		in := updateItemInput(s.ledgerUpdate("k1", e))
		in.ReturnValues = types.ReturnValueUpdatedNew
		in.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		return in
	}()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		db   api
	}{{"sdk", s.wire.sdk}, {"wire", s.wire}} {
		b.Run("GetItem/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("bench"), Key: ledgerKey("k1"), ConsistentRead: aws.Bool(true)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("UpdateItem/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.db.UpdateItem(ctx, update); err != nil {
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
