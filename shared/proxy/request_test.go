package proxy

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/pricing"
)

// TestCheckContext: the cheap context-window bound refuses long text, and
// only text: encoded images and a batch of inputs that each fit pass.
func TestCheckContext(t *testing.T) {
	price := pricing.Price{Model: "m", ContextWindow: 1000} // bound: 8000 bytes of text
	text := func(n int) string { return strings.Repeat("abcdefg ", n/7) }
	image := "data:image/png;base64," + base64.StdEncoding.EncodeToString(make([]byte, 50_000))
	audio := base64.StdEncoding.EncodeToString(make([]byte, 50_000))
	many := `"` + text(5000) + `"`
	for range 20 {
		many += `,"` + text(5000) + `"`
	}
	tests := []struct {
		name, path, body string
		refused          bool
	}{
		{"short", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, false},
		{"text beyond", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + text(9000) + `"}]}`, true},
		{"text spread over messages", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + text(5000) + `"},{"role":"user","content":"` + text(5000) + `"}]}`, true},
		{"blank padding not counted", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + strings.Repeat(" ", 20000) + `hi"}]}`, false},
		{"big image", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"` + image + `"}}]}]}`, false},
		{"big audio", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"` + audio + `","format":"wav"}}]}]}`, false},
		{"embeddings batch of fitting inputs", "/v1/embeddings", `{"input":[` + many + `]}`, false},
		{"embeddings input beyond", "/v1/embeddings", `{"input":["` + text(9000) + `"]}`, true},
		{"responses beyond", "/v1/responses", `{"input":"` + text(9000) + `"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkContext(tt.path, "m", []byte(tt.body), price)
			if (err != nil) != tt.refused {
				t.Fatalf("checkContext = %v, want refused %v", err, tt.refused)
			}
		})
	}
}
