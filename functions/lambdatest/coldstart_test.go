package lambdatest

import (
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack"
)

// TestBootstrapsReachNext starts each bootstrap, and the hello-world
// function make bench compares their cold start with, with the Lambda
// runtime's environment and the least each needs to start (no DynamoDB, no
// Secrets Manager: nothing is contacted during init), and checks that each
// ends its init by asking the Runtime API for an invocation, without an
// init error and without exiting. How long that takes is measured by make
// bench (Cold start), not here.
func TestBootstrapsReachNext(t *testing.T) {
	env := []string{
		"AWS_REGION=" + localstack.Region,
		"AWS_ACCESS_KEY_ID=" + localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + localstack.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"STIPEND_TABLE=" + table,
		"STIPEND_ADMIN_KEY=sk-admin-lambdatest-0123456789abcdef0123456789abcdef",
	}
	for _, name := range append([]string{helloWorld}, functionNames...) {
		t.Run(name, func(t *testing.T) {
			fn := startFunction(t, name, env)
			select {
			case <-fn.api.reached:
			case <-fn.exited:
				t.Fatalf("%s exited before asking for an invocation: %v\n%s", name, fn.waitErr, fn.output.String())
			case <-time.After(invokeTimeout):
				t.Fatalf("%s did not ask for an invocation within %v", name, invokeTimeout)
			}
		})
	}
}
