package admin

// GET /api/v1/audit: the audit trail package audit records around every
// mutating route (see its documentation for what an entry holds).

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/stipend/stipend/shared/admin/audit"
	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/admin/response"
	"github.com/stipend/stipend/shared/auditlog"
)

// RequestIDHeader carries the id of an audited request to the client.
const RequestIDHeader = audit.RequestIDHeader

// AuditStore keeps the audit trail (written by package audit around each
// mutating route, listed here); *dynamo.Store implements it.
// ListAudit reports a cursor it did not issue with auditlog.ErrBadCursor.
type AuditStore interface {
	PutAudit(ctx context.Context, e *auditlog.Entry) error
	ListAudit(ctx context.Context, q auditlog.Query) (auditlog.Page, error)
}

// Bounds of GET /api/v1/audit.
const (
	auditDefaultSpan = 365 * 24 * time.Hour
	auditMaxSpan     = 10 * 366 * 24 * time.Hour
	auditMaxLimit    = 1000
)

// auditPage is the answer to GET /api/v1/audit: entries newest first, and
// the cursor for the next page (null when there is none).
type auditPage struct {
	Entries []*auditlog.Entry `json:"entries"`
	Cursor  *string           `json:"cursor"`
}

// listAudit answers GET /api/v1/audit?start=&end=&targetId=&cursor=&limit=.
// start and end are seconds since the epoch, [start, end); end defaults to
// now and start to a year before end. limit is 1..1000 (default 100).
func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) error {
	vals := r.URL.Query()
	seconds := func(name string, def int64) (int64, error) {
		s := vals.Get(name)
		if s == "" {
			return def, nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 || v > request.MaxUnixTime {
			return 0, mustBe(name, "a time in whole seconds since the epoch")
		}
		return v, nil
	}
	end, err := seconds("end", h.cfg.Now().Unix()+1)
	if err != nil {
		return err
	}
	start, err := seconds("start", max(end-int64(auditDefaultSpan/time.Second), 0))
	if err != nil {
		return err
	}
	if end <= start {
		return invalid("end", "end must be greater than start")
	}
	if time.Duration(end-start)*time.Second > auditMaxSpan {
		return invalid("start", "start and end must be at most 10 years apart; page through a longer history one range at a time")
	}
	limit := 100
	if s := vals.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > auditMaxLimit {
			return mustBe("limit", "an integer from 1 to 1000")
		}
	}
	target := vals.Get("targetId")
	if len(target) > 128 {
		return mustBe("targetId", "at most 128 characters")
	}
	page, err := h.auditLog.ListAudit(r.Context(), auditlog.Query{
		Start: time.Unix(start, 0), End: time.Unix(end, 0), TargetID: target,
		Cursor: vals.Get("cursor"), Limit: limit,
	})
	if errors.Is(err, auditlog.ErrBadCursor) {
		return mustBe("cursor", "a cursor returned by a previous GET /api/v1/audit")
	}
	if err != nil {
		return response.StoreError(err, "audit entries")
	}
	out := auditPage{Entries: response.NonEmpty(page.Entries)}
	for _, e := range out.Entries {
		e.TargetIDs, e.Fields = response.NonEmpty(e.TargetIDs), response.NonEmpty(e.Fields)
	}
	if page.Cursor != "" {
		out.Cursor = &page.Cursor
	}
	return response.JSON(w, http.StatusOK, out)
}

// routeAudit registers the audit routes.
func (h *Handler) routeAudit() {
	h.mux.Handle("GET /api/v1/audit", h.handle(h.listAudit))
}
