package provider

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/ledger"
)

// TestTopUsage checks the shortcut reads the usage the full decode reads,
// and leaves to it every body it cannot read exactly.
func TestTopUsage(t *testing.T) {
	const u = `{"prompt_tokens":9,"completion_tokens":7}`
	nine := &ledger.Usage{PromptTokens: 9, CompletionTokens: 7}
	tests := []struct {
		name, body string
		want       *ledger.Usage // nil: the shortcut declines
	}{
		{"a chat completion", `{"id":"x","choices":[{"message":{"content":"{\"a\":[1,2]}\\\"}"}}],"usage":` + u + `}`, nine},
		{"white space everywhere", " \n{ \"usage\" :\t" + u + " ,\"n\": -1.5e+3 , \"ok\":true}\r\n", nine},
		{"cached tokens", `{"usage":{"prompt_tokens":9,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":4}}}`,
			&ledger.Usage{PromptTokens: 9, CachedTokens: 4, CompletionTokens: 7}},
		{"any ASCII case", `{"USage":` + u + `}`, nine},
		{"a repeated member is decoded over the one before", `{"usage":{"prompt_tokens":1,"input_tokens":2},"usage":` + u + `}`,
			&ledger.Usage{PromptTokens: 11, CompletionTokens: 7}},
		{"a null clears the one before", `{"usage":` + u + `,"usage":null}`, nil},
		{"a member after a null", `{"usage":null,"Usage":` + u + `}`, nine},
		{"nested arrays and objects", `{"a":[[{"b":[]}],{}],"usage":` + u + `}`, nine},

		{"no usage", `{"choices":[]}`, nil},
		{"usage null", `{"choices":[],"usage":null}`, nil},
		{"usage without tokens", `{"usage":{"prompt_tokens":0}}`, nil},
		{"usage only nested", `{"response":{"usage":` + u + `}}`, nil},
		{"an escaped name", `{"us\u0061ge":` + u + `}`, nil},
		{"a non-ASCII name", `{"uſage":` + u + `}`, nil},
		{"a usage of the wrong type", `{"usage":"many"}`, nil},
		{"a usage with a wrong field", `{"usage":{"prompt_tokens":"9"}}`, nil},
		{"text after the object", `{"usage":` + u + `} {}`, nil},
		{"an unclosed object", `{"usage":` + u, nil},
		{"mismatched brackets", `{"a":[}],"usage":` + u + `}`, nil},
		{"an unterminated string", `{"a":"x,"usage":` + u + `}`, nil},
		{"a control byte in a string", "{\"a\":\"\x01\",\"usage\":" + u + "}", nil},
		{"too deep", `{"a":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `,"usage":` + u + `}`, nil},
		{"deep enough", `{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `,"usage":` + u + `}`, nine},
		{"a missing value", `{"a":,"usage":` + u + `}`, nil},
		{"not an object", `[` + u + `]`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := topUsage([]byte(tt.body))
			switch {
			case tt.want == nil && got != nil:
				t.Fatalf("topUsage = %+v, want it to decline", *got)
			case tt.want != nil && (got == nil || *got != *tt.want):
				t.Fatalf("topUsage = %+v, want %+v", got, *tt.want)
			}
			sameAsDecode(t, []byte(tt.body))
		})
	}
}

// TestTopUsageRecorded checks the shortcut against the full decode on
// every recorded body and event.
func TestTopUsageRecorded(t *testing.T) {
	files := recordings()
	if len(files) == 0 {
		t.Fatal("no recordings")
	}
	took := 0
	for _, f := range files {
		for _, data := range payloads(t, f) {
			sameAsDecode(t, data)
			if topUsage(data) != nil {
				took++
			}
		}
	}
	if took == 0 {
		t.Error("the shortcut read no recorded usage")
	}
}

// recordings are the recorded bodies and streams of testdata.
func recordings() []string {
	json, _ := filepath.Glob("testdata/*/*.json")
	sse, _ := filepath.Glob("testdata/*/*.sse")
	return append(json, sse...)
}

// payloads are the bodies of a recording: the file itself (.json) or its
// events' data.
func payloads(t testing.TB, file string) [][]byte {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(file, ".json") {
		return [][]byte{b}
	}
	var out [][]byte
	for _, line := range strings.Split(string(b), "\n") {
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, []byte(data))
		}
	}
	return out
}

// sameAsDecode fails when topUsage reads a usage from valid JSON that the
// full decode reads without error, and reads differently. (Where the full
// decode fails, on a member of a type it does not expect, it reads no
// usage at all; the shortcut may still read it.)
func sameAsDecode(t testing.TB, data []byte) {
	t.Helper()
	got := topUsage(data)
	var p payload
	if got == nil || !json.Valid(data) || json.Unmarshal(data, &p) != nil {
		return
	}
	want := decodePayload(data, io.Discard.(io.StringWriter))
	if want == nil || *want != *got {
		t.Errorf("topUsage of %q = %+v, the full decode %+v", data, *got, want)
	}
}

// FuzzTopUsage checks the shortcut never reads a usage from valid JSON
// that the full decode does not read the same.
func FuzzTopUsage(f *testing.F) {
	for _, file := range recordings() {
		for _, data := range payloads(f, file) {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"a":[{"b":"}"}],"Usage":{"input_tokens":3,"output_tokens":1},"USAGE":{"prompt_tokens":2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsDecode(t, data)
	})
}

// BenchmarkReadPayload reads a recorded chat completion's usage, by the
// shortcut (ReadPayload) and by the full decode.
func BenchmarkReadPayload(b *testing.B) {
	data := payloads(b, "testdata/openai/chat.json")[0]
	for _, bb := range []struct {
		name string
		read func([]byte, io.StringWriter) *ledger.Usage
	}{{"ReadPayload", ReadPayload}, {"decode", decodePayload}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			var text strings.Builder
			for b.Loop() {
				if bb.read(data, &text) == nil {
					b.Fatal("no usage")
				}
			}
		})
	}
}
