// Package imports holds the test that keeps the module's import rules: only
// the storage package talks to DynamoDB, only the secrets package (and the
// wiring in functions/ and infra/) to Secrets Manager, and only functions/
// knows it runs in Lambda.
package imports
