package imports

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/stipend/stipend/"

// rules: an import path prefix, and the package path prefixes (within the
// module) whose non-test code may import it.
var rules = []struct {
	dep     string
	allowed []string
}{
	// No binary links an SDK service package (their package init cost each
	// cold start about 5.5 ms): shared/dynamo/ddb and shared/secrets speak
	// DynamoDB's and Secrets Manager's JSON APIs through shared/awsjson;
	// tests use the SDK's clients to check them.
	{"github.com/aws/aws-sdk-go-v2/service/dynamodb", nil},
	{"github.com/aws/aws-sdk-go-v2/service/secretsmanager", nil},
	{"github.com/aws/aws-lambda-go", []string{"functions/"}},
	{"github.com/awslabs/aws-lambda-go-api-proxy", []string{"functions/"}},
	// tiktoken-go (and its loader's BPE files) only at generation time and
	// in tests: the binaries count with shared/tokenizer's embedded tables.
	{"github.com/pkoukk/tiktoken-go", []string{"shared/tokenizer/internal/gen"}},
}

func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	packages := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string // non-test imports only
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		packages++
		rel := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			for _, r := range rules {
				if !strings.HasPrefix(imp, r.dep) {
					continue
				}
				ok := false
				for _, a := range r.allowed {
					ok = ok || strings.HasPrefix(rel, a)
				}
				if !ok {
					t.Errorf("%s imports %s; only %v may", rel, imp, r.allowed)
				}
			}
		}
	}
	if packages < 20 {
		t.Fatalf("go list found only %d packages", packages)
	}
}
