package admin

// The key listing and one key, each with its usage when asked
// (includeMetrics): the routes are the keys', the figures package
// reporting's.

import (
	"net/http"

	"github.com/stipend/stipend/shared/admin/reporting"
	"github.com/stipend/stipend/shared/admin/response"
)

// keyDetail is one key with its time series, for GET /api/v1/secret-keys/{keyId}.
type keyDetail struct {
	keyView
	DataPoints        []reporting.DataPoint `json:"dataPoints"`
	LatencyInMsMedian int64                 `json:"latencyInMsMedian"`
	LatencyInMs99th   int64                 `json:"latencyInMs99th"`
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) error {
	q, err := reporting.ParseMetricsQuery(r, false)
	if err != nil {
		return err
	}
	list, err := h.keys.ListKeys(r.Context())
	if err != nil {
		return response.StoreError(err, "secret keys")
	}
	if list, err = withoutArchived(r, list); err != nil {
		return err
	}
	views := make([]keyView, len(list))
	ids := make([]string, len(list))
	for i, k := range list {
		views[i], ids[i] = viewOf(k), k.ID
	}
	if q.Include {
		ms, err := h.reports.KeyMetrics(r.Context(), ids, q)
		if err != nil {
			return err
		}
		for i := range views {
			views[i].Metrics = &ms[i]
		}
	}
	return response.JSON(w, http.StatusOK, views)
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("keyId")
	q, err := reporting.ParseMetricsQuery(r, true)
	if err != nil {
		return err
	}
	k, err := h.keys.GetKey(r.Context(), id)
	if err != nil {
		return response.StoreError(err, "secret key "+id)
	}
	// The seed answers "Fetch one" with an array of one key; clients written
	// for BricksAI read element [0], so stipend does the same.
	v := viewOf(k)
	if err := h.withStrikes(r.Context(), &v); err != nil {
		return err
	}
	if !q.Include {
		return response.JSON(w, http.StatusOK, []keyView{v})
	}
	u, err := h.reports.Usage(r.Context(), k.ID, q)
	if err != nil {
		return err
	}
	d := keyDetail{keyView: v, DataPoints: u.Points, LatencyInMsMedian: u.Median, LatencyInMs99th: u.P99}
	d.Metrics = &u.Total
	return response.JSON(w, http.StatusOK, []keyDetail{d})
}
