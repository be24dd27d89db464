// Command proxy is stipend's OpenAI-compatible proxy. In AWS Lambda it serves
// a function URL in RESPONSE_STREAM mode through lambdaurl; anywhere else it
// listens on STIPEND_PROXY_ADDR (default 127.0.0.1:8080). It only wires.
//
// Environment: STIPEND_TABLE (DynamoDB table, default "stipend"),
// STIPEND_EVENT_RETENTION_DAYS (default 30), STIPEND_KEY_CACHE_TTL (default
// 5s), STIPEND_SECRET_CACHE_TTL (default 5m), STIPEND_RESERVATION_TTL (when
// an unsettled reservation counts as abandoned, default 20m; keep it above the
// function timeout), STIPEND_RESERVE_TIMEOUT (how long the limits store may
// take before a request is forwarded, else 503, default 3s),
// STIPEND_MAX_LOGGED_BODY_BYTES (how much of each body
// an event keeps for keys that log bodies, default 65536, at most 163840),
// STIPEND_PROXY_ADDR, and the
// AWS SDK's own variables (AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB, ...).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/pricing"
	"github.com/stipend/stipend/shared/proxy"
	"github.com/stipend/stipend/shared/secrets"
	"github.com/stipend/stipend/shared/server"
	"github.com/stipend/stipend/shared/tokenizer"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	setMemoryLimit()
	h, err := build(context.Background(), log)
	if err != nil {
		log.Error("proxy cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	if server.InLambda() {
		lambdaurl.Start(h)
		return
	}
	if err := server.Serve(context.Background(), server.Env("STIPEND_PROXY_ADDR", "127.0.0.1:8080"), h, log); err != nil {
		log.Error("proxy stopped", slog.String("cause", err.Error()))
		os.Exit(1)
	}
}

func build(ctx context.Context, log *slog.Logger) (*proxy.Handler, error) {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	retentionDays, err := strconv.Atoi(server.Env("STIPEND_EVENT_RETENTION_DAYS", "30"))
	if err != nil || retentionDays <= 0 {
		return nil, fmt.Errorf("STIPEND_EVENT_RETENTION_DAYS must be a positive number of days")
	}
	keyTTL, err := server.EnvDuration("STIPEND_KEY_CACHE_TTL", 5*time.Second)
	if err != nil {
		return nil, err
	}
	secretTTL, err := server.EnvDuration("STIPEND_SECRET_CACHE_TTL", 5*time.Minute)
	if err != nil {
		return nil, err
	}
	prices, err := pricing.Default()
	if err != nil {
		return nil, err
	}
	reservationTTL, err := server.EnvDuration("STIPEND_RESERVATION_TTL", 20*time.Minute)
	if err != nil {
		return nil, err
	}
	reserveTimeout, err := server.EnvDuration("STIPEND_RESERVE_TIMEOUT", 3*time.Second)
	if err != nil {
		return nil, err
	}
	maxLogged, err := strconv.Atoi(server.Env("STIPEND_MAX_LOGGED_BODY_BYTES", strconv.Itoa(ledger.DefaultBodyBytes)))
	if err != nil || maxLogged <= 0 || maxLogged > ledger.MaxBodyBytes {
		return nil, fmt.Errorf("STIPEND_MAX_LOGGED_BODY_BYTES must be a number of bytes from 1 to %d", ledger.MaxBodyBytes)
	}
	tok := tokenizer.New()
	// Load the tokenizer now (in Lambda, during init) so no request waits for it.
	if _, err := tok.Count(tokenizer.O200kBase, "warm up"); err != nil {
		return nil, err
	}
	// Loading parses a 3.6 MB table into maps; hand the parse's garbage back
	// to the OS instead of carrying it as resident memory.
	debug.FreeOSMemory()
	store := dynamo.New(dynamo.NewClient(cfg), server.Env("STIPEND_TABLE", "stipend"), time.Duration(retentionDays)*24*time.Hour)
	return proxy.New(proxy.Config{
		Keys:           store,
		Providers:      store,
		Limiter:        store,
		Owners:         store,
		History:        store,
		Secrets:        secrets.NewCache(secrets.NewManager(secretsmanager.NewFromConfig(cfg)), secretTTL),
		Prices:         prices,
		Tokenizer:      tok,
		KeyTTL:         keyTTL,
		ReservationTTL: reservationTTL,
		ReserveTimeout: reserveTimeout,
		Log:            log,

		MaxLoggedBodyBytes: maxLogged,
	}), nil
}

// setMemoryLimit gives the garbage collector a soft memory limit, unless
// GOMEMLIMIT sets one: the tokenizer's tables stay resident,
// and without a limit the heap may grow to twice the live data before a
// collection. In Lambda the limit is 3/4 of the function's memory; locally
// 48 MiB (the tables are about 24 MB of live heap; 40 MiB kept RSS lower
// but made the collector run often enough to add latency to streams).
func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(48 << 20)
	if mb, err := strconv.ParseInt(os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 10, 64); err == nil && mb > 0 {
		limit = mb << 20 * 3 / 4
	}
	debug.SetMemoryLimit(limit)
}
