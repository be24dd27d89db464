package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

func TestWithReadiness(t *testing.T) {
	ok := func(context.Context) error { return nil }
	fail := func(context.Context) error { return errors.New("connection refused") }
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() } // bounded by ReadyTimeout
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	tests := []struct {
		name   string
		checks []Check
		status int
		want   Readiness
	}{
		{"all up", []Check{{"dynamodb", ok}, {"secretsmanager", ok}}, 200,
			Readiness{Status: "ready", Dependencies: map[string]string{"dynamodb": "ok", "secretsmanager": "ok"}}},
		{"secrets down", []Check{{"dynamodb", ok}, {"secretsmanager", fail}}, 503,
			Readiness{Status: "unavailable", Down: []string{"secretsmanager"}, Dependencies: map[string]string{"dynamodb": "ok", "secretsmanager": "down"}}},
		{"dynamodb hangs", []Check{{"dynamodb", hang}, {"secretsmanager", ok}}, 503,
			Readiness{Status: "unavailable", Down: []string{"dynamodb"}, Dependencies: map[string]string{"dynamodb": "down", "secretsmanager": "ok"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := WithReadiness(next, slog.New(slog.DiscardHandler), tt.checks...)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			var got Readiness
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("answer = %+v, want %+v", got, tt.want)
			}
			// Other paths, /healthz included, go to the handler unchecked.
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != http.StatusTeapot {
				t.Errorf("/healthz = %d, want the wrapped handler's answer", rec.Code)
			}
		})
	}
}
