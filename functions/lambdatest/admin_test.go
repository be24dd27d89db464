package lambdatest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAdmin(t *testing.T) {
	bootstrap(t, "admin") // fail before starting any service
	st := newStack(t, true)
	// The admin key comes from Secrets Manager, as template.yaml sets it up.
	st.putSecret(t, adminSecret, adminKey)
	key := st.seedProxyKey(t)

	fn := startFunction(t, "admin", st.env(
		"STIPEND_ADMIN_KEY_SECRET="+adminSecret,
		"STIPEND_SECRET_PREFIX="+secretPrefix,
	))

	listKeys := readEvent(t, "admin/list-keys.json")
	if got := eventHeader(t, listKeys, "authorization"); got != "Bearer "+adminKey {
		t.Fatalf("list-keys.json: authorization %q, want the admin key the test stores", got)
	}

	t.Run("list-keys", func(t *testing.T) {
		resp, body := buffered(t, fn.invoke(t, listKeys))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("statusCode = %d, want 200; body %s", resp.StatusCode, body)
		}
		var list []map[string]any
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("body %q is not a JSON array: %v", body, err)
		}
		found := false
		for _, k := range list {
			found = found || k["keyId"] == key.ID
		}
		if !found {
			t.Errorf("body %s does not list key %s", body, key.ID)
		}
		if strings.Contains(body, key.Hash) {
			t.Errorf("body %s reveals the key's hash", body)
		}
	})

	t.Run("list-keys-wrong-bearer", func(t *testing.T) {
		ev := withHeader(t, listKeys, "authorization", "Bearer wrong-admin-key-9876543210")
		resp, body := buffered(t, fn.invoke(t, ev))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("statusCode = %d, want 401; body %s", resp.StatusCode, body)
		}
		if strings.Contains(body, key.ID) {
			t.Errorf("401 body %s lists keys", body)
		}
	})

	t.Run("create-provider", func(t *testing.T) {
		resp, body := buffered(t, fn.invoke(t, readEvent(t, "admin/create-provider.json")))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("statusCode = %d, want 200; body %s", resp.StatusCode, body)
		}
		if strings.Contains(body, eventProviderKey) {
			t.Errorf("body %s reveals the provider API key", body)
		}
		var created struct {
			ID       string `json:"id"`
			Name     string `json:"name"`
			Provider string `json:"provider"`
		}
		if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == "" {
			t.Fatalf("body %q has no provider id: %v", body, err)
		}
		if created.Name != "openai" || created.Provider != "openai" {
			t.Errorf("created %+v, want name and provider openai", created)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if got, err := st.secrets.Get(ctx, secretPrefix+created.ID); err != nil || got != eventProviderKey {
			t.Errorf("secret %s%s = %q, %v; want the provider API key", secretPrefix, created.ID, got, err)
		}
		p, err := st.store.GetProvider(ctx, created.ID)
		if err != nil {
			t.Fatalf("provider %s not stored: %v", created.ID, err)
		}
		if p.SecretID == "" || strings.Contains(p.SecretID, eventProviderKey) {
			t.Errorf("stored provider's SecretID = %q, want a reference to the secret", p.SecretID)
		}
	})
}
