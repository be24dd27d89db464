package provider

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// sameChunkText fails t unless plainChunk, on data, writes what the full
// decode writes and the full decode reports no usage, when plainChunk takes
// data; and writes nothing when it declines. It reports whether plainChunk
// took data.
func sameChunkText(t testing.TB, data []byte) bool {
	t.Helper()
	var got strings.Builder
	if !plainChunk(data, &got) {
		if got.Len() > 0 {
			t.Fatalf("plainChunk declined %q but wrote %q", data, got.String())
		}
		return false
	}
	if !json.Valid(data) {
		t.Fatalf("plainChunk took %q, which is not valid JSON", data)
	}
	var want strings.Builder
	if u := decodePayload(data, &want); u != nil {
		t.Fatalf("plainChunk took %q, in which the full decode reads usage %+v", data, *u)
	}
	if got.String() != want.String() {
		t.Fatalf("text of %q: plainChunk %q, the full decode %q", data, got.String(), want.String())
	}
	return true
}

func TestPlainChunk(t *testing.T) {
	const head = `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1733000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1",`
	tests := []struct {
		name, data string
		plain      bool // plainChunk must take it: streams stay on the fast path
	}{
		{"content", head + `"choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}],"usage":null}`, true},
		{"role and empty content", head + `"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`, true},
		{"finish", head + `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`, true},
		{"escapes", head + `"choices":[{"delta":{"content":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00 \ud800 end"}}]}`, true},
		{"UTF-8", head + `"choices":[{"delta":{"content":"日本語で、Grüße"}}]}`, true},
		{"invalid UTF-8 is replaced", head + "\"choices\":[{\"delta\":{\"content\":\"a\xffb\"}}]}", true},
		{"refusal", head + `"choices":[{"delta":{"refusal":"I can't"}}]}`, true},
		{"text completion", `{"id":"cmpl-1","object":"text_completion","choices":[{"text":"hi","index":0,"logprobs":null,"finish_reason":null}]}`, true},
		{"two choices, members in any order", head + `"choices":[{"delta":{"refusal":"r","content":"c"},"text":"t"},{"delta":null},{"delta":{"content":"2"}}]}`, true},
		{"no choices", head + `"choices":[]}`, true},
		{"tool_calls null, obfuscation", head + `"obfuscation":"x1","choices":[{"delta":{"content":"a","tool_calls":null}}]}`, true},
		{"white space", "{\n\"choices\" : [ { \"delta\" : { \"content\" : \"a\" } } ] }\n", true},

		{"usage", head + `"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}`, false},
		{"usage of nothing", head + `"choices":[],"usage":{}}`, false},
		{"tool calls", head + `"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{}"}}]}}]}`, false},
		{"logprobs", head + `"choices":[{"delta":{"content":"a"},"logprobs":{"content":[]}}]}`, false},
		{"Responses API", `{"type":"response.output_text.delta","delta":"hi"}`, false},
		{"Anthropic", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}`, false},
		{"message", `{"message":{"usage":{"input_tokens":1}}}`, false},
		{"upper-case name", head + `"Choices":[{"delta":{"content":"a"}}]}`, false},
		{"upper-case inner name", head + `"choices":[{"Delta":{"content":"a"}}]}`, false},
		{"two choices members", `{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}`, false},
		{"two contents", `{"choices":[{"delta":{"content":"a","content":"b"}}]}`, false},
		{"content a number", `{"choices":[{"delta":{"content":5}}]}`, false},
		{"delta a string", `{"choices":[{"delta":"a"}]}`, false},
		{"choices null", `{"choices":null}`, false},
		{"choice not an object", `{"choices":["a"]}`, false},
		{"nested unknown", head + `"x":{"y":1},"choices":[]}`, false},
		{"float", `{"created":1.5,"choices":[]}`, false},
		{"bad escape", `{"choices":[{"delta":{"content":"\x"}}]}`, false},
		{"short \\u", `{"choices":[{"delta":{"content":"\u12"}}]}`, false},
		{"control byte", "{\"choices\":[{\"delta\":{\"content\":\"a\x01\"}}]}", false},
		{"trailing garbage", `{"choices":[]} x`, false},
		{"not an object", `[1]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameChunkText(t, []byte(tt.data)); got != tt.plain {
				t.Fatalf("plainChunk took %q: %v, want %v", tt.data, got, tt.plain)
			}
		})
	}
}

