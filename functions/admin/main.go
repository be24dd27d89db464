// Command admin is stipend's admin API. In AWS Lambda it serves a buffered
// function URL through aws-lambda-go-api-proxy; anywhere else it listens on
// STIPEND_ADMIN_ADDR (default 127.0.0.1:8081). It only wires: its
// environment is read by config.LoadAdmin (see shared/config for every
// variable and its default).
//
// The admin bearer key comes from STIPEND_ADMIN_KEY, or else from the Secrets
// Manager secret STIPEND_ADMIN_KEY_SECRET (what template.yaml sets), cached
// for a minute so a rotation takes effect without a redeploy.
// GET /healthz answers without touching anything; GET /readyz reports
// whether DynamoDB and Secrets Manager answer.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/config"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/keyvault"
	"github.com/stipend/stipend/shared/nbconn"
	"github.com/stipend/stipend/shared/secrets"
	"github.com/stipend/stipend/shared/server"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := config.LoadAdmin(os.Getenv)
	if err != nil {
		log.Error("admin cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	h, err := build(context.Background(), cfg, log)
	if err != nil {
		log.Error("admin cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	if server.InLambda() {
		// aws-lambda-go's Runtime API client clones http.DefaultTransport
		// as Start begins: dialing through nbconn keeps its calls from
		// waking the runtime's monitor thread (see shared/nbconn).
		nbconn.WrapTransport(http.DefaultTransport.(*http.Transport))
		adapter := httpadapter.NewV2(h)
		lambda.Start(func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			return adapter.ProxyWithContext(ctx, req)
		})
		return
	}
	if err := server.Serve(context.Background(), cfg.Addr, h, log); err != nil {
		log.Error("admin stopped", slog.String("cause", err.Error()))
		os.Exit(1)
	}
}

func build(ctx context.Context, cfg config.Admin, log *slog.Logger) (http.Handler, error) {
	awsCfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	mgr, err := secrets.NewManager(ctx, awsCfg)
	if err != nil {
		return nil, err
	}
	adminKey := func(context.Context) (string, error) { return cfg.AdminKey, nil }
	if cfg.AdminKey == "" {
		cache, id := secrets.NewCache(mgr, time.Minute), cfg.AdminKeySecret
		adminKey = func(ctx context.Context) (string, error) { return cache.Get(ctx, id) }
	}
	db, err := ddb.New(ctx, awsCfg)
	if err != nil {
		return nil, err
	}
	store := dynamo.New(db, cfg.Table, cfg.EventRetention)
	// ANYTIME_BY_VIEWER keys are sealed with a key derived from this
	// secret (package keyvault); without it that retrieval method is refused.
	var vault admin.Vault
	if cfg.KeyEncryptionSecret != "" {
		vault = keyvault.New(secrets.NewCache(mgr, 5*time.Minute), cfg.KeyEncryptionSecret)
	}
	h := admin.New(admin.Config{
		Store:        store,
		Secrets:      mgr,
		SecretPrefix: cfg.SecretPrefix,
		AdminKey:     adminKey,
		Vault:        vault,
		Log:          log,
	})
	return server.WithReadiness(h, log,
		server.Check{Name: "dynamodb", Ping: store.Ping},
		server.Check{Name: "secretsmanager", Ping: func(ctx context.Context) error { return mgr.Ping(ctx, cfg.SecretPrefix+"readyz") }},
	), nil
}
