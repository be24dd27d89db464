package ddb

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// BenchmarkQueryPage decodes one Query page of 2,000 report-shaped items
// (about 400 kB, as the admin's reports read them), by Client and by the
// SDK's client, answered at once by a local server.
func BenchmarkQueryPage(b *testing.B) {
	var page strings.Builder
	page.WriteString(`{"Count":2000,"ScannedCount":2000,"Items":[`)
	for i := range 2000 {
		if i > 0 {
			page.WriteByte(',')
		}
		fmt.Fprintf(&page, `{"pk":{"S":"AGG#key-%04d"},"sk":{"S":"DAY#2026-12-%02d#gpt-4o-mini"},"cost":{"N":"%d"},"prompt":{"N":"%d"},`+
			`"completion":{"N":"%d"},"requests":{"N":"%d"},"errors":{"N":"0"},"latencySum":{"N":"%d"},"model":{"S":"gpt-4o-mini"}}`,
			i%100, 1+i%28, 1200*i, 300*i, 900*i, i, 5000*i)
	}
	page.WriteString(`],"LastEvaluatedKey":{"pk":{"S":"AGG#key-0099"},"sk":{"S":"DAY#2026-12-28#gpt-4o-mini"}}}`)
	body := page.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	sdk, c := wireClients(b, srv.URL, nil)
	in := &QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]AttributeValue{":p": &AttributeValueMemberS{Value: "AGG#key-0001"}}}
	sdkIn := &dynamodb.QueryInput{TableName: aws.String("t"), KeyConditionExpression: aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": &types.AttributeValueMemberS{Value: "AGG#key-0001"}}}
	for _, tt := range []struct {
		name  string
		query func() (int, error)
	}{
		{"ddb", func() (int, error) { out, err := c.Query(context.Background(), in); return len(out.Items), err }},
		{"sdk", func() (int, error) { out, err := sdk.c.Query(context.Background(), sdkIn); return len(out.Items), err }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if n, err := tt.query(); err != nil || n != 2000 {
					b.Fatal(n, err)
				}
			}
		})
	}
}