// TestPlainChunkRecorded: on every recorded body and event, plainChunk
// writes what the full decode writes, and it takes OpenAI's and Azure's
// content chunks.
func TestPlainChunkRecorded(t *testing.T) {
	took := map[string]int{}
	for _, f := range recordings() {
		for _, data := range payloads(t, f) {
			if sameChunkText(t, data) {
				took[f]++
			}
		}
	}
	for _, f := range []string{"testdata/openai/chat_stream_usage.sse", "testdata/azure/chat_stream_usage.sse"} {
		if took[f] < 3 {
			t.Errorf("%s: plainChunk took %d events, want its content chunks", f, took[f])
		}
	}
}

func FuzzPlainChunk(f *testing.F) {
	for _, file := range recordings() {
		for _, data := range payloads(f, file) {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"choices":[{"delta":{"content":"a\u00e9\ud800"},"text":null}],"usage":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameChunkText(t, data)
	})
}

// BenchmarkReadChunk reads a recorded content chunk, by ReadPayload (the
// shortcut) and by the full decode.
func BenchmarkReadChunk(b *testing.B) {
	data := payloads(b, "testdata/openai/chat_stream_usage.sse")[1]
	for _, bb := range []struct {
		name string
		read func([]byte, io.StringWriter) any
	}{
		{"ReadPayload", func(d []byte, w io.StringWriter) any { return ReadPayload(d, w) }},
		{"decode", func(d []byte, w io.StringWriter) any { return decodePayload(d, w) }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			var text strings.Builder
			for b.Loop() {
				text.Reset()
				bb.read(data, &text)
				if text.String() != " word1" {
					b.Fatalf("text %q", text.String())
				}
			}
		})
	}
}

