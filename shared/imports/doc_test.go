package imports

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestEveryPackageHasADocComment keeps the rule that each package says its
// one job in a doc comment ("// Package x ...").
func TestEveryPackageHasADocComment(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath, Name, Doc string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		want := "Package " + p.Name + " "
		if p.Name == "main" {
			want = "" // a command's doc comment starts with its own name
		}
		if p.Doc == "" || !strings.HasPrefix(p.Doc, want) {
			t.Errorf("%s: doc comment %q, want one that starts %q", strings.TrimPrefix(p.ImportPath, module), p.Doc, want)
		}
	}
}
