// Package secrecy proves that stipend's secrets stay secret: its test runs
// proxy and admin traffic through the real handlers on DynamoDB Local with
// known provider, proxy and admin keys, then searches every log line, event,
// audit entry, error body and admin response for those keys and for their
// distinctive tails (what a provider's "Incorrect API key provided:
// sk-...wxyz" message would give away).
//
// The package has only tests; this file exists for the package comment.
package secrecy
