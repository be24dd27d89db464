package admin

// A key's later life: archiving (DELETE /api/v1/secret-keys/{keyId}) and
// reading back the plaintext of an ANYTIME_BY_VIEWER key
// (GET /api/v1/secret-keys/{keyId}/key).
//
// Archiving revokes the key and hides it from GET /api/v1/secret-keys
// (unless ?includeArchived=true); the key's record, events and spend stay,
// so GET /api/v1/secret-keys/{keyId} and reporting keep working. An
// archived key cannot be reinstated (PATCH "revoked": false is refused).
//
// keyRetrievalMethod ANYTIME_BY_VIEWER keeps the plaintext sealed with
// Config.Vault (package keyvault: AES-256-GCM, the key id as additional
// data) in the key's stored record, next to its hash; ONCE and
// ONCE_PER_VIEWER keep only the hash. Reading it back is audited.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/stipend/stipend/shared/admin/form"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
)

// Vault seals a proxy key's plaintext for storage and opens it again, bound
// to the key's id. *keyvault.Vault implements it. Neither method may put the
// plaintext in its error.
type Vault interface {
	Seal(ctx context.Context, keyID, plaintext string) (string, error)
	Open(ctx context.Context, keyID, sealed string) (string, error)
}

// Error codes of key retrieval.
const (
	// CodeNotRetrievable answers a read of a key whose plaintext is not kept.
	CodeNotRetrievable = "not_retrievable"
	// ReasonArchived is the revokedReason an archived key gets when it had none.
	ReasonArchived = "archived"
)

// routeLifecycle registers archiving and key retrieval.
func (h *Handler) routeLifecycle() {
	h.mux.Handle("DELETE /api/v1/secret-keys/{keyId}", h.handle(h.archiveKey))
	h.mux.Handle("GET /api/v1/secret-keys/{keyId}/key", h.handle(h.retrieveKey))
}

// retrievedKey is the answer to GET /api/v1/secret-keys/{keyId}/key.
type retrievedKey struct {
	KeyID string `json:"keyId"`
	Key   string `json:"key"`
}

func (h *Handler) retrieveKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("keyId")
	k, err := h.keys.GetKey(r.Context(), id)
	if err != nil {
		return response.StoreError(err, "secret key "+id)
	}
	method := k.KeyRetrievalMethod
	if method == "" {
		method = form.RetrieveOnce
	}
	if method != form.RetrieveAnytimeByViewer {
		return apierror.New(http.StatusForbidden, CodeNotRetrievable, fmt.Sprintf(
			"secret key %s has keyRetrievalMethod %s: only its hash is kept, so it cannot be shown again", id, method))
	}
	if k.Sealed == "" {
		return apierror.New(http.StatusForbidden, CodeNotRetrievable, fmt.Sprintf(
			"secret key %s has no stored plaintext to show", id))
	}
	if h.cfg.Vault == nil {
		return apierror.New(http.StatusServiceUnavailable, apierror.CodeServiceUnavailable, "key retrieval is not configured")
	}
	plain, err := h.cfg.Vault.Open(r.Context(), k.ID, k.Sealed)
	if err == nil && !apikey.Matches(plain, k.Hash) {
		err = errors.New("opened plaintext does not match the key's hash")
		plain = ""
	}
	if err != nil {
		return apierror.Wrap(err, http.StatusInternalServerError, apierror.CodeInternal,
			"the key could not be decrypted")
	}
	h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "secret key retrieved", slog.String("key", k.ID))
	w.Header().Set("Cache-Control", "no-store")
	return response.JSON(w, http.StatusOK, retrievedKey{KeyID: k.ID, Key: plain})
}

// archiveRequest is the optional body of DELETE /api/v1/secret-keys/{keyId}.
type archiveRequest struct {
	RevokedReason *string `json:"revokedReason" rule:"a string"`
}

// archiveKey revokes and archives a key and answers with its view. Archiving
// an archived key changes nothing and answers the same way. The
// revokedReason is the one given, else the one of an earlier revocation,
// else "archived".
func (h *Handler) archiveKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("keyId")
	var req archiveRequest
	if err := request.DecodeOptional(w, r, &req); err != nil {
		return err
	}
	if req.RevokedReason != nil && len(*req.RevokedReason) > 1024 {
		return mustBe("revokedReason", "at most 1024 characters")
	}
	archived := false
	k, err := response.Update(r.Context(), "secret key "+id,
		func(ctx context.Context) (*apikey.Key, error) { return h.keys.GetKey(ctx, id) },
		func(k *apikey.Key) error {
			if k.Archived {
				return response.ErrNoWrite // archiving twice changes nothing
			}
			now := h.cfg.Now().Unix()
			switch {
			case req.RevokedReason != nil && strings.TrimSpace(*req.RevokedReason) != "":
				k.RevokedReason = strings.TrimSpace(*req.RevokedReason)
			case !k.Revoked || k.RevokedReason == "":
				k.RevokedReason = ReasonArchived
			}
			k.Revoked, k.Archived, k.ArchivedAt, k.UpdatedAt = true, true, now, now
			archived = true
			return nil
		},
		h.keys.UpdateKey)
	if err != nil {
		return err
	}
	if archived {
		h.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "secret key archived", slog.String("key", k.ID))
	}
	return response.JSON(w, http.StatusOK, viewOf(k))
}

// withoutArchived returns list without its archived keys, unless the
// request asks for them with ?includeArchived=true.
func withoutArchived(r *http.Request, list []*apikey.Key) ([]*apikey.Key, error) {
	if s := r.URL.Query().Get("includeArchived"); s != "" {
		include, err := strconv.ParseBool(s)
		if err != nil {
			return nil, mustBe("includeArchived", "true or false")
		}
		if include {
			return list, nil
		}
	}
	out := list[:0:0]
	for _, k := range list {
		if !k.Archived {
			out = append(out, k)
		}
	}
	return out, nil
}
