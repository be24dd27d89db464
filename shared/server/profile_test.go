package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestProfiles checks each profile answers in pprof's (gzipped) format and
// that a bad duration is refused.
func TestProfiles(t *testing.T) {
	srv := httptest.NewServer(profiles())
	defer srv.Close()
	tests := []struct {
		path       string
		wantStatus int
	}{
		{"/debug/pprof/profile?seconds=0.2", http.StatusOK},
		{"/debug/pprof/heap", http.StatusOK},
		{"/debug/pprof/allocs", http.StatusOK},
		{"/debug/pprof/profile", http.StatusBadRequest},
		{"/debug/pprof/profile?seconds=-1", http.StatusBadRequest},
		{"/debug/pprof/profile?seconds=100000", http.StatusBadRequest},
		{"/debug/pprof/goroutine", http.StatusNotFound},
		{"/debug/allocations", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			if tt.path == "/debug/allocations" {
				var got struct{ Objects, Bytes uint64 }
				if err := json.Unmarshal(body, &got); err != nil || got.Objects == 0 || got.Bytes < got.Objects {
					t.Fatalf("allocations %s: %+v, %v; want counts (bytes at least objects)", body, got, err)
				}
				return
			}
			if _, err := gzip.NewReader(bytes.NewReader(body)); err != nil {
				t.Errorf("not a pprof profile (gzip): %v", err)
			}
		})
	}
}
