// Package template holds tests for the SAM template at the repo root.
//
// They check template.yaml with cfn-lint, assert the deployment shape the
// contract fixes (streaming proxy URL, arm64 provided.al2023, makefile builds,
// the monthly schedule, the table layout, managed log groups), confirm the
// Makefile has the build-<Function> targets `sam build` calls, and validate the
// sample events under events/.
package template