// TestPlainChunkEdges: inputs aimed at the differences between
// plainChunk and encoding/json (from a review) (case folding, duplicates, null, escapes,
// invalid UTF-8, numbers, white space, nesting). sameChunkText fails the
// test if plainChunk takes one and writes other text than the decode.
func TestPlainChunkEdges(t *testing.T) {
	const d = `"delta":{"content":"a"}`
	inputs := []string{
		`{"choiceſ":[{` + d + `}]}`, // long s folds to S
		`{"choices":[{"delta":{"contenſ":"x","content":"a"}}]}`,
		`{"choices":[{"delta":{"tool_callſ":[{"function":{"name":"f"}}]}}]}`,
		`{"choices":[{"delta":{"tool_calls":null,"tool_calls":null,"content":"a"}}]}`,
		`{"choices":[{"logprobs":null,"logprobs":null,` + d + `}]}`,
		`{"usage":null,"usage":null,"choices":[]}`,
		`{"choices":[{"text":null,"delta":null}]}`,
		`{"choices":[{"text":null,` + d + `,"text":"b"}]}`,
		`{"choices":[{` + d + `}],"x":null,"y":-0,"z":123456789012345678,"w":1234567890123456789}`,
		`{"choices":[{` + d + `}],"n":1e5}`,
		`{"choices":[{` + d + `}],"n":01}`,
		`{"choices":[{` + d + `}],"n":-}`,
		`{"choices":[{` + d + `}],"n":+1}`,
		`{"choices":[{` + d + `}],"n":nul}`,
		`{"choices":[{` + d + `}],"n":True}`,
		`{"\u0063hoices":[{` + d + `}]}`,
		`{"choices":[{"delta":{"content":"\ud83d"}}]}`,
		`{"choices":[{"delta":{"content":"\udc00\ud800x"}}]}`,
		`{"choices":[{"delta":{"content":"\ud83d\u0041"}}]}`,
		`{"choices":[{"delta":{"content":"\u0000"}}]}`,
		"{\"choices\":[{\"delta\":{\"content\":\"\xed\xa0\x80\"}}]}", // UTF-8 surrogate
		"{\"choices\":[{\"delta\":{\"content\":\"\xc0\xaf\"}}]}",     // overlong
		"{\"choices\":[{\"delta\":{\"content\":\"\xef\xbf\xbd\"}}]}", // U+FFFD itself
		"{\"choices\":[{\"delta\":{\"content\":\"a\x7fb\"}}]}",
		"{\"choices\":[{\"delta\":{\"content\":\"\xf4\x90\x80\x80\"}}]}", // past U+10FFFF
		"{\"choi\xc3\xa7es\":[{" + d + "}]}",
		"\ufeff{\"choices\":[]}",
		"{\"choices\":[]}\x00",
		"{\"choices\":[]}\f",
		"{\f\"choices\":[]}",
		"{\"choices\":[{" + d + "}]}\n\r\t ",
		`{"choices":[{` + d + `},]}`,
		`{"choices":[,{` + d + `}]}`,
		`{"choices":[{` + d + `}],}`,
		`{"choices":[{` + d + `}]`,
		`{"choices":[{"delta":{"content":"a"},}]}`,
		`{"choices":[{"delta":{"content":"a",}}]}`,
		`{"choices":[{"delta":{"content":"a"}}]}}`,
		`{"choices":[{"delta":{"content":"a"}}]]}`,
		`{"choices":[{"delta":{"content":"a"}]}`,
		`{"choices":[{"delta":{"content":"a" "refusal":"b"}}]}`,
		`{"choices":[{"delta":{"content":"a"}}],"":1}`,
		`{"choices":[{"delta":{"content":"a"}}],"1":1,"_":2,"a_b9":"x"}`,
		`{"choices":[{"delta":{"content":"a","role":"assistant","refusal":null}},{"text":"t"}]}`,
		`{"choices":[{"delta":{"content":"\/\b\f\n\r\t\"\\"}}]}`,
		`{"choices":[{"delta":{"content":"\U0041"}}]}`,
		`{"choices":[{"delta":{"content":"\u00G1"}}]}`,
		`{"choices":[{"delta":{"content":"a\`,
		`{"choices":[{"delta":{"content":"a"}}],"s":"\"}`,
		`{"choices":[{"delta":{"content":"a"}}],"usage":nul}`,
		`{"choices":[{"delta":{"content":"a"}}],"usage":{}}`,
		`{"choices":[{"delta":{"content":"a"}}],"usage":[]}`,
		`{"choices":[{"delta":{"content":"a"}}],"Usage":{"prompt_tokens":1}}`,
		`{"choices":[{"delta":{"content":"a"}}],"usagE":null}`,
		`{"choices":[{"delta":{"content":"a"}}],"type":null}`,
		`{"choices":[{"delta":{"content":"a"}}],"response":null}`,
		`{"choices":[{"delta":{"content":"a"}}],"message":null}`,
		`{"choices":[{"delta":{"content":"a"}}],"delta":null}`,
		`{"choices":[{"delta":{"content":"a"}}],"types":"x","deltas":1}`,
		`{"choices":[[` + d + `]]}`,
		`{"choices":[{"delta":[]}]}`,
		`{"choices":[{"delta":{"content":null,"refusal":null}}]}`,
		`{"choices":[{"delta":{"content":"` + strings.Repeat("x", 5000) + `"}}]}`,
		`{"choices":[` + strings.Repeat(`{`+d+`},`, 50) + `{` + d + `}]}`,
		`{"choices":[{"delta":{"content":"a"}}],"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
	}
	took := 0
	for _, in := range inputs {
		if sameChunkText(t, []byte(in)) {
			took++
		}
	}
	t.Logf("plainChunk took %d of %d", took, len(inputs))
}

// TestReadPayloadAsBefore: on every recording, ReadPayload (with
// plainChunk first) answers what it answered before it (topUsage, then the
// full decode): the same usage and the same text.
func TestReadPayloadAsBefore(t *testing.T) {
	for _, f := range recordings() {
		for _, data := range payloads(t, f) {
			var got, want strings.Builder
			gu := ReadPayload(data, &got)
			wu := topUsage(data)
			if wu == nil {
				wu = decodePayload(data, &want)
			}
			if (gu == nil) != (wu == nil) || gu != nil && *gu != *wu || got.String() != want.String() {
				t.Fatalf("%s: %q: ReadPayload %v %q, before %v %q", f, data, gu, got.String(), wu, want.String())
			}
		}
	}
}
