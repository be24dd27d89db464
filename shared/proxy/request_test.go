package proxy

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apierror"
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

// TestParseRequestExactNames: fields are read by their exact names, as the
// provider reads them. encoding/json folds case when decoding into a struct,
// so "Model" after "model" used to decide the price and the allowed-model
// check while the provider ran "model" (found by FuzzParseRequest).
func TestParseRequestExactNames(t *testing.T) {
	tests := []struct {
		name, body string
		model      string
		stream     bool
		maxTokens  *int64
	}{
		{"Model after model", `{"model":"o1","Model":"gpt-4o-mini"}`, "", false, nil},
		{"MODEL alone", `{"MODEL":"gpt-4o-mini"}`, "", false, nil},
		{"Stream is not stream", `{"model":"m","Stream":true}`, "", false, nil},
		{"MAX_TOKENS is not max_tokens", `{"model":"m","MAX_TOKENS":5}`, "", false, nil},
		{"Messages is not messages", `{"model":"m","messages":[],"Messages":[{"role":"user","content":"long"}]}`, "", false, nil},
		{"exact names", `{"model":"m","stream":true,"max_tokens":7}`, "m", true, new(int64(7))},
		{"last duplicate wins, as in the provider's parser", `{"model":"a","model":"b"}`, "b", false, nil},
		{"unrelated capitals are the provider's business", `{"model":"m","Foo":1}`, "m", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := parseRequest("/v1/chat/completions", []byte(tt.body))
			if tt.model == "" {
				// A name that differs from a field the proxy reads only in
				// case is refused, naming it.
				var ae *apierror.Error
				if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "case-sensitive") {
					t.Fatalf("parseRequest = %+v, %v; want a 400 about case", req, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRequest: %v", err)
			}
			if req.Model != tt.model || req.Stream != tt.stream {
				t.Errorf("model %q stream %v, want %q %v", req.Model, req.Stream, tt.model, tt.stream)
			}
			if (req.MaxTokens == nil) != (tt.maxTokens == nil) || req.MaxTokens != nil && *req.MaxTokens != *tt.maxTokens {
				t.Errorf("max_tokens %v, want %v", req.MaxTokens, tt.maxTokens)
			}
		})
	}
}

// TestParseRequestShape: a body that is not JSON is told so, one that is
// JSON but no object is told that, whatever part of it is wrong.
func TestParseRequestShape(t *testing.T) {
	const notJSON, notObject = "request body is not valid JSON", "request body must be a JSON object"
	tests := []struct{ name, body, message string }{
		{"empty", ``, notJSON},
		{"truncated", `{"model":`, notJSON},
		{"trailing garbage", `{"model":"m"} x`, notJSON},
		{"two objects", `{"model":"m"}{}`, notJSON},
		{"single quotes", `{'model':'m'}`, notJSON},
		{"array", `[{"model":"m"}]`, notObject},
		{"null", `null`, notObject},
		{"string", `"model"`, notObject},
		{"number", ` 42 `, notObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseRequest("/v1/chat/completions", []byte(tt.body))
			var ae *apierror.Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Message != tt.message {
				t.Fatalf("parseRequest(%q) = %v; want a 400 saying %q", tt.body, err, tt.message)
			}
		})
	}
}

// TestMessagesDeepElement: every element of messages is checked to be an
// object, also past an element nested deeper than jsonscan walks (found by
// review: the elements from there on went unchecked).
func TestMessagesDeepElement(t *testing.T) {
	deepArray := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	deepObject := `{"role":"user","content":"hi","x":` + deepArray + `}`
	for _, tt := range []struct{ name, messages, want string }{
		{"a deep array as messages[0]", "[" + deepArray + "]", "messages[0] must be an object"},
		{"a string after a deep message", "[" + deepObject + `,"x"]`, "messages[1] must be an object"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"model":"gpt-4o-mini","messages":` + tt.messages + `}`
			_, err := parseRequest("/v1/chat/completions", []byte(body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseRequest = %v; want a 400 saying %q", err, tt.want)
			}
		})
	}
}
