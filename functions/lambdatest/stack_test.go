package lambdatest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/secrets"
	"github.com/stipend/stipend/shared/testclock"
)

// The fake credentials the events in events/ carry (see events/README.md).
const (
	// proxyKey is the stipend key in events/proxy/*.json.
	proxyKey = "sk-stp-aaaaaaaaaaaaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	// adminKey is the admin bearer key in events/admin/*.json.
	adminKey = "test-admin-key-0123456789"
	// eventProviderKey is the provider API key events/admin/create-provider.json creates.
	eventProviderKey = "sk-test-not-a-real-key"
)

// Names the functions are configured with.
const (
	table        = "stipend-lambdatest"
	secretPrefix = "stipend/test/providers/"
	adminSecret  = "stipend/test/admin-key"
)

// stack is the local stand-in for the AWS services one test's function uses.
type stack struct {
	dynamoURL  string
	secretsURL string // empty when the test needs no Secrets Manager
	store      *dynamo.Store
	secrets    *secrets.Manager
}

// newStack starts DynamoDB Local (and moto_server when withSecrets) for t
// and creates the table.
func newStack(t *testing.T, withSecrets bool) *stack {
	t.Helper()
	s := &stack{dynamoURL: localtest.StartDynamoDB(t)}
	cfg := aws.Config{
		Region:      localstack.Region,
		Credentials: credentials.NewStaticCredentialsProvider(localstack.AccessKeyID, localstack.SecretAccessKey, ""),
	}
	s.store = dynamo.New(ddb.NewAt(cfg, s.dynamoURL), table, 0)
	if withSecrets {
		s.secretsURL = localtest.StartSecretsManager(t)
		s.secrets = secrets.NewManagerAt(cfg, s.secretsURL)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.store.CreateTable(ctx); err != nil {
		t.Fatalf("create table: %v", err)
	}
	return s
}

// env is the environment a function gets: the AWS SDK pointed at the local
// services, the table, and extra.
func (s *stack) env(extra ...string) []string {
	env := []string{
		"AWS_REGION=" + localstack.Region,
		"AWS_ACCESS_KEY_ID=" + localstack.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + localstack.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_DYNAMODB=" + s.dynamoURL,
		"STIPEND_TABLE=" + table,
		"STIPEND_RESERVE_TIMEOUT=1m", // a busy test machine is not a stalled store
	}
	if s.secretsURL != "" {
		env = append(env, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+s.secretsURL)
	}
	return append(env, extra...)
}

// putSecret stores value under name in moto and returns its ARN.
func (s *stack) putSecret(t *testing.T, name, value string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	arn, err := s.secrets.Put(ctx, name, value)
	if err != nil {
		t.Fatalf("put secret %s: %v", name, err)
	}
	return arn
}

// seedProxyKey stores the key of events/proxy/*.json (only its hash) with
// settingIDs and returns the stored key. It is created now, on the real
// clock that the bootstrap binaries run on.
func (s *stack) seedProxyKey(t *testing.T, settingIDs ...string) *apikey.Key {
	t.Helper()
	return s.seedProxyKeyAt(t, testclock.Real(), settingIDs...)
}

// seedProxyKeyAt is seedProxyKey with the key created at createdAt.
func (s *stack) seedProxyKeyAt(t *testing.T, createdAt time.Time, settingIDs ...string) *apikey.Key {
	t.Helper()
	id, err := apikey.Parse(proxyKey)
	if err != nil {
		t.Fatalf("the events' proxy key: %v", err)
	}
	k := &apikey.Key{
		ID: id, Name: "lambdatest", Hash: apikey.Hash(proxyKey), SettingIDs: settingIDs,
		CreatedAt: createdAt.Unix(), UpdatedAt: createdAt.Unix(),
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.store.CreateKey(ctx, k); err != nil {
		t.Fatalf("create key: %v", err)
	}
	return k
}

// exercised lists every file under events/ and the test that invokes it;
// readEvent refuses files not listed here and TestEveryEventIsExercised
// fails when events/ holds a file not listed here.
var exercised = map[string]string{
	"proxy/chat-stream.json":     "TestProxy/chat-stream",
	"proxy/models.json":          "TestProxy/models",
	"proxy/chat-base64.json":     "TestProxy/chat-base64",
	"admin/list-keys.json":       "TestAdmin/list-keys, TestAdmin/list-keys-wrong-bearer",
	"admin/create-provider.json": "TestAdmin/create-provider",
	"reset/monthly.json":         "TestReset/monthly",
	"reset/stale.json":           "TestReset/stale, TestReset/stale-retention",
}

// eventsDir is the repository's events/ directory, from this package's.
const eventsDir = "../../events"

// readEvent returns events/<name>.
func readEvent(t *testing.T, name string) []byte {
	t.Helper()
	if _, ok := exercised[name]; !ok {
		t.Fatalf("event %s is not listed in exercised", name)
	}
	b, err := os.ReadFile(filepath.FromSlash(eventsDir + "/" + name))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("event %s is not JSON", name)
	}
	return b
}

// withHeader returns a function URL event with header name set to value.
func withHeader(t *testing.T, event []byte, name, value string) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(event, &ev); err != nil {
		t.Fatal(err)
	}
	headers, ok := ev["headers"].(map[string]any)
	if !ok {
		t.Fatal("event has no headers")
	}
	headers[name] = value
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventHeader returns header name of a function URL event.
func eventHeader(t *testing.T, event []byte, name string) string {
	t.Helper()
	var ev struct {
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(event, &ev); err != nil {
		t.Fatal(err)
	}
	return ev.Headers[name]
}

func TestEveryEventIsExercised(t *testing.T) {
	files, err := filepath.Glob(filepath.FromSlash(eventsDir + "/*/*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no events under %s", eventsDir)
	}
	var found []string
	for _, f := range files {
		rel, err := filepath.Rel(filepath.FromSlash(eventsDir), f)
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, filepath.ToSlash(rel))
	}
	for _, name := range found {
		if _, ok := exercised[name]; !ok {
			t.Errorf("events/%s is exercised by no test: invoke it in one and list it in exercised", name)
		}
	}
	for name := range exercised {
		if !slices.Contains(found, name) {
			t.Errorf("exercised lists events/%s, which does not exist", name)
		}
	}
}
