// Command dev is `make dev`: the whole stipend stack on this machine, in the
// foreground, until Ctrl-C. See infra/devstack for what it starts: it
// restarts a proxy or admin process that dies, runs the scheduled reset as
// template.yaml schedules it, and says when GET /readyz reports DynamoDB or
// Secrets Manager down.
//
// Environment (all optional): STIPEND_PROXY_ADDR (127.0.0.1:8080),
// STIPEND_ADMIN_ADDR (127.0.0.1:8081), STIPEND_ADMIN_KEY (generated when
// unset), OPENAI_API_KEY with OPENAI_BASE_URL (creates the provider setting
// "openai"), ANTHROPIC_API_KEY with ANTHROPIC_BASE_URL (creates
// "anthropic"); with neither, a fake upstream is the demo provider. Either
// way a demo key with a $1 budget uses the settings. STIPEND_DEV_DATA (a directory to keep
// DynamoDB data and the secrets written to Secrets Manager across runs; in
// memory when unset), STIPEND_DYNAMODB_PORT
// (default a free port), STIPEND_DEV_UPSTREAM_ADDR (the fake upstream,
// default a free port), STIPEND_TABLE (default "stipend"),
// STIPEND_DEV_VERBOSE=1 (show the services' own logs).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/stipend/stipend/infra/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	port := 0
	if v := os.Getenv("STIPEND_DYNAMODB_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p <= 0 || p > 65535 {
			return fmt.Errorf("STIPEND_DYNAMODB_PORT=%q is not a port", v)
		}
		port = p
	}
	var logs io.Writer = os.Stderr
	if os.Getenv("STIPEND_DEV_VERBOSE") == "" {
		logs = nil
	}
	st, err := devstack.Start(ctx, devstack.Options{
		ProxyAddr:        os.Getenv("STIPEND_PROXY_ADDR"),
		AdminAddr:        os.Getenv("STIPEND_ADMIN_ADDR"),
		AdminKey:         os.Getenv("STIPEND_ADMIN_KEY"),
		OpenAIKey:        os.Getenv("OPENAI_API_KEY"),
		OpenAIBaseURL:    os.Getenv("OPENAI_BASE_URL"),
		AnthropicKey:     os.Getenv("ANTHROPIC_API_KEY"),
		AnthropicBaseURL: os.Getenv("ANTHROPIC_BASE_URL"),
		DataDir:          os.Getenv("STIPEND_DEV_DATA"),
		DynamoDBPort:     port,
		UpstreamAddr:     os.Getenv("STIPEND_DEV_UPSTREAM_ADDR"),
		Table:            os.Getenv("STIPEND_TABLE"),
		Log:              logs,
		Say:              func(s string) { slog.Info(s) },
	})
	if err != nil {
		return err
	}
	defer st.Close()

	fmt.Printf(`
stipend is running.
  proxy:     %s/v1   (OpenAI-compatible: point base_url here)
  admin:     %s/api/v1
  admin key: %s
  dashboard: %s/   (the teacher's dashboard: sign in with the admin key)
  student:   %s/   (the student's page: paste a stipend key)
`, st.ProxyURL, st.AdminURL, st.AdminKey, st.AdminURL, st.ProxyURL)
	if st.UpstreamURL != "" {
		fmt.Printf(`  fake upstream: %s   (offline; its own API key: %s)
  demo provider: %s   (%q, openai-compatible, on the fake upstream)
  demo key:  %s   ($1 budget)

Try a streamed chat completion:
  curl -N %s/v1/chat/completions -H "Authorization: Bearer %s" -H "Content-Type: application/json" -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'
`, st.UpstreamURL, devstack.FakeUpstreamKey, st.ProviderID, st.Providers[0].Name, st.DemoKey, st.ProxyURL, st.DemoKey)
	} else {
		for _, p := range st.Providers {
			base := p.BaseURL
			if base == "" {
				base = "the provider's own"
			}
			fmt.Printf("  provider:  %s   (%q, base URL %s)\n", p.ID, p.Name, base)
		}
		fmt.Printf(`  demo key:  %s   ($1 budget, on the provider settings above: real requests, real spend)

Create a key for a student:
  curl -s %s/api/v1/secret-keys -H "Authorization: Bearer %s" -d '{"name":"student-1","providerSettingIds":["%s"],"costLimitInUsdLifetime":1}'
`, st.DemoKey, st.AdminURL, st.AdminKey, st.ProviderID)
	}
	upstream := ""
	if st.UpstreamURL != "" {
		upstream = " UPSTREAM=" + st.UpstreamURL
	}
	fmt.Printf(`
For the README's walkthrough ("Five minutes: a class of students"), paste this into your shell:
  export ADMIN=%s AK=%s PROXY=%s PROVIDER=%s%s
`, st.AdminURL, st.AdminKey, st.ProxyURL, st.ProviderID, upstream)
	fmt.Printf("\nReadiness: %s/readyz and %s/readyz (a dependency going down is reported here).\n", st.ProxyURL, st.AdminURL)
	fmt.Println("Ctrl-C stops everything.")
	select {
	case <-ctx.Done():
		slog.Info("stopping")
		return nil
	case err := <-st.Exited:
		return err
	}
}
