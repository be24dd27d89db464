package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// MaxProfile bounds one CPU profile that ServeProfiles records.
const MaxProfile = 10 * time.Minute

// ServeProfiles serves the process's profiles on addr, for benchmarks on a
// laptop (never in Lambda: callers check InLambda), until ctx ends:
//
//	GET /debug/pprof/profile?seconds=N   CPU profile over the next N seconds (a decimal, at most MaxProfile)
//	GET /debug/pprof/heap                live heap
//	GET /debug/pprof/allocs              allocations since the start
//	GET /debug/allocations               {"objects":N,"bytes":N}: heap allocations since the start, exact
//
// Each /debug/pprof answer is in pprof's format (go tool pprof reads it);
// /debug/allocations counts every allocation (the profiles sample them), so
// a benchmark can divide the difference over a run by its requests.
func ServeProfiles(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: profiles(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving profiles", slog.String("addr", ln.Addr().String()))
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && ctx.Err() == nil {
		return fmt.Errorf("serve profiles on %s: %w", addr, err)
	}
	return nil
}

// profiles is ServeProfiles' handler.
func profiles() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/profile", cpuProfile)
	for _, name := range []string{"heap", "allocs"} {
		mux.HandleFunc("GET /debug/pprof/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			if err := pprof.Lookup(name).WriteTo(w, 0); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})
	}
	mux.HandleFunc("GET /debug/allocations", allocations)
	return mux
}

// allocations answers the heap allocations since the process started.
// runtime.ReadMemStats stops the world for a moment, which a benchmark's
// read before and after its run can afford; runtime/metrics would not, but
// importing it costs every cold start a tenth of a millisecond of package
// initialisation.
func allocations(w http.ResponseWriter, _ *http.Request) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"objects":%d,"bytes":%d}`+"\n", m.Mallocs, m.TotalAlloc)
}

func cpuProfile(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
	d := time.Duration(secs * float64(time.Second))
	if err != nil || d <= 0 || d > MaxProfile {
		http.Error(w, "seconds must be a positive number, at most "+MaxProfile.String(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := pprof.StartCPUProfile(w); err != nil {
		http.Error(w, err.Error(), http.StatusConflict) // another profile is running
		return
	}
	select {
	case <-time.After(d):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}
