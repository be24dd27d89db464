package keyvault

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
)

// fakeSecrets is a map of secrets that counts reads.
type fakeSecrets struct {
	mu     sync.Mutex
	values map[string]string
	fail   error
	reads  int
}

func (f *fakeSecrets) Get(_ context.Context, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.fail != nil {
		return "", f.fail
	}
	v, ok := f.values[id]
	if !ok {
		return "", errors.New("secret " + id + " not found")
	}
	return v, nil
}

const (
	secretName = "stipend/test/key-encryption"
	secretA    = "Zq8pW3nR7tY2uI5oP1aS4dF6gH9jK0lXcVbNmQwErTy2uIoP3aSdFgHjKlZxCvBn"
	secretB    = "Mn0bV9cX8zL7kJ6hG5fD4sA3pO2iU1yT0rE9wQ8mN7bV6cX5zL4kJ3hG2fD1sA0p"
	plaintext  = "sk-stp-abcdefghijklmnopqrstuvwxyz_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"
)

func vaultWith(secret string) (*Vault, *fakeSecrets) {
	src := &fakeSecrets{values: map[string]string{secretName: secret}}
	return New(src, secretName), src
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	v, src := vaultWith(secretA)
	tests := []struct{ name, keyID, plain string }{
		{"stipend key", "abcdefghijklmnopqrstuvwxyz", plaintext},
		{"empty plaintext", "k2", ""},
		{"unicode", "k3", "clé-secrète-🔑"},
		{"long", "k4", strings.Repeat("x", 10_000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := v.Seal(ctx, tc.keyID, tc.plain)
			if err != nil {
				t.Fatal(err)
			}
			if tc.plain != "" && strings.Contains(sealed, tc.plain) {
				t.Fatalf("sealed value contains the plaintext")
			}
			if !strings.HasPrefix(sealed, "v1.") {
				t.Fatalf("sealed = %q, want v1. prefix", sealed)
			}
			got, err := v.Open(ctx, tc.keyID, sealed)
			if err != nil || got != tc.plain {
				t.Fatalf("Open = %q, %v; want the plaintext", got, err)
			}
		})
	}
	if src.reads == 0 {
		t.Errorf("the secret was never read")
	}
	// A fresh nonce every time: the same plaintext seals differently.
	a, _ := v.Seal(ctx, "k", plaintext)
	b, _ := v.Seal(ctx, "k", plaintext)
	if a == b {
		t.Errorf("two seals of the same plaintext are equal: nonce reused")
	}
}

func TestDerivedKeyIsSHA256OfSecret(t *testing.T) {
	if got, want := DeriveKey(secretA), sha256.Sum256([]byte(secretA)); got != want {
		t.Fatalf("DeriveKey = %x, want %x", got, want)
	}
}

// flip returns sealed with one bit of its decoded payload changed at i
// (negative i counts from the end).
func flip(t *testing.T, sealed string, i int) string {
	t.Helper()
	parts := strings.SplitN(sealed, ".", 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(raw)
	}
	raw[i] ^= 0x01
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(raw)
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	v, _ := vaultWith(secretA)
	const id = "abcdefghijklmnopqrstuvwxyz"
	sealed, err := v.Seal(ctx, id, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := vaultWith(secretB)
	sealedB, err := other.Seal(ctx, id, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(sealed, ".", 3)
	tests := []struct {
		name   string
		keyID  string
		sealed string
		want   error
	}{
		{"nonce changed", id, flip(t, sealed, 0), ErrOpen},
		{"ciphertext changed", id, flip(t, sealed, 14), ErrOpen},
		{"tag changed", id, flip(t, sealed, -1), ErrOpen},
		{"another key id (AAD)", "bbbbbbbbbbbbbbbbbbbbbbbbbb", sealed, ErrOpen},
		{"empty key id", "", sealed, ErrOpen},
		{"sealed under another secret", id, sealedB, ErrWrongSecret},
		{"kid swapped to another secret's", id, strings.SplitN(sealedB, ".", 3)[0] + "." + strings.SplitN(sealedB, ".", 3)[1] + "." + parts[2], ErrWrongSecret},
		{"truncated", id, sealed[:len(sealed)-30], ErrOpen},
		{"too short to hold a nonce", id, parts[0] + "." + parts[1] + ".AAAA", ErrMalformed},
		{"unknown version", id, "v2." + parts[1] + "." + parts[2], ErrMalformed},
		{"no separators", id, "garbage", ErrMalformed},
		{"bad base64", id, parts[0] + "." + parts[1] + ".!!!!", ErrMalformed},
		{"empty", id, "", ErrMalformed},
		{"plaintext stored by mistake", id, plaintext, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Open(ctx, tc.keyID, tc.sealed)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %q, %v; want %v", got, err, tc.want)
			}
			if got != "" {
				t.Errorf("Open returned %q with an error", got)
			}
			for _, s := range []string{plaintext, secretA, secretB} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q leaks a secret", err)
				}
			}
		})
	}
}

func TestSecretProblems(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		secret string
		fail   error
		want   error
	}{
		{"weak secret", "weak-secret-q7", nil, ErrWeakSecret},
		{"empty secret", "", nil, ErrWeakSecret},
		{"secrets manager down", secretA, errors.New("secretsmanager: throttled"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, src := vaultWith(tc.secret)
			src.fail = tc.fail
			_, err := v.Seal(ctx, "k", plaintext)
			if err == nil {
				t.Fatal("Seal succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Seal error %v, want %v", err, tc.want)
			}
			if tc.fail != nil && !errors.Is(err, tc.fail) {
				t.Fatalf("Seal error %v does not wrap the cause", err)
			}
			if strings.Contains(err.Error(), plaintext) || (tc.secret != "" && strings.Contains(err.Error(), tc.secret)) {
				t.Errorf("error %q leaks a secret", err)
			}
			if _, err := v.Open(ctx, "k", "v1.00000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); err == nil {
				t.Errorf("Open succeeded without a usable secret")
			}
		})
	}
	if _, err := New(&fakeSecrets{}, "missing").Seal(ctx, "k", plaintext); err == nil {
		t.Errorf("Seal with a missing secret succeeded")
	}
	v, _ := vaultWith(secretA)
	if _, err := v.Seal(ctx, "", plaintext); err == nil {
		t.Errorf("Seal without a key id succeeded")
	}
}
