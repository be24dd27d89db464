package reporting

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apierror"
)

func TestWriteReport(t *testing.T) {
	big := map[string]string{"pad": strings.Repeat("a", maxReportBytes)}
	small := map[string]int{"n": 1}
	tests := []struct {
		name           string
		v              any
		acceptEncoding string
		status         int
		gzipped        bool
	}{
		{"small, plain", small, "", 200, false},
		{"small, not worth gzip", small, "gzip", 200, false},
		{"big, plain: refused", big, "", 400, false},
		{"big, gzip refused by q=0", big, "gzip;q=0, identity", 400, false},
		{"big, gzipped", big, "deflate, GZIP", 200, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			if tc.acceptEncoding != "" {
				req.Header.Set("Accept-Encoding", tc.acceptEncoding)
			}
			rec := httptest.NewRecorder()
			err := writeReport(rec, req, tc.v)
			if tc.status != 200 {
				var ae *apierror.Error
				if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message, "gzip") {
					t.Fatalf("err %v, want a %d that mentions gzip", err, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.Header().Get("Content-Encoding") == "gzip"; got != tc.gzipped {
				t.Fatalf("gzipped %v, want %v", got, tc.gzipped)
			}
			body := io.Reader(rec.Body)
			if tc.gzipped {
				zr, err := gzip.NewReader(rec.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			b, _ := io.ReadAll(body)
			want, _ := json.Marshal(tc.v)
			if !bytes.Equal(bytes.TrimSpace(b), want) {
				t.Errorf("body differs (%d bytes, want %d)", len(b), len(want))
			}
		})
	}
}

func TestLambdaBodySize(t *testing.T) {
	tests := []struct {
		body   string
		binary bool
		want   int
	}{
		{`{"a":1}`, false, 7 + 2},
		{`"<&>"\`, false, 6 + 2 + 15 + 1},
		{"abc", true, 4},
		{"abcd", true, 8},
		{"", true, 0},
	}
	for _, tc := range tests {
		if got := lambdaBodySize([]byte(tc.body), tc.binary); got != tc.want {
			t.Errorf("lambdaBodySize(%q, %v) = %d, want %d", tc.body, tc.binary, got, tc.want)
		}
	}
}

// The gzip encoding reaches a real HTTP client, which undoes it.
