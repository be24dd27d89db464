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

// TestPlainUsage: plainUsage decodes the usage objects providers send, and
// whatever it decodes, over what a usage member before it left, it
// decodes as json.Unmarshal does; what it declines it leaves untouched.
func TestPlainUsage(t *testing.T) {
	tests := []struct {
		name, value string
		plain       bool // plainUsage must take it: the common shapes stay fast
	}{
		{"OpenAI chat", `{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},` +
			`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`, true},
		{"Responses", `{"input_tokens":36,"input_tokens_details":{"cached_tokens":8},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}`, true},
		{"Anthropic", `{"input_tokens":2095,"cache_creation_input_tokens":100,"cache_read_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":40,` +
			`"ephemeral_1h_input_tokens":60},"output_tokens":503,"service_tier":"standard","server_tool_use":null,"flag":true}`, true},
		{"negative and minus zero", `{"prompt_tokens":-5,"completion_tokens":-0}`, true},
		{"a repeated field", `{"prompt_tokens":1,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"prompt_tokens_details":{"audio_tokens":3}}`, true},
		{"18 digits", `{"prompt_tokens":999999999999999999}`, true},
		{"empty", `{}`, true},

		{"19 digits", `{"prompt_tokens":9223372036854775807}`, false},
		{"too big", `{"prompt_tokens":99999999999999999999}`, false},
		{"a fraction", `{"prompt_tokens":1.0}`, false},
		{"an exponent", `{"prompt_tokens":1e3}`, false},
		{"a leading zero", `{"prompt_tokens":01}`, false},
		{"a number as a string", `{"prompt_tokens":"5"}`, false},
		{"null in an int field", `{"prompt_tokens":null}`, false},
		{"null details", `{"prompt_tokens_details":null}`, false},
		{"details not an object", `{"prompt_tokens_details":[1]}`, false},
		{"upper case", `{"Prompt_Tokens":5}`, false},
		{"Kelvin sign", "{\"prompt_to\u212Aens\":5}", false},
		{"an escaped string", `{"tier":"a\"b"}`, false},
		{"a non-ASCII string", `{"tier":"é"}`, false},
		{"an array", `{"list":[1]}`, false},
		{"a bad literal", `{"flag":tru}`, false},
		{"a bad number", `{"n":1-2}`, false},
		{"too deep", `{"a":{"b":{"c":{}}}}`, false},
		{"not an object", `[1]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Over a usage a member before left, with details set.
			before := func() usageJSON {
				return usageJSON{PromptTokens: 7, PromptTokensDetails: &tokensDetails{CachedTokens: 2}, CacheCreation: &cacheCreation{Ephemeral1h: 1}}
			}
			got, want := before(), before()
			plain := plainUsage([]byte(tt.value), &got)
			if plain != tt.plain {
				t.Fatalf("plainUsage took it: %v, want %v", plain, tt.plain)
			}
			if !plain {
				if b := before(); !sameUsage(got, b) {
					t.Fatalf("plainUsage declined but changed the usage: %+v", got)
				}
				return
			}
			if err := json.Unmarshal([]byte(tt.value), &want); err != nil {
				t.Fatalf("plainUsage took a value json.Unmarshal refuses: %v", err)
			}
			if !sameUsage(got, want) {
				t.Fatalf("plainUsage = %+v, json.Unmarshal = %+v", got, want)
			}
		})
	}
}

// sameUsage compares two usages field by field, through their pointers.
func sameUsage(a, b usageJSON) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// FuzzPlainUsage compares plainUsage with json.Unmarshal directly, over a
// usage a member before left (a review's target; its seeds run with the
// package's tests, FuzzTopUsage in make test fuzzes the whole shortcut).
func FuzzPlainUsage(f *testing.F) {
	for _, s := range []string{
		`{"prompt_tokens":19,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}}`,
		`{"input_tokens":2095,"cache_creation":{"ephemeral_1h_input_tokens":60},"x":{"y":{"z":1}},"s":"a","n":null,"t":true}`,
		`{"prompt_tokens":-0,"prompt_tokens":5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		before := func() usageJSON {
			return usageJSON{PromptTokens: 7, PromptTokensDetails: &tokensDetails{CachedTokens: 2}, CacheCreation: &cacheCreation{Ephemeral1h: 1}}
		}
		got, want := before(), before()
		if !plainUsage(v, &got) {
			if !sameUsage(got, before()) {
				t.Fatalf("declined but changed: %q", v)
			}
			return
		}
		if err := json.Unmarshal(v, &want); err != nil {
			t.Fatalf("plainUsage took %q, json.Unmarshal: %v", v, err)
		}
		if !sameUsage(got, want) {
			t.Fatalf("%q: plainUsage %+v, json %+v", v, got, want)
		}
	})
}
