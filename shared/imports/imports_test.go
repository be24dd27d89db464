package imports

import (
	"encoding/json"
	"io"
	"os"
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

// costlyInit are standard packages whose initialisation each cold start
// would pay, measured with GODEBUG=inittrace=1: runtime/metrics 0.09 to
// 0.13 ms (it came in once with a benchmark's allocation counter),
// encoding/gob 0.26 to 0.34 ms and net/rpc (aws-lambda-go's RPC mode,
// which the lambda.norpc tag leaves out), html/template and text/template
// (net/rpc's debug page), expvar and net/http/pprof (handlers registered
// at init).
var costlyInit = []string{"runtime/metrics", "encoding/gob", "net/rpc", "html/template", "text/template", "expvar", "net/http/pprof"}

// TestNoCostlyInit: the functions, built as the Makefile builds them
// (linux/arm64, no cgo, lambda.norpc), link none of costlyInit.
func TestNoCostlyInit(t *testing.T) {
	for _, fn := range []string{"proxy", "admin", "reset"} {
		cmd := exec.Command("go", "list", "-deps", "-tags", "lambda.norpc", module+"functions/"+fn)
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 50 {
			t.Fatalf("functions/%s: go list found only %d packages", fn, len(deps))
		}
		for _, d := range deps {
			for _, c := range costlyInit {
				if d == c {
					t.Errorf("functions/%s links %s, whose initialisation every cold start pays", fn, c)
				}
			}
		}
	}
}
