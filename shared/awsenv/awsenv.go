// Package awsenv loads the AWS SDK configuration every function shares, with
// explicit timeouts on the SDK's HTTP client. Local stacks point the SDK at
// DynamoDB Local and a Secrets Manager stand-in with the SDK's own variables
// AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL_SECRETS_MANAGER.
package awsenv

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
)

// Load returns the SDK configuration from the environment. Each SDK call
// gets at most 10 s, and a dial at most 3 s.
func Load(ctx context.Context) (aws.Config, error) {
	client := awshttp.NewBuildableClient().
		WithTimeout(10 * time.Second).
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 3 * time.Second })
	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(client))
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}
