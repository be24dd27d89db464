// Package lambdatest proves that stipend's Lambda path works without AWS.
//
// Its tests build the real bootstrap binaries (./functions/proxy, admin and
// reset, with -tags lambda.norpc, as the Makefile does, but for the host's
// GOOS/GOARCH) and run them as subprocesses against a small in-test
// implementation of the Lambda Runtime API (invocation/next, /response,
// /error, init/error), with DynamoDB Local and moto_server (Secrets Manager)
// standing in for AWS and a fake OpenAI upstream. The sample events in
// events/ are the invocations, and every one of them is exercised.
//
// The fake runtime reads a response body as it arrives and timestamps every
// read, so the tests check both the streamed wire format (a JSON prelude,
// 8 NUL bytes, then the body) and that a streamed body reaches Lambda event
// by event rather than at the end.
//
// The package has only tests; this file exists for the package comment.
package lambdatest
