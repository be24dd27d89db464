package admin_test

// ANYTIME_BY_VIEWER end to end: the admin handler on DynamoDB Local, with the
// key encryption secret in a local Secrets Manager (moto_server) read
// through keyvault. A key is created, read back equal to the plaintext shown
// at creation, and the table never holds that plaintext anywhere.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/auditlog"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/keyvault"
	"github.com/stipend/stipend/shared/secrets"
)

const lcAdminKey = "adm-lifecycle-integration-key-0123456789"

// lcCall sends an admin request and decodes the JSON answer into out.
func lcCall(t *testing.T, h http.Handler, method, path, body string, status int, out any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+lcAdminKey)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != status {
		t.Fatalf("%s %s = %d, want %d: %s", method, path, rec.Code, status, rec.Body)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("decode %s: %v", rec.Body, err)
		}
	}
}

// strings of an item, at any depth.
func itemStrings(v types.AttributeValue, out *[]string) {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		*out = append(*out, v.Value)
	case *types.AttributeValueMemberSS:
		*out = append(*out, v.Value...)
	case *types.AttributeValueMemberL:
		for _, e := range v.Value {
			itemStrings(e, out)
		}
	case *types.AttributeValueMemberM:
		for _, e := range v.Value {
			itemStrings(e, out)
		}
	}
}

func TestAnytimeByViewerIntegration(t *testing.T) {
	ddbURL := localtest.StartDynamoDB(t)
	smURL := localtest.StartSecretsManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfg := aws.Config{Region: localstack.Region,
		Credentials: credentials.NewStaticCredentialsProvider(localstack.AccessKeyID, localstack.SecretAccessKey, "")}
	db := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(ddbURL) })
	store := dynamo.New(ddb.NewAt(cfg, ddbURL), "lifecycle", 0)
	if err := store.CreateTable(ctx, dynamo.WithoutTTL()); err != nil {
		t.Fatal(err)
	}
	mgr := secrets.NewManagerAt(cfg, smURL)
	// What template.yaml's GenerateSecretString makes: a long random password.
	secretValue := rand.Text() + rand.Text()
	arn, err := mgr.Put(ctx, "stipend/test/key-encryption", secretValue)
	if err != nil {
		t.Fatal(err)
	}
	vault := keyvault.New(secrets.NewCache(mgr, time.Minute), arn)

	h := admin.New(admin.Config{
		Store: store, Secrets: mgr, SecretPrefix: "stipend/test/providers/", Vault: vault,
		AdminKey: func(context.Context) (string, error) { return lcAdminKey, nil },
	})
	var prov struct{ ID string }
	lcCall(t, h, "POST", "/api/v1/providers", `{"name":"openai","provider":"openai","apiKey":"sk-upstream-0123456789"}`, 200, &prov)

	var created struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	lcCall(t, h, "POST", "/api/v1/secret-keys",
		`{"name":"viewer","providerSettingIds":["`+prov.ID+`"],"keyRetrievalMethod":"ANYTIME_BY_VIEWER"}`, 200, &created)
	var once struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	lcCall(t, h, "POST", "/api/v1/secret-keys", `{"name":"once","providerSettingIds":["`+prov.ID+`"]}`, 200, &once)

	// Read back: the same plaintext, twice (the vault's secret is cached).
	for range 2 {
		var got map[string]string
		lcCall(t, h, "GET", "/api/v1/secret-keys/"+created.ID+"/key", "", 200, &got)
		if got["key"] != created.Key || got["keyId"] != created.ID || len(got) != 2 {
			t.Fatalf("read back %v, want the key shown at creation", got)
		}
	}
	lcCall(t, h, "GET", "/api/v1/secret-keys/"+once.ID+"/key", "", 403, nil)

	// The table holds the sealed form, never a plaintext key or the secret.
	stored, err := store.GetKey(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Sealed == "" || stored.Hash != apikey.Hash(created.Key) {
		t.Fatalf("stored key: sealed %q", stored.Sealed)
	}
	if plain, err := vault.Open(ctx, created.ID, stored.Sealed); err != nil || plain != created.Key {
		t.Fatalf("vault.Open = %v", err)
	}
	out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("lifecycle")})
	if err != nil {
		t.Fatal(err)
	}
	secretPart := func(k string) string { return k[strings.LastIndex(k, "_")+1:] }
	var all []string
	for _, item := range out.Items {
		for _, v := range item {
			itemStrings(v, &all)
		}
	}
	if len(all) == 0 {
		t.Fatal("empty table")
	}
	for _, s := range all {
		for _, secret := range []string{created.Key, secretPart(created.Key), once.Key, secretPart(once.Key), secretValue, "sk-upstream-0123456789"} {
			if strings.Contains(s, secret) {
				t.Fatalf("the table holds a secret in %q", s)
			}
		}
	}

	// A sealed value copied onto another key's record does not open there.
	other, err := store.GetKey(ctx, once.ID)
	if err != nil {
		t.Fatal(err)
	}
	other.KeyRetrievalMethod, other.Sealed = form.RetrieveAnytimeByViewer, stored.Sealed
	if err := store.UpdateKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	lcCall(t, h, "GET", "/api/v1/secret-keys/"+once.ID+"/key", "", 500, nil)

	// Archived: still readable one by one, hidden from the list.
	lcCall(t, h, "DELETE", "/api/v1/secret-keys/"+created.ID, "", 200, nil)
	var list []map[string]any
	lcCall(t, h, "GET", "/api/v1/secret-keys", "", 200, &list)
	for _, k := range list {
		if k["keyId"] == created.ID {
			t.Errorf("archived key listed")
		}
	}
	lcCall(t, h, "GET", "/api/v1/secret-keys?includeArchived=true", "", 200, &list)
	if len(list) != 2 {
		t.Errorf("includeArchived lists %d keys", len(list))
	}

	// The audit trail, on DynamoDB, newest first.
	var page struct {
		Entries []auditlog.Entry `json:"entries"`
		Cursor  *string          `json:"cursor"`
	}
	lcCall(t, h, "GET", "/api/v1/audit?targetId="+created.ID, "", 200, &page)
	var actions []string
	for _, e := range page.Entries {
		actions = append(actions, e.Action)
	}
	if want := []string{"key.archive", "key.retrieve", "key.retrieve", "key.create"}; !slices.Equal(actions, want) {
		t.Errorf("audit of %s = %v, want %v", created.ID, actions, want)
	}
}
