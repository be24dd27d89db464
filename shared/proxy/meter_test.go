package proxy

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stipend/stipend/shared/ledger"
)

// TestCopyJSON checks a non-streamed body reaches the client whole and its
// usage is read, whether its length is known or not and however upstream's
// reads split it.
func TestCopyJSON(t *testing.T) {
	const usage = `"usage":{"prompt_tokens":9,"completion_tokens":7}}`
	short := `{"id":"x","choices":[],` + usage
	long := `{"id":"` + strings.Repeat("x", maxPresize) + `",` + usage
	tests := []struct {
		name   string
		body   string
		length int64
		split  func(io.Reader) io.Reader
	}{
		{"length known, one read", short, int64(len(short)), nil},
		{"length known, a byte a read", short, int64(len(short)), iotest.OneByteReader},
		{"length known, the end with the last bytes", short, int64(len(short)), iotest.DataErrReader},
		{"length unknown", short, -1, nil},
		{"length unknown, half a read at a time", short, -1, iotest.HalfReader},
		{"length known, past the presize bound", long, int64(len(long)), nil},
		{"length unknown, long", long, -1, iotest.HalfReader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.split != nil {
				body = tt.split(body)
			}
			m := &meter{ev: &ledger.Event{}}
			w := httptest.NewRecorder()
			if err := m.copyJSON(w, body, tt.length); err != nil {
				t.Fatal(err)
			}
			if w.Body.String() != tt.body {
				t.Errorf("the client got %d bytes, want the %d sent", w.Body.Len(), len(tt.body))
			}
			if want := (ledger.Usage{PromptTokens: 9, CompletionTokens: 7}); m.usage == nil || *m.usage != want {
				t.Errorf("usage %+v, want %+v", m.usage, want)
			}
		})
	}
}
