package imports

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// layers says which of the module's own packages each package's non-test
// code may import. A package missing here fails the test: a new package
// states its place. The shape, bottom to top:
//
//   - leaves (money, cache, sse, apierror, testclock, ...) import nothing of ours;
//   - domain packages (apikey, ledger, budget, pricing, provider, user, ...)
//     import leaves and each other, never storage, HTTP handlers or wiring;
//   - services (proxy, admin, rollover) declare the interfaces they need and
//     import domain packages, never dynamo: they never know item layouts;
//   - dynamo implements those interfaces; only wiring (functions/*, infra/*)
//     and dynamotest import it;
//   - nothing in shared/ imports functions/ or infra/.
var layers = map[string][]string{
	// leaves
	"shared/apierror":            nil,
	"shared/h1client":            {"shared/nbconn"},
	"shared/awsenv":              {"shared/h1client"}, // the AWS calls' HTTP client
	"shared/awsjson":             nil,
	"shared/cache":               nil,
	"shared/imports":             nil,
	"shared/jsonenc":             nil,
	"shared/jsonenc/jsonenctest": nil, // tests' random values for jsonenc's encoders
	"shared/jsonscan":            nil,
	"shared/keyvault":            nil,
	"shared/money":               nil,
	"shared/nbconn":              nil,
	"shared/pages":               nil,
	"shared/server":              {"shared/nbconn"},
	"shared/sse":                 nil,
	"shared/storeerr":            nil,
	"shared/template":            nil,
	"shared/testclock":           nil,
	"shared/tokenizer":           {"shared/jsonscan", "shared/tokenizer/internal/bpetable"},

	"shared/tokenizer/internal/bpetable": nil,
	"shared/tokenizer/internal/gen":      {"shared/tokenizer/internal/bpetable"}, // a go generate command
	// domain
	"shared/apikey":   {"shared/money"},
	"shared/ledger":   {"shared/jsonenc", "shared/money"},
	"shared/auditlog": nil,
	"shared/user":     {"shared/money"},
	"shared/provider": {"shared/jsonscan", "shared/ledger"},
	"shared/pricing":  {"shared/ledger", "shared/money"},
	// a go generate command
	"shared/pricing/internal/gen": {"shared/pricing"},
	"shared/budget":               {"shared/apikey", "shared/ledger", "shared/money"},
	"shared/secrets":              {"shared/awsjson", "shared/cache"},
	"shared/config":               {"shared/ledger", "shared/rollover"},
	// services
	"shared/proxy": {"shared/apierror", "shared/apikey", "shared/budget", "shared/cache", "shared/h1client", "shared/jsonscan", "shared/ledger",
		"shared/money", "shared/pages", "shared/pricing", "shared/provider", "shared/sse", "shared/user"},
	"shared/admin/request":  {"shared/apierror"},
	"shared/admin/response": {"shared/apierror", "shared/storeerr"},
	"shared/admin/form": {"shared/admin/request", "shared/admin/response", "shared/apierror", "shared/apikey",
		"shared/budget", "shared/money", "shared/pricing", "shared/provider", "shared/storeerr", "shared/user"},
	"shared/admin/audit": {"shared/admin/request", "shared/apierror", "shared/apikey", "shared/auditlog"},
	"shared/admin/roster": {"shared/admin/audit", "shared/admin/form", "shared/admin/request", "shared/admin/response",
		"shared/apierror", "shared/apikey", "shared/money", "shared/storeerr", "shared/user"},
	"shared/admin/reporting": {"shared/admin/request", "shared/admin/response", "shared/apierror", "shared/apikey",
		"shared/budget", "shared/ledger", "shared/money", "shared/storeerr", "shared/user"},
	"shared/admin/litellm": {"shared/admin/audit", "shared/admin/form", "shared/admin/request", "shared/admin/response",
		"shared/apierror", "shared/apikey", "shared/ledger", "shared/money", "shared/storeerr", "shared/user"},
	"shared/admin": {"shared/admin/audit", "shared/admin/form", "shared/admin/litellm", "shared/admin/reporting",
		"shared/admin/request", "shared/admin/response", "shared/admin/roster", "shared/apierror", "shared/apikey",
		"shared/auditlog", "shared/budget", "shared/ledger", "shared/money", "shared/pages", "shared/pricing",
		"shared/provider", "shared/user"},
	"shared/rollover": {"shared/apikey", "shared/budget", "shared/ledger", "shared/user"},
	// storage
	"shared/dynamo/ddb":        {"shared/awsjson"}, // DynamoDB's API, without the SDK's service package
	"shared/dynamo":            {"shared/apikey", "shared/auditlog", "shared/budget", "shared/dynamo/ddb", "shared/jsonenc", "shared/ledger", "shared/money", "shared/provider", "shared/storeerr", "shared/user"},
	"shared/dynamo/dynamotest": {"shared/dynamo", "shared/dynamo/ddb"},
}

// wiring packages may import anything in shared/ (and infra/ its own).
var wiring = []string{"functions/", "infra/"}

// pending lists today's known violations, each to be removed by the change
// that fixes it; the test fails if a listed violation is gone, so the list
// only shrinks.
var pending = map[string][]string{}

func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seenPending := map[string]bool{}
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		isWiring := slices.ContainsFunc(wiring, func(w string) bool { return strings.HasPrefix(rel, w) })
		allowed, known := layers[rel]
		if !known && !isWiring {
			t.Errorf("%s has no place in layers (shared/imports/layers_test.go): say what it may import", rel)
			continue
		}
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			switch {
			case isWiring && strings.HasPrefix(dep, "shared/"):
			case isWiring && strings.HasPrefix(dep, "infra/") && strings.HasPrefix(rel, "infra/"):
			case slices.Contains(allowed, dep):
			case slices.Contains(pending[rel], dep):
				seenPending[rel+" -> "+dep] = true
			default:
				t.Errorf("%s imports %s, which its layer does not allow (see layers in shared/imports/layers_test.go)", rel, dep)
			}
		}
	}
	for rel, deps := range pending {
		for _, dep := range deps {
			if !seenPending[rel+" -> "+dep] {
				t.Errorf("%s no longer imports %s: remove it from pending", rel, dep)
			}
		}
	}
}
