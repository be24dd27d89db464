// Package config reads and validates the environment of stipend's three
// functions (proxy, admin, reset): every setting a function takes from its
// environment is read here, once, with its default, and a bad value is an
// error naming the variable. Variables lists them all, for the README and
// for the test that holds template.yaml to the same names.
//
// The AWS SDK's own variables (AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB,
// AWS_ENDPOINT_URL_SECRETS_MANAGER, credentials, ...) are read by the SDK
// (package awsenv), not here.
package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/rollover"
)

// Getenv looks a variable up; os.Getenv in main, a map in tests. An empty
// value counts as unset.
type Getenv func(name string) string

// Names of the functions, as Variable.Functions uses them.
const (
	FuncProxy = "proxy"
	FuncAdmin = "admin"
	FuncReset = "reset"
)

// Variable documents one environment variable.
type Variable struct {
	Name      string
	Functions []string // the functions that read it
	Default   string   // what an unset variable means
	Meaning   string
}

// Variables returns every variable the loaders read, in the order the
// README's table lists them.
func Variables() []Variable {
	all := []string{FuncProxy, FuncAdmin, FuncReset}
	return []Variable{
		{"STIPEND_TABLE", all, "`stipend`", "the DynamoDB table"},
		{"STIPEND_EVENT_RETENTION_DAYS", all, "`30`", "days a usage event is kept before DynamoDB's TTL removes it (whichever function writes it); a positive whole number"},
		{"STIPEND_PROXY_ADDR", []string{FuncProxy}, "`127.0.0.1:8080`", "listen address outside Lambda"},
		{"STIPEND_PROFILE_ADDR", []string{FuncProxy}, "unset (none)", "outside Lambda, an address to serve CPU and heap profiles on (GET /debug/pprof/profile?seconds=N, /heap, /allocs), for benchmarks; never set it where others can reach it"},
		{"STIPEND_KEY_CACHE_TTL", []string{FuncProxy}, "`5s`", "how long key, user, organisation and provider settings are cached (a Go duration)"},
		{"STIPEND_SECRET_CACHE_TTL", []string{FuncProxy}, "`5m`", "how long provider API keys are cached (a Go duration)"},
		{"STIPEND_RESERVATION_TTL", []string{FuncProxy}, "`20m`", "when an unsettled reservation counts as abandoned; keep it above the function timeout"},
		{"STIPEND_RESERVE_TIMEOUT", []string{FuncProxy}, "`3s`", "how long the limits store may take before a request is forwarded, else 503 (fail fast)"},
		{"STIPEND_MAX_LOGGED_BODY_BYTES", []string{FuncProxy}, "`" + strconv.Itoa(ledger.DefaultBodyBytes) + "`", "how much of each body an event keeps for keys that log bodies, at most " + strconv.Itoa(ledger.MaxBodyBytes)},
		{"STIPEND_SECRET_PREFIX", []string{FuncProxy, FuncAdmin}, "`stipend/providers/`", "Secrets Manager name prefix of provider API keys (the admin API writes them; the proxy's readiness check probes it)"},
		{"GOMEMLIMIT", []string{FuncProxy}, "3/4 of `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` in Lambda, else 32 MiB", "the Go runtime's soft memory limit; set, the runtime applies it and the proxy sets none"},
		{"GOGC", []string{FuncProxy}, "`" + strconv.Itoa(DefaultGCPercent) + "`", "the Go collector's heap growth between collections (percent); the soft memory limit still bounds the heap. Set, the runtime applies it and the proxy sets none"},
		{"GOMAXPROCS", []string{FuncProxy}, "`1` in Lambda, else the runtime's default", "how many threads run Go code at once; set, the runtime applies it and the proxy sets none"},
		{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", []string{FuncProxy}, "set by Lambda", "the function's memory (MB), from which the proxy's memory limit is derived; its presence means Lambda (GOMAXPROCS)"},
		{"STIPEND_ADMIN_ADDR", []string{FuncAdmin}, "`127.0.0.1:8081`", "listen address outside Lambda"},
		{"STIPEND_ADMIN_KEY", []string{FuncAdmin}, "unset", "the admin bearer key itself (local use); this or `STIPEND_ADMIN_KEY_SECRET` is required"},
		{"STIPEND_ADMIN_KEY_SECRET", []string{FuncAdmin}, "unset", "Secrets Manager secret holding the admin bearer key, re-read every minute (what template.yaml sets)"},
		{"STIPEND_KEY_ENCRYPTION_SECRET", []string{FuncAdmin}, "unset (`ANYTIME_BY_VIEWER` keys refused)", "Secrets Manager secret whose SHA-256 seals `ANYTIME_BY_VIEWER` keys"},
		{"STIPEND_RESET_TASK", []string{FuncReset}, "`monthly`", "outside Lambda, the task one run performs: `monthly` or `stale`"},
	}
}

// Common holds what every function reads.
type Common struct {
	// Table is the DynamoDB table (STIPEND_TABLE, default "stipend").
	Table string
	// EventRetention is how long events are kept
	// (STIPEND_EVENT_RETENTION_DAYS, default 30 days).
	EventRetention time.Duration
}

// Proxy is the proxy function's configuration.
type Proxy struct {
	Common
	// Addr is the listen address outside Lambda (STIPEND_PROXY_ADDR,
	// default 127.0.0.1:8080).
	Addr string
	// ProfileAddr (STIPEND_PROFILE_ADDR, default unset) is where the proxy
	// serves its profiles outside Lambda (server.ServeProfiles); unset, it
	// serves none. Lambda ignores it.
	ProfileAddr string
	// KeyCacheTTL (STIPEND_KEY_CACHE_TTL, default 5s) bounds how stale a
	// cached key, user, organisation or provider setting may be.
	KeyCacheTTL time.Duration
	// SecretCacheTTL (STIPEND_SECRET_CACHE_TTL, default 5m) bounds how
	// stale a cached provider API key may be.
	SecretCacheTTL time.Duration
	// ReservationTTL (STIPEND_RESERVATION_TTL, default 20m, positive) is
	// when an unsettled reservation counts as abandoned.
	ReservationTTL time.Duration
	// ReserveTimeout (STIPEND_RESERVE_TIMEOUT, default 3s, positive) bounds
	// the limits store's work before a request is forwarded; past it the
	// client gets 503 and nothing is charged.
	ReserveTimeout time.Duration
	// MaxLoggedBodyBytes (STIPEND_MAX_LOGGED_BODY_BYTES, default
	// ledger.DefaultBodyBytes, 1 to ledger.MaxBodyBytes) is how much of a
	// body an event keeps.
	MaxLoggedBodyBytes int
	// SecretPrefix (STIPEND_SECRET_PREFIX, default "stipend/providers/") is
	// where provider API keys live; the readiness check probes a name under
	// it, which the proxy's IAM policy allows reading.
	SecretPrefix string
	// MemoryLimit is the soft memory limit main sets: 0 when GOMEMLIMIT is
	// set (the runtime applies it), else 3/4 of
	// AWS_LAMBDA_FUNCTION_MEMORY_SIZE (MB) when set, else 32 MiB.
	MemoryLimit int64
	// GCPercent is the collector's target heap growth main sets: 0 when
	// GOGC is set (the runtime applies it), else DefaultGCPercent.
	GCPercent int
	// MaxProcs is the GOMAXPROCS main sets: 1 in Lambda
	// (AWS_LAMBDA_FUNCTION_MEMORY_SIZE set) unless GOMAXPROCS is set,
	// else 0 (the runtime's own choice). See LambdaMaxProcs.
	MaxProcs int
}

// Admin is the admin function's configuration.
type Admin struct {
	Common
	// Addr is the listen address outside Lambda (STIPEND_ADMIN_ADDR,
	// default 127.0.0.1:8081).
	Addr string
	// AdminKey (STIPEND_ADMIN_KEY) is the admin bearer key itself; when
	// empty, AdminKeySecret (STIPEND_ADMIN_KEY_SECRET) names the secret
	// holding it. One of them is required.
	AdminKey       string
	AdminKeySecret string
	// SecretPrefix (STIPEND_SECRET_PREFIX, default "stipend/providers/")
	// names provider API keys in Secrets Manager: prefix + provider id.
	SecretPrefix string
	// KeyEncryptionSecret (STIPEND_KEY_ENCRYPTION_SECRET) seals
	// ANYTIME_BY_VIEWER keys; empty refuses that retrieval method.
	KeyEncryptionSecret string
}

// Reset is the scheduled function's configuration.
type Reset struct {
	Common
	// Task (STIPEND_RESET_TASK, default monthly) is what a run outside
	// Lambda performs; in Lambda each event names its own.
	Task rollover.Task
}

// Defaults.
const (
	DefaultTable        = "stipend"
	DefaultRetention    = 30 * 24 * time.Hour
	DefaultProxyAddr    = "127.0.0.1:8080"
	DefaultAdminAddr    = "127.0.0.1:8081"
	DefaultSecretPrefix = "stipend/providers/"
	// DefaultMemoryLimit is the proxy's soft memory limit outside Lambda.
	// The tokenizer's tables are embedded read-only data, no longer about
	// 24 MB of live heap, and the live heap measured by make bench (gctrace,
	// 50 concurrent streams and 32 clients) is 4-5 MB with the collector's
	// goal at about 10 MB: at 32 MiB the limit never drives collections in
	// that run, and it still holds the Go-managed memory plus the ~15 MB of
	// binary pages and stacks under the 64 MB RSS target in a burst. (It was
	// 48 MiB while the tables were live: 40 MiB made the collector run often
	// enough to add latency to streams.)
	DefaultMemoryLimit = 32 << 20
	// DefaultGCPercent is the proxy's GOGC. The live heap is small (4-5 MB
	// in make bench) and nearly everything a request allocates dies with
	// it, so at Go's default of 100 the collector ran every few megabytes
	// of allocation: its work was about a tenth of the proxy's CPU per
	// request (make bench -cpuprofile). At 400 it runs a quarter as often;
	// the heap may grow to about five times the live data, and the soft
	// memory limit (above) still makes it collect sooner when that would
	// not fit.
	DefaultGCPercent = 400
	// LambdaMaxProcs is the proxy's GOMAXPROCS in Lambda. An execution
	// environment serves one request at a time, and at 128 MB it gets
	// about a fourteenth of a vCPU's time however many vCPUs it sees: a
	// second P adds no parallelism, only threads that wake, spin and park
	// (futex calls, work stealing) each time a network read completes.
	// make bench -only cpu (which runs the proxy with it) measured 0.95
	// and 1.04 ms of proxy CPU per request at GOMAXPROCS=1 against 1.19
	// and 1.29 ms at the runtime's default of 2 on a 2-CPU machine, at
	// the same throughput.
	LambdaMaxProcs = 1
)

// LoadProxy reads the proxy's configuration. The error names every bad
// variable.
func LoadProxy(getenv Getenv) (Proxy, error) {
	r := reader{getenv: getenv}
	c := Proxy{
		Common:             r.common(),
		Addr:               r.str("STIPEND_PROXY_ADDR", DefaultProxyAddr),
		ProfileAddr:        getenv("STIPEND_PROFILE_ADDR"),
		KeyCacheTTL:        r.duration("STIPEND_KEY_CACHE_TTL", 5*time.Second, false),
		SecretCacheTTL:     r.duration("STIPEND_SECRET_CACHE_TTL", 5*time.Minute, false),
		ReservationTTL:     r.duration("STIPEND_RESERVATION_TTL", 20*time.Minute, true),
		ReserveTimeout:     r.duration("STIPEND_RESERVE_TIMEOUT", 3*time.Second, true),
		MaxLoggedBodyBytes: r.intIn("STIPEND_MAX_LOGGED_BODY_BYTES", ledger.DefaultBodyBytes, 1, ledger.MaxBodyBytes, "a number of bytes"),
		SecretPrefix:       r.str("STIPEND_SECRET_PREFIX", DefaultSecretPrefix),
		MemoryLimit:        DefaultMemoryLimit,
		GCPercent:          DefaultGCPercent,
	}
	if getenv("GOGC") != "" {
		c.GCPercent = 0
	}
	inLambda := getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") != ""
	if getenv("GOMAXPROCS") == "" && inLambda {
		c.MaxProcs = LambdaMaxProcs
	}
	if getenv("GOMEMLIMIT") != "" {
		c.MemoryLimit = 0
	} else if inLambda {
		c.MemoryLimit = int64(r.intIn("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0, 1, 1<<20, "a number of megabytes")) << 20 * 3 / 4
	}
	return c, r.err()
}

// LoadAdmin reads the admin API's configuration. The error names every bad
// variable.
func LoadAdmin(getenv Getenv) (Admin, error) {
	r := reader{getenv: getenv}
	c := Admin{
		Common:              r.common(),
		Addr:                r.str("STIPEND_ADMIN_ADDR", DefaultAdminAddr),
		AdminKey:            getenv("STIPEND_ADMIN_KEY"),
		AdminKeySecret:      getenv("STIPEND_ADMIN_KEY_SECRET"),
		SecretPrefix:        r.str("STIPEND_SECRET_PREFIX", DefaultSecretPrefix),
		KeyEncryptionSecret: getenv("STIPEND_KEY_ENCRYPTION_SECRET"),
	}
	if c.AdminKey == "" && c.AdminKeySecret == "" {
		r.errs = append(r.errs, errors.New("set STIPEND_ADMIN_KEY (the admin bearer key) or STIPEND_ADMIN_KEY_SECRET (the secret holding it)"))
	}
	return c, r.err()
}

// LoadReset reads the scheduled function's configuration. The error names
// every bad variable.
func LoadReset(getenv Getenv) (Reset, error) {
	r := reader{getenv: getenv}
	c := Reset{Common: r.common(), Task: rollover.Task(r.str("STIPEND_RESET_TASK", string(rollover.MonthlyClose)))}
	if c.Task != rollover.MonthlyClose && c.Task != rollover.StaleReservations {
		r.errs = append(r.errs, fmt.Errorf("STIPEND_RESET_TASK=%q is not %s or %s", c.Task, rollover.MonthlyClose, rollover.StaleReservations))
	}
	return c, r.err()
}

// reader collects one error per bad variable.
type reader struct {
	getenv Getenv
	errs   []error
}

func (r *reader) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %w", errors.Join(r.errs...))
}

func (r *reader) common() Common {
	days := r.intIn("STIPEND_EVENT_RETENTION_DAYS", 30, 1, 100*365, "a positive number of days")
	return Common{
		Table:          r.str("STIPEND_TABLE", DefaultTable),
		EventRetention: time.Duration(days) * 24 * time.Hour,
	}
}

func (r *reader) str(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

// duration reads a Go duration ("5s"); negative is refused, and zero too
// when positive is set.
func (r *reader) duration(name string, def time.Duration, positive bool) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (positive && d == 0) {
		want := "a duration like 5s or 2m"
		if positive {
			want = "a positive duration like 5s or 2m"
		}
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not %s", name, v, want))
		return def
	}
	return d
}

// intIn reads a whole number from lo to hi; what describes it in errors.
func (r *reader) intIn(name string, def, lo, hi int, what string) int {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not %s from %d to %d", name, v, what, lo, hi))
		return def
	}
	return n
}
