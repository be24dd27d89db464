package admin

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// fakeVault "seals" by hex-encoding the reversed plaintext behind the key id,
// so a sealed value never contains the plaintext and only opens for its id.
type fakeVault struct {
	mu       sync.Mutex
	failSeal error
	failOpen error
	wrong    bool // Open returns another plaintext
	seals    int
}

func newFakeVault() *fakeVault { return &fakeVault{} }

func reversed(s string) string {
	b := []byte(s)
	slices.Reverse(b)
	return string(b)
}

func (v *fakeVault) Seal(_ context.Context, keyID, plaintext string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.failSeal != nil {
		return "", v.failSeal
	}
	v.seals++
	return "fake." + keyID + "." + hex.EncodeToString([]byte(reversed(plaintext))), nil
}

func (v *fakeVault) Open(_ context.Context, keyID, sealed string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.failOpen != nil {
		return "", v.failOpen
	}
	rest, ok := strings.CutPrefix(sealed, "fake."+keyID+".")
	if !ok {
		return "", errors.New("sealed for another key")
	}
	b, err := hex.DecodeString(rest)
	if err != nil {
		return "", err
	}
	if v.wrong {
		return "sk-stp-not-the-key", nil
	}
	return reversed(string(b)), nil
}

const anytimeBody = `{"name":"viewer","providerSettingIds":["p1"],"keyRetrievalMethod":"ANYTIME_BY_VIEWER"}`

