// Package imports holds the tests that keep the module's package rules: only
// the storage package talks to DynamoDB, only the secrets package (and the
// wiring in functions/ and infra/) to Secrets Manager, and only functions/
// knows it runs in Lambda (imports_test.go); which of our own packages each
// package may import (layers_test.go); and that every package has a doc
// comment saying its job (doc_test.go).
package imports
