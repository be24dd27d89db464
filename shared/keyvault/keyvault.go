// Package keyvault seals the plaintext of proxy keys whose retrieval method
// is ANYTIME_BY_VIEWER, so the admin can read them back later, while the
// stored record only ever holds ciphertext.
//
// Sealing is AES-256-GCM. The 32-byte data key is the SHA-256 of a secret
// string read from AWS Secrets Manager (STIPEND_KEY_ENCRYPTION_SECRET):
// template.yaml generates that secret at deploy time with
// GenerateSecretString, which yields a random password rather than raw key
// bytes, so the password is hashed into a uniformly distributed 256-bit key.
// Any secret of at least MinSecretLength characters works the same way; a
// random 64-character alphanumeric password carries about 380 bits of
// entropy.
//
// Each sealed value binds the proxy key's id as additional authenticated
// data: a ciphertext copied onto another key's record does not open. The
// sealed form is
//
//	v1.<kid>.<base64url(nonce || ciphertext || tag)>
//
// where kid is 8 hex digits identifying the data key (a hash of it, never the
// key itself), so a value sealed under a different secret is reported as
// such rather than as tampering. Do not rotate the secret: values sealed
// under the old one can no longer be opened.
//
// Neither the secret, the data key nor a plaintext appears in an error.
package keyvault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MinSecretLength is the shortest secret string accepted as key material.
const MinSecretLength = 32

// version prefixes every sealed value.
const version = "v1"

// Errors callers can test for with errors.Is.
var (
	// ErrOpen reports a sealed value that does not open: tampered with,
	// truncated, or sealed for another key id.
	ErrOpen = errors.New("sealed key does not open (tampered with, or sealed for another key)")
	// ErrWrongSecret reports a value sealed under another data key than the
	// current secret's.
	ErrWrongSecret = errors.New("sealed key was sealed under a different key encryption secret")
	// ErrMalformed reports a string that is not a sealed value.
	ErrMalformed = errors.New("malformed sealed key")
	// ErrWeakSecret reports a key encryption secret shorter than MinSecretLength.
	ErrWeakSecret = errors.New("key encryption secret is too short")
)

// SecretSource returns a secret's string value by id (a name or ARN).
// *secrets.Manager and the cache secrets.NewCache returns implement it.
type SecretSource interface {
	Get(ctx context.Context, id string) (string, error)
}

// Vault seals and opens proxy keys with the data key derived from one
// secret. It is safe for concurrent use; it keeps no state of its own, so a
// caching SecretSource decides how often the secret is read.
type Vault struct {
	src      SecretSource
	secretID string
}

// New returns a Vault whose data key is the SHA-256 of secret secretID in src.
func New(src SecretSource, secretID string) *Vault {
	return &Vault{src: src, secretID: secretID}
}

// dataKey is a derived AES-256 key and its public identifier.
type dataKey struct {
	aead cipher.AEAD
	kid  string
}

// DeriveKey returns the AES-256 key stipend derives from a key encryption
// secret: its SHA-256.
func DeriveKey(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// keyID names a data key without revealing it: the first 4 bytes of a
// domain-separated hash of the key.
func keyID(k [32]byte) string {
	h := sha256.Sum256(append([]byte("stipend keyvault kid\x00"), k[:]...))
	return hex.EncodeToString(h[:4])
}

func (v *Vault) load(ctx context.Context) (dataKey, error) {
	secret, err := v.src.Get(ctx, v.secretID)
	if err != nil {
		return dataKey{}, fmt.Errorf("read key encryption secret: %w", err)
	}
	if len(secret) < MinSecretLength {
		return dataKey{}, fmt.Errorf("%w: need at least %d characters", ErrWeakSecret, MinSecretLength)
	}
	k := DeriveKey(secret)
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return dataKey{}, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return dataKey{}, fmt.Errorf("gcm: %w", err)
	}
	return dataKey{aead: aead, kid: keyID(k)}, nil
}

// Seal encrypts plaintext for the proxy key keyID and returns the sealed
// value to store.
func (v *Vault) Seal(ctx context.Context, keyID, plaintext string) (string, error) {
	if keyID == "" {
		return "", errors.New("seal: key id is required")
	}
	k, err := v.load(ctx)
	if err != nil {
		return "", fmt.Errorf("seal key %s: %w", keyID, err)
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal key %s: nonce: %w", keyID, err)
	}
	out := k.aead.Seal(nonce, nonce, []byte(plaintext), []byte(keyID))
	return version + "." + k.kid + "." + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal returned for the same keyID.
func (v *Vault) Open(ctx context.Context, keyID, sealed string) (string, error) {
	ver, rest, ok1 := strings.Cut(sealed, ".")
	kid, payload, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || ver != version || len(kid) != 8 {
		return "", fmt.Errorf("open key %s: %w", keyID, ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", fmt.Errorf("open key %s: %w", keyID, ErrMalformed)
	}
	k, err := v.load(ctx)
	if err != nil {
		return "", fmt.Errorf("open key %s: %w", keyID, err)
	}
	if kid != k.kid {
		return "", fmt.Errorf("open key %s: %w", keyID, ErrWrongSecret)
	}
	n := k.aead.NonceSize()
	if len(raw) < n+k.aead.Overhead() {
		return "", fmt.Errorf("open key %s: %w", keyID, ErrMalformed)
	}
	plain, err := k.aead.Open(nil, raw[:n], raw[n:], []byte(keyID))
	if err != nil {
		// The cause from crypto/cipher says nothing useful; keep it out.
		return "", fmt.Errorf("open key %s: %w", keyID, ErrOpen)
	}
	return string(plain), nil
}
