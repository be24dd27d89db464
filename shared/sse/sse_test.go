package sse

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		lastErr error
	}{
		{"two events", "data: a\n\ndata: b\n\n", []string{"data: a\n\n", "data: b\n\n"}, io.EOF},
		{"crlf", "data: a\r\n\r\ndata: [DONE]\r\n\r\n", []string{"data: a\r\n\r\n", "data: [DONE]\r\n\r\n"}, io.EOF},
		{"named event", "event: response.created\ndata: {}\n\n", []string{"event: response.created\ndata: {}\n\n"}, io.EOF},
		{"stray blank lines", "\n\ndata: a\n\n\n", []string{"data: a\n\n"}, io.EOF},
		{"unterminated tail", "data: a\n\ndata: cut", []string{"data: a\n\n", "data: cut"}, io.EOF},
		{"comment kept", ": keepalive\n\n", []string{": keepalive\n\n"}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per read proves events never depend on read boundaries.
			r := NewReader(iotest.OneByteReader(strings.NewReader(tt.in)), 0)
			var got []string
			var err error
			for {
				var ev []byte
				ev, err = r.Next()
				if len(ev) > 0 {
					got = append(got, string(ev))
				}
				if err != nil {
					break
				}
			}
			if !errors.Is(err, tt.lastErr) {
				t.Fatalf("err = %v", err)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReaderLimit(t *testing.T) {
	r := NewReader(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 50)
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestData(t *testing.T) {
	tests := []struct{ in, want string }{
		{"data: {\"a\":1}\n\n", `{"a":1}`},
		{"data:x\n\n", "x"},
		{"event: e\ndata: a\ndata: b\ndata: c\n\n", "a\nb\nc"},
		{": comment\n\n", ""},
		{"data: [DONE]\r\n\r\n", "[DONE]"},
	}
	for _, tt := range tests {
		if got := string(Data([]byte(tt.in))); got != tt.want {
			t.Errorf("Data(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReaderLongLine: a line that fills the read buffer exactly ends with a
// read of just its line end, which is not a blank line. It used to be taken
// for one: the event was cut after its first line and its real blank line
// dropped as a stray, so a client read two events as one (found by
// FuzzReader).
func TestReaderLongLine(t *testing.T) {
	for _, n := range []int{32<<10 - len("data: "), 32<<10 - len("data: ") - 1, 64<<10 - len("data: ")} {
		for _, nl := range []string{"\n", "\r\n"} {
			long := "data: " + strings.Repeat("x", n) + nl
			in := long + "data: b" + nl + nl + "data: c" + nl + nl
			r := NewReader(strings.NewReader(in), 0)
			var got []string
			for {
				ev, err := r.Next()
				if len(ev) > 0 {
					got = append(got, string(ev))
				}
				if err != nil {
					break
				}
			}
			want := []string{long + "data: b" + nl + nl, "data: c" + nl + nl}
			if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("line of %d bytes + %q: got %d events, want 2", n, nl, len(got))
			}
		}
	}
}

// TestReaderLimitIgnoresStrayBlankLines: blank lines between events belong
// to no event, so they never count against the event limit (they used to:
// found by FuzzReader with a tiny limit).
func TestReaderLimitIgnoresStrayBlankLines(t *testing.T) {
	r := NewReader(strings.NewReader("\r\n\r\n\n"+"a"), 1)
	ev, err := r.Next()
	if err != io.EOF || string(ev) != "a" {
		t.Fatalf("Next = %q, %v; want \"a\", EOF", ev, err)
	}
}
