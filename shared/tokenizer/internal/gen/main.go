// Command gen writes the tokenizer's rank tables (tables/*.bpe) from the BPE
// files that github.com/pkoukk/tiktoken-go-loader embeds, in the stored form
// of package bpetable. It runs only at generation time (go generate in
// shared/tokenizer); the binaries embed its output and never parse a
// .tiktoken file. TestTablesMatchSource checks that the committed tables are
// what this command writes.
//
// Usage: go run ./internal/gen -out tables
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/stipend/stipend/shared/tokenizer/internal/bpetable"
)

func main() {
	out := flag.String("out", "tables", "directory to write <encoding>.bpe into")
	flag.Parse()
	for _, name := range []string{"o200k_base", "cl100k_base"} {
		if err := write(*out, name); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}

func write(dir, name string) error {
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe(name + ".tiktoken")
	if err != nil {
		return fmt.Errorf("loading %s: %w", name, err)
	}
	data, err := bpetable.Build(ranks)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return os.WriteFile(filepath.Join(dir, name+".bpe"), data, 0o644)
}
