package dynamo

import (
	"context"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// countingResolver answers https://<region>.example and counts its calls.
type countingResolver struct{ calls int }

func (c *countingResolver) ResolveEndpoint(_ context.Context, p dynamodb.EndpointParameters) (smithyendpoints.Endpoint, error) {
	c.calls++
	return smithyendpoints.Endpoint{URI: url.URL{Scheme: "https", Host: aws.ToString(p.Region) + ".example"}}, nil
}

// TestResolvedOnce checks that the client's endpoint is resolved by the
// SDK's rules once per set of parameters that matter, and again when they
// change or account-based endpoints are on.
func TestResolvedOnce(t *testing.T) {
	disabled := aws.String(string(aws.AccountIDEndpointModeDisabled))
	params := func(region string, mode *string) dynamodb.EndpointParameters {
		return dynamodb.EndpointParameters{Region: aws.String(region), AccountIdEndpointMode: mode, ResourceArn: aws.String("arn:" + region)}
	}
	tests := []struct {
		name      string
		calls     []dynamodb.EndpointParameters
		wantCalls int
		wantHost  string // of the last answer
	}{
		{"same parameters", []dynamodb.EndpointParameters{params("eu-west-1", disabled), params("eu-west-1", disabled), params("eu-west-1", disabled)}, 1, "eu-west-1.example"},
		{"region changes", []dynamodb.EndpointParameters{params("eu-west-1", disabled), params("us-east-1", disabled)}, 2, "us-east-1.example"},
		{"account endpoints on", []dynamodb.EndpointParameters{params("eu-west-1", aws.String("preferred")), params("eu-west-1", aws.String("preferred"))}, 2, "eu-west-1.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &countingResolver{}
			r := &resolvedOnce{next: next}
			var last smithyendpoints.Endpoint
			for _, p := range tt.calls {
				e, err := r.ResolveEndpoint(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				last = e
			}
			if next.calls != tt.wantCalls || last.URI.Host != tt.wantHost {
				t.Errorf("rules ran %d times, last host %q; want %d, %q", next.calls, last.URI.Host, tt.wantCalls, tt.wantHost)
			}
		})
	}
}

// TestNewClientResolvesRegionalEndpoint checks the configured client's
// endpoint on AWS (no override) and with one (DynamoDB Local).
func TestNewClientResolvesRegionalEndpoint(t *testing.T) {
	for _, tt := range []struct {
		name, base, want string
	}{
		{"aws", "", "https://dynamodb.eu-west-1.amazonaws.com"},
		{"local", "http://127.0.0.1:8000", "http://127.0.0.1:8000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var o dynamodb.Options
			cfg := aws.Config{Region: "eu-west-1"}
			if tt.base != "" {
				cfg.BaseEndpoint = aws.String(tt.base)
			}
			c := NewClient(cfg)
			o = c.Options()
			p := dynamodb.EndpointParameters{Region: aws.String(o.Region), Endpoint: o.BaseEndpoint,
				AccountIdEndpointMode: aws.String(string(o.AccountIDEndpointMode)), UseFIPS: aws.Bool(false), UseDualStack: aws.Bool(false)}
			for range 2 {
				e, err := o.EndpointResolverV2.ResolveEndpoint(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				if got := e.URI.String(); got != tt.want {
					t.Errorf("endpoint = %s, want %s", got, tt.want)
				}
			}
		})
	}
}
