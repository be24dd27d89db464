package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Check is one dependency a readiness probe asks about.
type Check struct {
	Name string                          // as the answer names it, e.g. "dynamodb"
	Ping func(ctx context.Context) error // nil when the dependency answers
}

// Readiness is the answer of GET /readyz.
type Readiness struct {
	Status       string            `json:"status"`         // "ready" or "unavailable"
	Down         []string          `json:"down,omitempty"` // the checks that failed, in order
	Dependencies map[string]string `json:"dependencies"`   // check name: "ok" or "down"
}

// ReadyTimeout bounds all of one readiness probe's checks together.
const ReadyTimeout = 2 * time.Second

// WithReadiness returns h with GET /readyz answered by running checks
// concurrently, each bounded by ReadyTimeout: 200 and status "ready" when
// all pass, else 503 naming the dependencies that are down. Why a check
// failed is logged, never answered. Every other request goes to h, so
// GET /healthz stays the handler's own cheap answer.
func WithReadiness(h http.Handler, log *slog.Logger, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Go(func() { errs[i] = c.Ping(ctx) })
		}
		wg.Wait()
		ans := Readiness{Status: "ready", Dependencies: make(map[string]string, len(checks))}
		for i, c := range checks {
			ans.Dependencies[c.Name] = "ok"
			if errs[i] != nil {
				ans.Status = "unavailable"
				ans.Down = append(ans.Down, c.Name)
				ans.Dependencies[c.Name] = "down"
				log.LogAttrs(ctx, slog.LevelWarn, "readiness check failed",
					slog.String("dependency", c.Name), slog.String("cause", errs[i].Error()))
			}
		}
		status := http.StatusOK
		if len(ans.Down) > 0 {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(ans)
	})
}
