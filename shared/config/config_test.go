package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/rollover"
)

func env(kv map[string]string) Getenv { return func(k string) string { return kv[k] } }

func TestLoadProxy(t *testing.T) {
	def := Proxy{
		Common:             Common{Table: "stipend", EventRetention: 30 * 24 * time.Hour},
		Addr:               "127.0.0.1:8080",
		KeyCacheTTL:        5 * time.Second,
		SecretCacheTTL:     5 * time.Minute,
		ReservationTTL:     20 * time.Minute,
		ReserveTimeout:     3 * time.Second,
		MaxLoggedBodyBytes: ledger.DefaultBodyBytes,
		SecretPrefix:       "stipend/providers/",
		MemoryLimit:        32 << 20,
		GCPercent:          400,
	}
	with := func(f func(*Proxy)) Proxy { c := def; f(&c); return c }
	tests := []struct {
		name    string
		env     map[string]string
		want    Proxy
		wantErr []string // substrings; each bad variable is named
	}{
		{"defaults", nil, def, nil},
		{"every variable", map[string]string{
			"STIPEND_TABLE": "t1", "STIPEND_EVENT_RETENTION_DAYS": "7", "STIPEND_PROXY_ADDR": ":9",
			"STIPEND_KEY_CACHE_TTL": "1s", "STIPEND_SECRET_CACHE_TTL": "0s", "STIPEND_RESERVATION_TTL": "30m",
			"STIPEND_RESERVE_TIMEOUT": "2s", "STIPEND_MAX_LOGGED_BODY_BYTES": "100", "STIPEND_SECRET_PREFIX": "p/", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		}, Proxy{
			Common: Common{Table: "t1", EventRetention: 7 * 24 * time.Hour}, Addr: ":9",
			KeyCacheTTL: time.Second, SecretCacheTTL: 0, ReservationTTL: 30 * time.Minute,
			ReserveTimeout: 2 * time.Second, MaxLoggedBodyBytes: 100, SecretPrefix: "p/", MemoryLimit: 192 << 20, GCPercent: 400, MaxProcs: 1,
		}, nil},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "100MiB", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"},
			with(func(c *Proxy) { c.MemoryLimit, c.MaxProcs = 0, 1 }), nil},
		{"GOMAXPROCS wins", map[string]string{"GOMAXPROCS": "2", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"},
			with(func(c *Proxy) { c.MemoryLimit = 96 << 20 }), nil},
		{"GOGC wins", map[string]string{"GOGC": "100"}, with(func(c *Proxy) { c.GCPercent = 0 }), nil},
		{"retention zero", map[string]string{"STIPEND_EVENT_RETENTION_DAYS": "0"}, def, []string{"STIPEND_EVENT_RETENTION_DAYS=\"0\""}},
		{"retention words", map[string]string{"STIPEND_EVENT_RETENTION_DAYS": "thirty"}, def, []string{"STIPEND_EVENT_RETENTION_DAYS"}},
		{"bad durations", map[string]string{"STIPEND_KEY_CACHE_TTL": "5", "STIPEND_SECRET_CACHE_TTL": "-1m", "STIPEND_RESERVATION_TTL": "0s"},
			def, []string{"STIPEND_KEY_CACHE_TTL=\"5\"", "STIPEND_SECRET_CACHE_TTL=\"-1m\"", "STIPEND_RESERVATION_TTL=\"0s\""}},
		{"body too large", map[string]string{"STIPEND_MAX_LOGGED_BODY_BYTES": "999999999"}, def, []string{"STIPEND_MAX_LOGGED_BODY_BYTES"}},
		{"memory size", map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}, def, []string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadProxy(env(tt.env))
			checkErr(t, err, tt.wantErr)
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LoadProxy = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadAdmin(t *testing.T) {
	common := Common{Table: "stipend", EventRetention: 30 * 24 * time.Hour}
	tests := []struct {
		name    string
		env     map[string]string
		want    Admin
		wantErr []string
	}{
		{"key only", map[string]string{"STIPEND_ADMIN_KEY": "k"},
			Admin{Common: common, Addr: "127.0.0.1:8081", AdminKey: "k", SecretPrefix: "stipend/providers/"}, nil},
		{"every variable", map[string]string{
			"STIPEND_TABLE": "t", "STIPEND_EVENT_RETENTION_DAYS": "90", "STIPEND_ADMIN_ADDR": ":1",
			"STIPEND_ADMIN_KEY_SECRET": "arn:s", "STIPEND_SECRET_PREFIX": "x/", "STIPEND_KEY_ENCRYPTION_SECRET": "arn:e",
		}, Admin{
			Common: Common{Table: "t", EventRetention: 90 * 24 * time.Hour}, Addr: ":1",
			AdminKeySecret: "arn:s", SecretPrefix: "x/", KeyEncryptionSecret: "arn:e",
		}, nil},
		{"no admin key", nil, Admin{}, []string{"STIPEND_ADMIN_KEY", "STIPEND_ADMIN_KEY_SECRET"}},
		{"bad retention and no key", map[string]string{"STIPEND_EVENT_RETENTION_DAYS": "-3"}, Admin{},
			[]string{"STIPEND_EVENT_RETENTION_DAYS=\"-3\"", "STIPEND_ADMIN_KEY_SECRET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadAdmin(env(tt.env))
			checkErr(t, err, tt.wantErr)
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LoadAdmin = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadReset(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Reset
		wantErr []string
	}{
		{"defaults", nil, Reset{Common: Common{Table: "stipend", EventRetention: 30 * 24 * time.Hour}, Task: rollover.MonthlyClose}, nil},
		{"every variable", map[string]string{"STIPEND_TABLE": "t", "STIPEND_EVENT_RETENTION_DAYS": "2", "STIPEND_RESET_TASK": "stale"},
			Reset{Common: Common{Table: "t", EventRetention: 48 * time.Hour}, Task: rollover.StaleReservations}, nil},
		{"unknown task", map[string]string{"STIPEND_RESET_TASK": "weekly"}, Reset{}, []string{"STIPEND_RESET_TASK=\"weekly\""}},
		{"bad retention", map[string]string{"STIPEND_EVENT_RETENTION_DAYS": "1.5"}, Reset{}, []string{"STIPEND_EVENT_RETENTION_DAYS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadReset(env(tt.env))
			checkErr(t, err, tt.wantErr)
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LoadReset = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func checkErr(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one naming %v", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
}

// TestVariablesCoverLoaders checks that Variables documents every variable a
// loader reads, and nothing else: the loaders run with a getenv that records
// what they ask for.
func TestVariablesCoverLoaders(t *testing.T) {
	documented := map[string][]string{}
	for _, v := range Variables() {
		documented[v.Name] = v.Functions
	}
	for fn, load := range map[string]func(Getenv) error{
		FuncProxy: func(g Getenv) error { _, err := LoadProxy(g); return err },
		FuncAdmin: func(g Getenv) error { _, err := LoadAdmin(g); return err },
		FuncReset: func(g Getenv) error { _, err := LoadReset(g); return err },
	} {
		asked := map[string]bool{}
		_ = load(func(k string) string { asked[k] = true; return "" })
		// GOMEMLIMIT set skips AWS_LAMBDA_FUNCTION_MEMORY_SIZE; ask again with it unset... and set.
		_ = load(func(k string) string {
			asked[k] = true
			if k == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" {
				return "128"
			}
			return ""
		})
		for k := range asked {
			if !slices.Contains(documented[k], fn) {
				t.Errorf("the %s loader reads %s, which Variables does not list for it", fn, k)
			}
		}
		for name, fns := range documented {
			if slices.Contains(fns, fn) && !asked[name] {
				t.Errorf("Variables lists %s for %s, whose loader never reads it", name, fn)
			}
		}
	}
}

// TestTemplateVariablesAreKnown parses the Environment sections of
// template.yaml and checks that every variable it sets for a function is one
// that function's loader reads.
func TestTemplateVariablesAreKnown(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	logical := map[string]string{"ProxyFunction": FuncProxy, "AdminFunction": FuncAdmin, "ResetFunction": FuncReset}
	set := templateVariables(string(raw))
	if len(set["Globals"]) == 0 || len(set["ProxyFunction"]) == 0 || len(set["ResetFunction"]) == 0 {
		t.Fatalf("parsed too little from template.yaml: %v", set)
	}
	known := map[string][]string{}
	for _, v := range Variables() {
		known[v.Name] = v.Functions
	}
	for owner, names := range set {
		fns := []string{logical[owner]}
		if owner == "Globals" {
			fns = []string{FuncProxy, FuncAdmin, FuncReset}
		} else if fns[0] == "" {
			t.Errorf("template.yaml sets environment variables on %s, which is not a known function", owner)
			continue
		}
		for _, name := range names {
			for _, fn := range fns {
				if !slices.Contains(known[name], fn) {
					t.Errorf("template.yaml sets %s for %s, which shared/config does not read for it", name, fn)
				}
			}
		}
	}
}

// templateVariables returns the names under each "Variables:" block of
// tmpl, keyed by "Globals" or the resource's logical id.
func templateVariables(tmpl string) map[string][]string {
	resource := regexp.MustCompile(`^  ([A-Za-z0-9]+):\s*$`)
	entry := regexp.MustCompile(`^\s+([A-Z][A-Z0-9_]*):`)
	out := map[string][]string{}
	owner, varsIndent := "", -1
	for _, line := range strings.Split(tmpl, "\n") {
		indent := len(line) - len(strings.TrimLeft(line, " "))
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case indent == 0:
			owner, varsIndent = "", -1
			if trimmed == "Globals:" {
				owner = "Globals"
			}
			continue
		}
		if m := resource.FindStringSubmatch(line); m != nil && owner != "Globals" {
			owner, varsIndent = m[1], -1
			continue
		}
		if varsIndent >= 0 && indent <= varsIndent {
			varsIndent = -1
		}
		if trimmed == "Variables:" {
			varsIndent = indent
			continue
		}
		if varsIndent >= 0 {
			if m := entry.FindStringSubmatch(line); m != nil {
				out[owner] = append(out[owner], m[1])
			}
		}
	}
	return out
}

// TestREADMEListsVariables keeps the README's table of variables complete.
func TestREADMEListsVariables(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range Variables() {
		if !strings.Contains(string(raw), "| `"+v.Name+"` |") {
			t.Errorf("README.md has no table row for %s", v.Name)
		}
	}
}
