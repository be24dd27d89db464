// Command hello is the smallest aws-lambda-go function: the baseline that
// the bootstraps' cold start (process start to the first Runtime API
// /next) is compared with, in functions/lambdatest and in make bench.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"
)

func main() {
	lambda.Start(func(context.Context) (string, error) { return "hello", nil })
}