func TestCreateAnytimeByViewer(t *testing.T) {
	t.Run("without a vault", func(t *testing.T) {
		e := newEnv(t)
		e.addProvider("p1")
		b := wantError(t, e.do(t, "POST", "/api/v1/secret-keys", anytimeBody), 400, apierror.CodeInvalidRequest, "keyRetrievalMethod")
		if b.Error.Message != "key retrieval is not configured" {
			t.Errorf("message %q", b.Error.Message)
		}
		if len(e.store.keys) != 0 {
			t.Errorf("key stored")
		}
	})
	t.Run("vault fails", func(t *testing.T) {
		e := newEnv(t)
		e.addProvider("p1")
		e.configure(func(c *Config) {
			c.Vault = &fakeVault{failSeal: errors.New("secretsmanager: AccessDenied on arn:secret")}
		})
		rec := e.do(t, "POST", "/api/v1/secret-keys", anytimeBody)
		wantError(t, rec, 503, apierror.CodeServiceUnavailable, "")
		if strings.Contains(rec.Body.String(), "arn:secret") || len(e.store.keys) != 0 {
			t.Errorf("cause leaked or key stored: %s", rec.Body)
		}
	})
	t.Run("sealed, read back, never shown", func(t *testing.T) {
		e := newEnv(t)
		e.addProvider("p1")
		v := newFakeVault()
		e.configure(func(c *Config) { c.Vault = v })
		rec := e.do(t, "POST", "/api/v1/secret-keys", anytimeBody)
		var c createdKey
		decode(t, rec, 200, &c)
		if c.KeyRetrievalMethod != form.RetrieveAnytimeByViewer {
			t.Errorf("keyRetrievalMethod = %q", c.KeyRetrievalMethod)
		}
		stored := e.store.key(t, c.ID)
		if stored.Sealed == "" || strings.Contains(stored.Sealed, c.Key) {
			t.Fatalf("sealed = %q", stored.Sealed)
		}
		if b, _ := json.Marshal(stored); strings.Contains(string(b), c.Key) {
			t.Errorf("plaintext in the stored record")
		}
		for _, path := range []string{"/api/v1/secret-keys", "/api/v1/secret-keys/" + c.ID, "/api/v1/secret-keys/" + c.ID + "?includeMetrics=true&start=1&end=2&increment=1"} {
			body := e.do(t, "GET", path, "").Body.String()
			if strings.Contains(body, stored.Sealed) || strings.Contains(body, "sealed") || strings.Contains(body, c.Key) {
				t.Errorf("GET %s shows the sealed key: %s", path, body)
			}
		}
		if strings.Contains(rec.Body.String(), "sealed") {
			t.Errorf("create response shows the sealed key")
		}

		rec = e.do(t, "GET", "/api/v1/secret-keys/"+c.ID+"/key", "")
		var got map[string]string
		decode(t, rec, 200, &got)
		if !reflect.DeepEqual(got, map[string]string{"keyId": c.ID, "key": c.Key}) {
			t.Errorf("read back %v", got)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
		}
		if strings.Contains(e.logs.String(), c.Key) || strings.Contains(e.logs.String(), stored.Sealed) {
			t.Errorf("logs show the key")
		}
		// The method cannot change afterwards.
		wantError(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"keyRetrievalMethod":"ONCE"}`), 400, apierror.CodeInvalidRequest, "keyRetrievalMethod")
	})
}

func TestRetrieveKey(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	v := newFakeVault()
	e.configure(func(c *Config) { c.Vault = v })
	anytime := e.createKey(t, anytimeBody)
	once := e.createKey(t, `{"name":"o","providerSettingIds":["p1"]}`)
	perViewer := e.createKey(t, `{"name":"o","providerSettingIds":["p1"],"keyRetrievalMethod":"ONCE_PER_VIEWER"}`)
	legacy := e.createKey(t, `{"name":"o","providerSettingIds":["p1"]}`)
	e.store.mu.Lock()
	e.store.keys[legacy.ID].KeyRetrievalMethod = ""
	unsealed := cloneKey(e.store.keys[anytime.ID])
	unsealed.ID, unsealed.Sealed = "unsealed", ""
	e.store.keys[unsealed.ID] = unsealed
	e.store.mu.Unlock()

	tests := []struct {
		name   string
		id     string
		setup  func()
		status int
		code   string
	}{
		{"once", once.ID, nil, 403, CodeNotRetrievable},
		{"once per viewer", perViewer.ID, nil, 403, CodeNotRetrievable},
		{"legacy (no method)", legacy.ID, nil, 403, CodeNotRetrievable},
		{"nothing sealed", unsealed.ID, nil, 403, CodeNotRetrievable},
		{"unknown", "nope", nil, 404, apierror.CodeNotFound},
		{"vault gone", anytime.ID, func() { e.configure(func(c *Config) { c.Vault = nil }) }, 503, apierror.CodeServiceUnavailable},
		{"vault fails", anytime.ID, func() {
			e.configure(func(c *Config) { c.Vault = &fakeVault{failOpen: errors.New("kms: AccessDenied")} })
		}, 500, apierror.CodeInternal},
		{"opens to another key", anytime.ID, func() { e.configure(func(c *Config) { c.Vault = &fakeVault{wrong: true} }) }, 500, apierror.CodeInternal},
		{"ok", anytime.ID, func() { e.configure(func(c *Config) { c.Vault = v }) }, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			rec := e.do(t, "GET", "/api/v1/secret-keys/"+tc.id+"/key", "")
			if tc.code == "" {
				decode(t, rec, tc.status, nil)
				return
			}
			b := wantError(t, rec, tc.status, tc.code, "")
			if tc.status == 403 && b.Error.Type != "permission_error" {
				t.Errorf("type = %q, want permission_error", b.Error.Type)
			}
			if strings.Contains(rec.Body.String(), anytime.Key) || strings.Contains(rec.Body.String(), "sk-stp-not-the-key") {
				t.Errorf("error shows a key: %s", rec.Body)
			}
		})
	}
	if strings.Contains(e.logs.String(), anytime.Key) || strings.Contains(e.logs.String(), "sk-stp-not-the-key") {
		t.Errorf("logs show a key")
	}
}

func TestArchiveKey(t *testing.T) {
	e := newEnv(t)
	e.addProvider("p1")
	c := e.createKey(t, `{"name":"k","providerSettingIds":["p1"],"costLimitInUsdLifetime":5}`)
	other := e.createKey(t, `{"name":"other","providerSettingIds":["p1"]}`)
	e.store.mu.Lock()
	e.store.events = append(e.store.events,
		&ledger.Event{ID: "ev1", KeyID: c.ID, CreatedAt: testNow.UnixMilli() - 1000, Status: 200, Cost: 2 * money.Dollar},
		&ledger.Event{ID: "ev2", KeyID: c.ID, CreatedAt: testNow.UnixMilli() - 500, Status: 200, Cost: money.Dollar})
	e.store.mu.Unlock()

	listIDs := func(t *testing.T, query string) []string {
		t.Helper()
		var views []keyView
		decode(t, e.do(t, "GET", "/api/v1/secret-keys"+query, ""), 200, &views)
		var ids []string
		for _, v := range views {
			ids = append(ids, v.KeyID)
		}
		slices.Sort(ids)
		return ids
	}
	both := []string{c.ID, other.ID}
	slices.Sort(both)

	var v keyView
	decode(t, e.do(t, "DELETE", "/api/v1/secret-keys/"+c.ID, ""), 200, &v)
	if !v.Archived || !v.Revoked || v.RevokedReason != ReasonArchived || v.ArchivedAt != testNow.Unix() || v.KeyID != c.ID {
		t.Fatalf("archived view %+v", v)
	}
	stored := e.store.key(t, c.ID)
	if !stored.Archived || !stored.Revoked || stored.Hash != apikey.Hash(c.Key) {
		t.Errorf("stored %+v", stored)
	}

	// Hidden from the list unless asked for; still readable one by one.
	if got := listIDs(t, ""); !reflect.DeepEqual(got, []string{other.ID}) {
		t.Errorf("list = %v", got)
	}
	if got := listIDs(t, "?includeArchived=false"); !reflect.DeepEqual(got, []string{other.ID}) {
		t.Errorf("list includeArchived=false = %v", got)
	}
	if got := listIDs(t, "?includeArchived=true"); !reflect.DeepEqual(got, both) {
		t.Errorf("list includeArchived=true = %v", got)
	}
	wantError(t, e.do(t, "GET", "/api/v1/secret-keys?includeArchived=maybe", ""), 400, apierror.CodeInvalidRequest, "includeArchived")
	var one []keyDetail
	path := fmt.Sprintf("/api/v1/secret-keys/%s?includeMetrics=true&start=%d&end=%d&increment=60", c.ID, testNow.Unix()-60, testNow.Unix())
	decode(t, e.do(t, "GET", path, ""), 200, &one)
	if len(one) != 1 || !one[0].Archived || one[0].Metrics == nil || one[0].Metrics.NumberOfRequests != 2 || one[0].Metrics.CostInUsd != 3*money.Dollar {
		t.Errorf("archived key's metrics: %+v", one)
	}

	// Idempotent: nothing is written again.
	calls := e.store.updateCalls
	var again keyView
	decode(t, e.do(t, "DELETE", "/api/v1/secret-keys/"+c.ID, `{"revokedReason":"changed my mind"}`), 200, &again)
	if !reflect.DeepEqual(again, v) || e.store.updateCalls != calls {
		t.Errorf("second archive changed something: %+v (%d writes)", again, e.store.updateCalls-calls)
	}
	// An archived key is not reinstated.
	wantError(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, `{"revoked":false}`), 400, apierror.CodeInvalidRequest, "revoked")
	if k := e.store.key(t, c.ID); !k.Revoked || !k.Archived {
		t.Errorf("reinstated: %+v", k)
	}
	wantError(t, e.do(t, "DELETE", "/api/v1/secret-keys/nope", ""), 404, apierror.CodeNotFound, "")
}

func TestArchiveReasons(t *testing.T) {
	tests := []struct {
		name       string
		patchFirst string // applied before the archive
		body       string
		want       string
	}{
		{"default", "", "", ReasonArchived},
		{"empty object", "", `{}`, ReasonArchived},
		{"given", "", `{"revokedReason":"student left"}`, "student left"},
		{"blank given", "", `{"revokedReason":"  "}`, ReasonArchived},
		{"earlier revocation kept", `{"revoked":true,"revokedReason":"leaked"}`, "", "leaked"},
		{"earlier revocation without reason", `{"revoked":true}`, "", ReasonArchived},
		{"given beats earlier", `{"revoked":true,"revokedReason":"leaked"}`, `{"revokedReason":"end of term"}`, "end of term"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			c := e.createKey(t, `{"name":"k","providerSettingIds":["p1"]}`)
			if tc.patchFirst != "" {
				decode(t, e.do(t, "PATCH", "/api/v1/secret-keys/"+c.ID, tc.patchFirst), 200, nil)
			}
			var v keyView
			decode(t, e.do(t, "DELETE", "/api/v1/secret-keys/"+c.ID, tc.body), 200, &v)
			if v.RevokedReason != tc.want || !v.Revoked || !v.Archived {
				t.Errorf("view %+v, want reason %q", v, tc.want)
			}
		})
	}
}

func TestArchiveErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		setup  func(s *fakeStore)
		status int
		code   string
	}{
		{"body not an object", `[1]`, nil, 400, apierror.CodeInvalidRequest},
		{"reason not a string", `{"revokedReason":5}`, nil, 400, apierror.CodeInvalidRequest},
		{"reason too long", `{"revokedReason":"` + strings.Repeat("x", 1025) + `"}`, nil, 400, apierror.CodeInvalidRequest},
		{"store down", "", func(s *fakeStore) { s.fail = errors.New("dynamodb: 10.0.0.7") }, 503, apierror.CodeServiceUnavailable},
		{"one lost race", "", func(s *fakeStore) { s.conflicts = 1 }, 200, ""},
		{"always losing", "", func(s *fakeStore) { s.conflicts = 100 }, 409, CodeConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addProvider("p1")
			c := e.createKey(t, `{"name":"k","providerSettingIds":["p1"]}`)
			if tc.setup != nil {
				tc.setup(e.store)
			}
			rec := e.do(t, "DELETE", "/api/v1/secret-keys/"+c.ID, tc.body)
			if tc.code == "" {
				decode(t, rec, tc.status, nil)
				e.store.fail = nil
				if k := e.store.key(t, c.ID); !k.Archived {
					t.Errorf("not archived")
				}
				return
			}
			wantError(t, rec, tc.status, tc.code, "")
			if strings.Contains(rec.Body.String(), "10.0.0.7") {
				t.Errorf("cause leaked")
			}
		})
	}
}
