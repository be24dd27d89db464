// The sdk build tag keeps the SDKs (openai-go alone is hundreds of files)
// out of every other build of this package's tests, above all the fuzzing
// build of FuzzParseRequest, which instruments everything it links; make
// test runs this file with -tags sdk.

//go:build sdk

package proxy_test

// The official SDKs against the real proxy on DynamoDB Local: OpenAI's Go
// SDK against an Azure setting, Anthropic's Go SDK streaming against an
// Anthropic setting and reading stipend's errors. The SDKs are test
// dependencies only; no stipend binary links them.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"

	"github.com/stipend/stipend/infra/fakeupstream"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/provider"
)

func TestIntegrationSDKs(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	e := newITEnvWith(t, endpoint, "it-sdks", time.Time{}, itOptions{upstream: func(o *fakeupstream.Options) {
		o.Deployments = map[string]string{"class-mini": "gpt-4o-mini"}
	}})
	e.addSetting(provider.Setting{ID: "azure", Name: "azure", Provider: provider.Azure, BaseURL: e.upURL,
		APIVersion: "2024-10-21", Deployments: map[string]string{"gpt-4o-mini": "class-mini"}})
	e.addSetting(provider.Setting{ID: "claude", Name: "claude", Provider: provider.Anthropic, BaseURL: e.upURL + "/v1"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("OpenAI SDK, streaming, against an Azure setting", func(t *testing.T) {
		key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"azure"} })
		client := openai.NewClient(ooption.WithBaseURL(e.proxy.URL+"/v1"), ooption.WithAPIKey(key.plain), ooption.WithMaxRetries(0))
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "gpt-4o-mini",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello from the SDK")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		e.inflight.Wait()
		text := acc.Choices[0].Message.Content
		ev := e.onlyEvent(key)
		if !strings.Contains(text, "word") || acc.Usage.CompletionTokens != ev.Usage.CompletionTokens || acc.Usage.PromptTokens != ev.Usage.PromptTokens {
			t.Fatalf("text %q usage %+v; event %+v", text, acc.Usage, ev)
		}
		if ev.ProviderID != "azure" {
			t.Fatalf("event %+v", ev)
		}
		e.wantCost(ev, "gpt-4o-mini")
		t.Logf("OpenAI SDK via Azure: %q, usage %d+%d, cost $%s", text, acc.Usage.PromptTokens, acc.Usage.CompletionTokens, ev.Cost)
	})

	t.Run("Anthropic SDK, streaming", func(t *testing.T) {
		key := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"claude"} })
		client := anthropic.NewClient(aoption.WithBaseURL(e.proxy.URL), aoption.WithAPIKey(key.plain), aoption.WithMaxRetries(0))
		stream := client.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
			Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 200,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello from the SDK"))},
		})
		var msg anthropic.Message
		for stream.Next() {
			if err := msg.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		e.inflight.Wait()
		var text strings.Builder
		for _, b := range msg.Content {
			text.WriteString(b.Text)
		}
		ev := e.onlyEvent(key)
		if !strings.Contains(text.String(), "word") || msg.Usage.OutputTokens != ev.Usage.CompletionTokens || msg.Usage.InputTokens != ev.Usage.PromptTokens {
			t.Fatalf("text %q usage %+v; event %+v", text.String(), msg.Usage, ev)
		}
		e.wantCost(ev, "claude-haiku-4-5")
		t.Logf("Anthropic SDK: %q, usage %d+%d, cost $%s", text.String(), msg.Usage.InputTokens, msg.Usage.OutputTokens, ev.Cost)
	})

	t.Run("Anthropic SDK reads stipend's errors", func(t *testing.T) {
		poor := e.newKey(func(k *apikey.Key) { k.SettingIDs = []string{"claude"}; k.CostLimitLifetime = 1; noLowering(k) })
		for _, tt := range []struct {
			key    string
			status int
			typ    string
		}{
			{poor.plain, http.StatusTooManyRequests, "rate_limit_error"},
			{"sk-stipend-unknown", http.StatusUnauthorized, "authentication_error"},
		} {
			client := anthropic.NewClient(aoption.WithBaseURL(e.proxy.URL), aoption.WithAPIKey(tt.key), aoption.WithMaxRetries(0))
			_, err := client.Messages.New(ctx, anthropic.MessageNewParams{
				Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 200,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
			})
			var apiErr *anthropic.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status || string(apiErr.Type()) != tt.typ || apiErr.Message == "" {
				t.Fatalf("err %v", err)
			}
		}
	})
}
