package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/apierror"
)

// FuzzParseRequest: parseRequest never panics, refuses only with a 400 in the
// contract's format, and a body it accepts has exactly the fields it reports,
// read by their exact names (as the provider reads them: no case folding).
func FuzzParseRequest(f *testing.F) {
	paths := []string{"/v1/chat/completions", "/v1/messages", "/v1/completions", "/v1/embeddings", "/v1/moderations", "/v1/responses"}
	for _, s := range []string{
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"n":2}`,
		`{"model":"o1","Model":"gpt-4o-mini","STREAM":true}`,
		`{"model":"a","model":"b","max_completion_tokens":null}`,
		`{"model":"m","prompt":["a","b"],"best_of":3,"suffix":"x"}`,
		`{"model":"m","input":"x","instructions":"y","max_output_tokens":9}`,
		`{"model":"m","max_tokens":1e3}`,
		`{"model":"m","max_tokens":9223372036854775808}`,
		`{"model":"\u00e9\ud800","stream_options":null}`,
		`[]`, `null`, `{}`, `"x"`, "{\"model\":\"\xff\"}",
		`{"model":"m","messages":[1]}`,
		`{"model":"m","system":[{"type":"text","text":"s"}],"messages":[]}`,
		`{"model":"` + strings.Repeat("x", 5000) + `"}`,
	} {
		for i := range paths {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, p uint8, body []byte) {
		path := paths[int(p)%len(paths)]
		req, err := parseRequest(path, body)
		if err != nil {
			var ae *apierror.Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != apierror.CodeInvalidRequest {
				t.Fatalf("refusal %v is not a 400 invalid_request", err)
			}
			if strings.Contains(ae.Message, "json:") || strings.Contains(ae.Message, "int64") {
				t.Fatalf("refusal shows Go's wording: %q", ae.Message)
			}
			return
		}
		// An independent, case-sensitive reading of the accepted body.
		var obj map[string]any
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		if err := d.Decode(&obj); err != nil || obj == nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		for k := range obj {
			for _, rules := range [][]fieldRule{commonFields, contentFields(path)} {
				for _, f := range rules {
					if k != f.name && strings.EqualFold(k, f.name) {
						t.Fatalf("accepted %q, which Go's decoding would read as %q", k, f.name)
					}
				}
			}
		}
		if m, _ := obj["model"].(string); m != req.Model {
			t.Fatalf("model %q, but the body's \"model\" is %#v", req.Model, obj["model"])
		}
		if s, _ := obj["stream"].(bool); s != req.Stream {
			t.Fatalf("stream %v, but the body's \"stream\" is %#v", req.Stream, obj["stream"])
		}
		opts, _ := obj["stream_options"].(map[string]any)
		if (opts != nil) != (req.StreamOptions != nil) {
			t.Fatalf("stream_options %v, body %#v", req.StreamOptions, obj["stream_options"])
		}
		if opts != nil {
			if u, _ := opts["include_usage"].(bool); u != req.StreamOptions.IncludeUsage {
				t.Fatalf("include_usage %v, body %#v", req.StreamOptions.IncludeUsage, opts["include_usage"])
			}
		}
		for name, got := range map[string]*int64{
			"max_tokens": req.MaxTokens, "max_completion_tokens": req.MaxCompletionTokens,
			"max_output_tokens": req.MaxOutputTokens, "n": req.N, "best_of": req.BestOf,
		} {
			v, _ := obj[name].(json.Number)
			if v == "" {
				if got != nil {
					t.Fatalf("%s = %d, but the body has %#v", name, *got, obj[name])
				}
				continue
			}
			want, err := v.Int64()
			if err != nil {
				t.Fatalf("accepted %s = %s, not an integer", name, v)
			}
			if got == nil || *got != want {
				t.Fatalf("%s = %v, body says %d", name, got, want)
			}
		}
		// What the proxy reports survives re-encoding the body as the proxy
		// does when it lowers a cap (setField).
		if re, err := setField(body, "max_tokens", 1); err != nil {
			t.Fatalf("setField on an accepted body: %v", err)
		} else if r2, err := parseRequest(path, re); err != nil || r2.Model != req.Model || r2.Stream != req.Stream {
			t.Fatalf("re-encoded body reads differently: %v, %q %v", err, r2.Model, r2.Stream)
		}
	})
}
