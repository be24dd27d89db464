// Command hellosdk is the hello-world function plus what every stipend
// function links and builds before its first /next: the AWS SDK's
// configuration (awsenv) and its DynamoDB client. (Secrets Manager is
// called through shared/secrets' own small client, which links no SDK
// service package, so it is not part of this floor.) make bench (Cold
// start) shows its start next to hello-world's: the part of the functions'
// cold start that is the SDK's package initialisation and client
// construction, which no change to stipend's own code can remove.
package main

import (
	"context"
	"log"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
)

func main() {
	cfg, err := awsenv.Load(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	db := dynamo.NewClient(cfg)
	lambda.Start(func(context.Context) (string, error) {
		_ = db
		return "hello", nil
	})
}
