// Command proxy is stipend's OpenAI-compatible proxy. In AWS Lambda it serves
// a function URL in RESPONSE_STREAM mode through lambdaurl; anywhere else it
// listens on STIPEND_PROXY_ADDR (default 127.0.0.1:8080). It only wires: its
// environment is read by config.LoadProxy (see shared/config for every
// variable and its default), and the AWS SDK reads its own (AWS_REGION,
// AWS_ENDPOINT_URL_DYNAMODB, ...).
//
// GET /healthz answers without touching anything; GET /readyz reports
// whether DynamoDB and Secrets Manager answer. Outside Lambda,
// STIPEND_PROFILE_ADDR serves CPU and heap profiles (make bench -cpuprofile).
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/aws/aws-lambda-go/lambdaurl"

	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/config"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/nbconn"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/secrets"
	"github.com/stipend/stipend/shared/server"
	"github.com/stipend/stipend/shared/tokenizer"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := config.LoadProxy(os.Getenv)
	if err != nil {
		log.Error("proxy cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	// Without a limit the heap may grow to twice the live data before a
	// collection.
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	// Collect less often than every doubling of the small live heap (see
	// config.DefaultGCPercent); the memory limit still bounds the heap.
	if cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	// One P in Lambda (config.LambdaMaxProcs).
	if cfg.MaxProcs > 0 {
		runtime.GOMAXPROCS(cfg.MaxProcs)
	}
	h, err := build(context.Background(), cfg, log)
	if err != nil {
		log.Error("proxy cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	if server.InLambda() {
		// aws-lambda-go's Runtime API client clones http.DefaultTransport
		// as Start begins: dialing through nbconn keeps its calls from
		// waking the runtime's monitor thread (see shared/nbconn).
		nbconn.WrapTransport(http.DefaultTransport.(*http.Transport))
		lambdaurl.Start(h)
		return
	}
	if cfg.ProfileAddr != "" {
		go func() {
			if err := server.ServeProfiles(context.Background(), cfg.ProfileAddr, log); err != nil {
				log.Error("profiles unavailable", slog.String("cause", err.Error()))
			}
		}()
	}
	if err := server.Serve(context.Background(), cfg.Addr, h, log); err != nil {
		log.Error("proxy stopped", slog.String("cause", err.Error()))
		os.Exit(1)
	}
}

func build(ctx context.Context, cfg config.Proxy, log *slog.Logger) (http.Handler, error) {
	awsCfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	prices, err := pricing.Default()
	if err != nil {
		return nil, err
	}
	tok := tokenizer.New()
	// Open the tokenizer now (in Lambda, during init) so no request waits for
	// it: its tables are embedded and read in place, so this only compiles
	// the pre-tokenizer pattern (well under a millisecond).
	if _, err := tok.Count(tokenizer.O200kBase, "warm up"); err != nil {
		return nil, err
	}
	db, err := ddb.New(ctx, awsCfg)
	if err != nil {
		return nil, err
	}
	// Headers read a limited counter's item alone, its shards kept as long
	// as the configuration is.
	store := dynamo.New(db, cfg.Table, cfg.EventRetention, dynamo.WithSteadyReads(cfg.KeyCacheTTL))
	mgr, err := secrets.NewManager(ctx, awsCfg)
	if err != nil {
		return nil, err
	}
	h := proxy.New(proxy.Config{
		Keys:           store,
		Providers:      store,
		Limiter:        store,
		Owners:         store,
		History:        store,
		Strikes:        store,
		Secrets:        secrets.NewCache(mgr, cfg.SecretCacheTTL),
		Prices:         prices,
		Tokenizer:      tok,
		KeyTTL:         cfg.KeyCacheTTL,
		ReservationTTL: cfg.ReservationTTL,
		ReserveTimeout: cfg.ReserveTimeout,
		Log:            log,

		MaxLoggedBodyBytes: cfg.MaxLoggedBodyBytes,
	})
	return server.WithReadiness(h, log,
		server.Check{Name: "dynamodb", Ping: store.Ping},
		server.Check{Name: "secretsmanager", Ping: func(ctx context.Context) error { return mgr.Ping(ctx, cfg.SecretPrefix+"readyz") }},
	), nil
}
