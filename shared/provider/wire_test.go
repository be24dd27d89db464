package provider

import (
	"encoding/json"
	"testing"
)

func TestWithIncludeUsage(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{`{"stream_options":null}`, `{"stream_options":{"include_usage":true}}`},
		{`{"stream_options":{"include_obfuscation":false}}`, `{"stream_options":{"include_obfuscation":false,"include_usage":true}}`},
	}
	for _, tt := range tests {
		got, err := WithIncludeUsage([]byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		json.Unmarshal(got, &a)
		json.Unmarshal([]byte(tt.want), &b)
		ga, _ := json.Marshal(a)
		gb, _ := json.Marshal(b)
		if string(ga) != string(gb) {
			t.Errorf("WithIncludeUsage(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if _, err := WithIncludeUsage([]byte(`[1]`)); err == nil {
		t.Error("array accepted")
	}
}
