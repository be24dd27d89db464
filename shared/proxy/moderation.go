package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/provider"
)

// Moderation: for keys with moderation on, the input of every forwarded
// request is first sent to the provider's (free) moderation endpoint, and a
// flagged request is refused with 400 content_flagged instead of reaching
// the model — the forum's "automoderation" that keeps a shared account from
// being banned for one student's prompts.
//
// Each flagged request is also a strike on the key (Config.Strikes): at the
// key's moderationStrikeLimit (apikey.DefaultStrikeLimit, 3, when unset) the
// key is suspended, and every later request gets 401 key_suspended until an
// admin lifts it (PATCH {"suspended": false}, which also resets the strikes).

// moderationModel screens inputs; OpenAI does not bill it.
const moderationModel = "omni-moderation-latest"

// maxModeratedBytes bounds the text sent for screening.
const maxModeratedBytes = 128 << 10

// moderationTimeout bounds the screening call.
const moderationTimeout = 15 * time.Second

// inputFields are the body fields that carry what a model is asked.
var inputFields = []string{"messages", "prompt", "input", "instructions", "system"}

// skippedKeys name JSON fields inside those that hold no text to screen.
var skippedKeys = map[string]bool{
	"role": true, "type": true, "id": true, "tool_call_id": true, "image_url": true,
	"url": true, "detail": true, "format": true, "name": true, "file_id": true, "data": true,
}

// moderationInput returns the text of a request's input: every string in
// its input fields, except identifiers and inline data.
func moderationInput(body []byte) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return ""
	}
	var b strings.Builder
	for _, f := range inputFields {
		raw, ok := obj[f]
		if !ok {
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) == nil {
			collectText(&b, v)
		}
	}
	s := b.String()
	if len(s) > maxModeratedBytes {
		s = s[:maxModeratedBytes]
	}
	return strings.TrimSpace(s)
}

func collectText(b *strings.Builder, v any) {
	switch x := v.(type) {
	case string:
		if !strings.HasPrefix(x, "data:") {
			b.WriteString(x)
			b.WriteByte('\n')
		}
	case []any:
		for _, e := range x {
			collectText(b, e)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic text
		for _, k := range keys {
			if !skippedKeys[k] {
				collectText(b, x[k])
			}
		}
	}
}

// moderate screens the request's input with the provider's moderation
// endpoint; a flagged input is an error the client sees as content_flagged.
func (h *Handler) moderate(ctx context.Context, prov *provider.Setting, apiKey string, body []byte) error {
	text := moderationInput(body)
	if text == "" {
		return nil
	}
	endpoint, err := prov.Endpoint("/v1/moderations", "", moderationModel)
	if err != nil {
		return apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError, "the provider setting has no usable base URL")
	}
	payload, _ := json.Marshal(map[string]string{"model": moderationModel, "input": text})
	ctx, cancel := context.WithTimeout(ctx, moderationTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError, "could not build the moderation request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	provider.Authorize(req.Header, prov.Provider, apiKey)
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return apierror.Wrap(err, http.StatusBadGateway, apierror.CodeUpstreamError,
			"this key requires moderation, and the moderation check could not be made")
	}
	defer resp.Body.Close()
	if rejectsKey(resp.StatusCode) {
		return errUpstreamAuth(prov, resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return apierror.Wrap(fmt.Errorf("moderation answered %d: %v", resp.StatusCode, err), http.StatusBadGateway, apierror.CodeUpstreamError,
			"this key requires moderation, and the moderation check failed")
	}
	var out struct {
		Results []struct {
			Flagged    bool            `json:"flagged"`
			Categories map[string]bool `json:"categories"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Results) == 0 {
		return apierror.Wrap(fmt.Errorf("moderation answer: %v", err), http.StatusBadGateway, apierror.CodeUpstreamError,
			"this key requires moderation, and the moderation answer could not be read")
	}
	var flagged []string
	for _, r := range out.Results {
		if !r.Flagged {
			continue
		}
		for c, on := range r.Categories {
			if on {
				flagged = append(flagged, c)
			}
		}
		if len(flagged) == 0 {
			flagged = append(flagged, "unspecified")
		}
	}
	if len(flagged) == 0 {
		return nil
	}
	sort.Strings(flagged)
	return apierror.New(http.StatusBadRequest, apierror.CodeContentFlagged,
		fmt.Sprintf("The request was flagged by moderation (%s) and was not sent to the model.", strings.Join(flagged, ", ")))
}

// strikeTimeout bounds counting a strike and suspending the key, which
// outlive a client that went away.
const strikeTimeout = 10 * time.Second

// strike counts the flagged request (its event eventID) against key and
// suspends the key when that reaches its limit. It returns the client's
// error: flagged, with the strike count and what follows from it. A strike
// that cannot be counted is logged; the request stays refused.
func (h *Handler) strike(ctx context.Context, key *apikey.Key, eventID string, flagged *apierror.Error) error {
	if h.cfg.Strikes == nil {
		return flagged
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), strikeTimeout)
	defer cancel()
	st, err := h.cfg.Strikes.Strike(ctx, key.ID, eventID)
	if err != nil {
		h.cfg.Log.LogAttrs(ctx, slog.LevelError, "could not count a moderation strike",
			slog.String("key", key.ID), slog.String("event", eventID), slog.String("cause", err.Error()))
		return flagged
	}
	limit := key.StrikeLimit()
	msg := fmt.Sprintf("%s This is strike %d of %d; at %d this key is suspended.", flagged.Message, st.Count, limit, limit)
	if st.Count >= limit {
		reason := fmt.Sprintf("%d requests flagged by moderation (the key's strike limit is %d)", st.Count, limit)
		suspended, err := h.cfg.Strikes.Suspend(ctx, key.ID, h.cfg.Now(), reason, st.EventIDs)
		if err != nil {
			h.cfg.Log.LogAttrs(ctx, slog.LevelError, "could not suspend a key",
				slog.String("key", key.ID), slog.Int64("strikes", st.Count), slog.String("cause", err.Error()))
		}
		h.keys.Forget(key.ID)
		if suspended {
			h.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "key suspended",
				slog.String("key", key.ID), slog.Int64("strikes", st.Count), slog.Int64("limit", limit))
		}
		msg = fmt.Sprintf("%s This was strike %d of %d: this key is now suspended until your instructor lifts the suspension.",
			flagged.Message, st.Count, limit)
	}
	e := *flagged
	e.Message = msg
	return &e
}
