// Command hellosdk is the hello-world function plus what every stipend
// function links and builds before its first /next: the AWS SDK's
// configuration and credentials (awsenv) and a DynamoDB client (package
// ddb, on shared/awsjson; no SDK service package is linked). make bench
// (Cold start) shows its start next to hello-world's: the part of the
// functions' cold start that reading the AWS configuration and building a
// signed JSON client cost, below which stipend's own code cannot go.
package main

import (
	"context"
	"log"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo/ddb"
)

func main() {
	cfg, err := awsenv.Load(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	db, err := ddb.New(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	lambda.Start(func(context.Context) (string, error) {
		_ = db
		return "hello", nil
	})
}
