package admin

import (
	"context"
	"net/http"

	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// StatementStore reads monthly statements and running counters.
type StatementStore interface {
	// Statements returns an owner's closed months ("KEY#<id>" or "USER#<userId>").
	Statements(ctx context.Context, owner string) ([]ledger.Statement, error)
	// OwnerTotals returns the settled figures of one of an owner's counters.
	OwnerTotals(ctx context.Context, owner, counter string) (ledger.Totals, error)
}

// monthToDate is the running month of a key or user. It starts from zero on
// the 1st of each month (UTC) by itself: counters are named by their month.
type monthToDate struct {
	Month            string      `json:"month"`
	CostInUsd        money.Nanos `json:"costInUsd"`
	NumberOfRequests int64       `json:"numberOfRequests"`
	SuccessCount     int64       `json:"successCount"`
	PromptTokens     int64       `json:"promptTokenCount"`
	CompletionTokens int64       `json:"completionTokenCount"`
}

func (h *Handler) routeStatements() {
	h.mux.Handle("GET /api/v1/secret-keys/{keyId}/statements", h.handle(func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("keyId")
		if _, err := h.cfg.Store.GetKey(r.Context(), id); err != nil {
			return storeError(err, "key")
		}
		return h.statements(w, r, "KEY#"+id)
	}))
	h.mux.Handle("GET /api/v1/users/{userId}/statements", h.handle(func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("userId")
		if _, err := h.cfg.Store.GetUser(r.Context(), id); err != nil {
			return storeError(err, "user")
		}
		return h.statements(w, r, "USER#"+id)
	}))
}

// statements answers an owner's closed months and its running month.
func (h *Handler) statements(w http.ResponseWriter, r *http.Request, owner string) error {
	ctx := r.Context()
	list, err := h.cfg.Store.Statements(ctx, owner)
	if err != nil {
		return storeError(err, "statements")
	}
	now := h.cfg.Now().UTC()
	tot, err := h.cfg.Store.OwnerTotals(ctx, owner, budget.MonthCounter(now))
	if err != nil {
		return storeError(err, "month to date")
	}
	return writeJSON(w, http.StatusOK, struct {
		Statements  []ledger.Statement `json:"statements"`
		MonthToDate monthToDate        `json:"monthToDate"`
	}{list, monthToDate{
		Month: now.Format("2006-01"), CostInUsd: tot.Cost, NumberOfRequests: tot.Requests,
		SuccessCount: tot.Successes, PromptTokens: tot.PromptTokens, CompletionTokens: tot.CompletionTokens,
	}})
}
