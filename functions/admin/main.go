// Command admin is stipend's admin API. In AWS Lambda it serves a buffered
// function URL through aws-lambda-go-api-proxy; anywhere else it listens on
// STIPEND_ADMIN_ADDR (default 127.0.0.1:8081). It only wires.
//
// The admin bearer key comes from STIPEND_ADMIN_KEY, or else from the Secrets
// Manager secret STIPEND_ADMIN_KEY_SECRET (what template.yaml sets), cached
// for a minute so a rotation takes effect without a redeploy.
// Environment also: STIPEND_TABLE, STIPEND_SECRET_PREFIX (where provider API
// keys are stored, default "stipend/providers/"), STIPEND_KEY_ENCRYPTION_SECRET
// (the Secrets Manager secret whose SHA-256 seals ANYTIME_BY_VIEWER keys;
// unset, that keyRetrievalMethod is refused).
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/keyvault"
	"github.com/stipend/stipend/shared/secrets"
	"github.com/stipend/stipend/shared/server"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := build(context.Background(), log)
	if err != nil {
		log.Error("admin cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	if server.InLambda() {
		adapter := httpadapter.NewV2(h)
		lambda.Start(func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			return adapter.ProxyWithContext(ctx, req)
		})
		return
	}
	if err := server.Serve(context.Background(), server.Env("STIPEND_ADMIN_ADDR", "127.0.0.1:8081"), h, log); err != nil {
		log.Error("admin stopped", slog.String("cause", err.Error()))
		os.Exit(1)
	}
}

func build(ctx context.Context, log *slog.Logger) (*admin.Handler, error) {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	mgr := secrets.NewManager(secretsmanager.NewFromConfig(cfg))
	var adminKey func(context.Context) (string, error)
	switch {
	case os.Getenv("STIPEND_ADMIN_KEY") != "":
		key := os.Getenv("STIPEND_ADMIN_KEY")
		adminKey = func(context.Context) (string, error) { return key, nil }
	case os.Getenv("STIPEND_ADMIN_KEY_SECRET") != "":
		cache, id := secrets.NewCache(mgr, time.Minute), os.Getenv("STIPEND_ADMIN_KEY_SECRET")
		adminKey = func(ctx context.Context) (string, error) { return cache.Get(ctx, id) }
	default:
		return nil, errors.New("set STIPEND_ADMIN_KEY or STIPEND_ADMIN_KEY_SECRET")
	}
	store := dynamo.New(dynamo.NewClient(cfg), server.Env("STIPEND_TABLE", "stipend"), 0)
	// ANYTIME_BY_VIEWER keys are sealed with a key derived from this
	// secret (package keyvault); without it that retrieval method is refused.
	var vault admin.Vault
	if id := os.Getenv("STIPEND_KEY_ENCRYPTION_SECRET"); id != "" {
		vault = keyvault.New(secrets.NewCache(mgr, 5*time.Minute), id)
	}
	return admin.New(admin.Config{
		Store:        store,
		Secrets:      mgr,
		SecretPrefix: server.Env("STIPEND_SECRET_PREFIX", "stipend/providers/"),
		AdminKey:     adminKey,
		Vault:        vault,
		Log:          log,
	}), nil
}
