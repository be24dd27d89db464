package devstack

import (
	"strings"
	"testing"
)

// TestLastOutput: an exit report says the last line the process wrote,
// however its writes split the lines, trimmed and bounded.
func TestLastOutput(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"nothing", nil, ""},
		{"blank lines only", []string{"\n  \n"}, ""},
		{"one line", []string{"listen tcp: address already in use\n"}, ": listen tcp: address already in use"},
		{"the last of several", []string{"starting\nconfig: no region\n"}, ": config: no region"},
		{"split across writes", []string{"conf", "ig: no ", "region\n"}, ": config: no region"},
		{"blank line after", []string{"boom\n\n"}, ": boom"},
		{"died mid-line", []string{"done\npanic: nil map"}, ": panic: nil map"},
		{"bounded", []string{strings.Repeat("x", 1000) + "\n"}, ": " + strings.Repeat("x", lastOutputMax)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l lastOutput
			for _, w := range tt.writes {
				if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := l.said(); got != tt.want {
				t.Fatalf("said() = %q, want %q", got, tt.want)
			}
		})
	}
}
