package apikey

import (
	"strings"
	"testing"
	"time"
)

func TestGenerateParse(t *testing.T) {
	id, key := Generate()
	got, err := Parse(key)
	if err != nil || got != id {
		t.Fatalf("Parse(%q) = %q, %v; want %q", key, got, err, id)
	}
	if !Matches(key, Hash(key)) || Matches(key+"x", Hash(key)) {
		t.Fatal("Matches is wrong")
	}
	if strings.Contains(Hash(key), id) {
		t.Fatal("hash contains id")
	}
	id2, key2 := Generate()
	if id2 == id || key2 == key {
		t.Fatal("not random")
	}
}

func TestParseRejects(t *testing.T) {
	_, good := Generate()
	for _, s := range []string{"", "sk-proj-abc", Prefix, good[:len(good)-1], good + "a", strings.ToUpper(good), strings.Replace(good, "_", "-", 1)} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func TestAllows(t *testing.T) {
	k := Key{AllowedModels: []string{"gpt-4o-mini"}, AllowedPaths: []PathRule{{Path: "/v1/chat/completions", Method: "POST"}, {Path: "/v1/models"}}}
	tests := []struct {
		model, method, path string
		wantModel, wantPath bool
	}{
		{"gpt-4o-mini", "POST", "/v1/chat/completions", true, true},
		{"gpt-4o", "post", "/v1/chat/completions", false, true},
		{"gpt-4o-mini", "GET", "/v1/chat/completions", true, false},
		{"gpt-4o-mini", "GET", "/v1/models", true, true},
		{"gpt-4o-mini", "POST", "/v1/embeddings", true, false},
	}
	for _, tt := range tests {
		if got := k.AllowsModel(tt.model); got != tt.wantModel {
			t.Errorf("AllowsModel(%q) = %v", tt.model, got)
		}
		if got := k.AllowsPath(tt.method, tt.path); got != tt.wantPath {
			t.Errorf("AllowsPath(%q, %q) = %v", tt.method, tt.path, got)
		}
	}
	var open Key
	if !open.AllowsModel("x") || !open.AllowsPath("GET", "/x") {
		t.Fatal("empty lists must allow all")
	}
}

func TestExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tt := range []struct {
		at   int64
		want bool
	}{{0, false}, {999, true}, {1000, true}, {1001, false}} {
		k := Key{ExpiresAt: tt.at}
		if got := k.Expired(now); got != tt.want {
			t.Errorf("ExpiresAt %d: Expired = %v", tt.at, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{{"30s", 30 * time.Second}, {"20m", 20 * time.Minute}, {"720h", 720 * time.Hour}, {"7d", 168 * time.Hour}, {"0h", 0}, {"h", 0}, {"-1h", 0}, {"1w", 0}, {"1.5h", 0}}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != (tt.want == 0) || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}
