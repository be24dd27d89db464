package reporting

import (
	"context"
	"net/http"

	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
)

// Statements reads monthly statements and running counters.
type Statements interface {
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

// KeyStatements answers GET /api/v1/secret-keys/{keyId}/statements.
func (h *Handler) KeyStatements(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("keyId")
	if _, err := h.cfg.Owners.GetKey(r.Context(), id); err != nil {
		return response.StoreError(err, "key")
	}
	return h.statements(w, r, "KEY#"+id)
}

// UserStatements answers GET /api/v1/users/{userId}/statements.
func (h *Handler) UserStatements(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("userId")
	if _, err := h.cfg.Owners.GetUser(r.Context(), id); err != nil {
		return response.StoreError(err, "user")
	}
	return h.statements(w, r, "USER#"+id)
}

// statements answers an owner's closed months and its running month.
func (h *Handler) statements(w http.ResponseWriter, r *http.Request, owner string) error {
	ctx := r.Context()
	list, err := h.cfg.Statements.Statements(ctx, owner)
	if err != nil {
		return response.StoreError(err, "statements")
	}
	now := h.cfg.Now().UTC()
	tot, err := h.cfg.Statements.OwnerTotals(ctx, owner, budget.MonthCounter(now))
	if err != nil {
		return response.StoreError(err, "month to date")
	}
	return response.JSON(w, http.StatusOK, struct {
		Statements  []ledger.Statement `json:"statements"`
		MonthToDate monthToDate        `json:"monthToDate"`
	}{list, monthToDate{
		Month: now.Format("2006-01"), CostInUsd: tot.Cost, NumberOfRequests: tot.Requests,
		SuccessCount: tot.Successes, PromptTokens: tot.PromptTokens, CompletionTokens: tot.CompletionTokens,
	}})
}
