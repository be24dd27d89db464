package sse

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// reference splits a whole stream into events the slow, obvious way: lines
// end with '\n'; a blank line ("\n" or "\r\n") ends the event before it and
// is part of it; blank lines between events are dropped; an unterminated
// remainder is the last event. It reports too large when an event (blank
// line included) is longer than max.
func reference(in []byte, max int) (events []string, tooLarge bool) {
	var cur []byte
	for len(in) > 0 {
		line := in
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line, in = in[:i+1], in[i+1:]
		} else {
			in = nil
		}
		blank := string(line) == "\n" || string(line) == "\r\n"
		if blank && len(cur) == 0 {
			continue
		}
		cur = append(cur, line...)
		if len(cur) > max {
			return events, true
		}
		if blank {
			events = append(events, string(cur))
			cur = nil
		}
	}
	if len(cur) > 0 {
		events = append(events, string(cur))
	}
	return events, false
}

// chunkReader hands out its input in the chunk sizes it is given, cycling.
type chunkReader struct {
	in    []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	n = min(n, len(p), len(c.in))
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

// readAll reads every event from r.
func readAll(r *Reader) (events []string, tooLarge bool, err error) {
	for {
		ev, err := r.Next()
		if errors.Is(err, ErrTooLarge) {
			return events, true, nil
		}
		if len(ev) > 0 {
			events = append(events, string(ev))
		}
		if err == io.EOF {
			return events, false, nil
		}
		if err != nil {
			return events, false, err
		}
	}
}

// FuzzReader: the events read from a stream delivered in arbitrary chunks
// are the events of the whole stream, as an obvious line-by-line splitter
// finds them, for short streams and for lines longer than the reader's
// buffer (pad inserts a run of that many bytes at the first '#').
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"data: a\n\ndata: b\n\n", "data: a\r\n\r\ndata: [DONE]\r\n\r\n",
		"event: e\ndata: {}\n\n", "\n\n\r\ndata: a\n\n\n", "data: a\n\ndata: cut",
		": keepalive\n\n", "data: #\n\ndata: b\n\n", "data: #\r\n\r\n", "data: #\ndata: 2\n\n",
		"\r", "\r\r\n", "data: a\r\r\n\n",
	} {
		f.Add([]byte(s), uint32(0), uint64(1), uint16(0))
		f.Add([]byte(s), uint32(32<<10-6), uint64(7), uint16(0))
		f.Add([]byte(s), uint32(32<<10-7), uint64(3), uint16(0))
		f.Add([]byte(s), uint32(64<<10-6), uint64(5), uint16(100))
	}
	f.Fuzz(func(t *testing.T, in []byte, pad uint32, seed uint64, max uint16) {
		if i := bytes.IndexByte(in, '#'); i >= 0 {
			pad %= 200 << 10
			in = append(append(append([]byte(nil), in[:i]...), strings.Repeat("x", int(pad))...), in[i+1:]...)
		}
		limit := 1 << 20
		if max > 0 {
			limit = int(max)
		}
		want, wantLarge := reference(in, limit)

		whole, large, err := readAll(NewReader(bytes.NewReader(in), int(max)))
		if err != nil || large != wantLarge || strings.Join(whole, "|") != strings.Join(want, "|") || len(whole) != len(want) {
			t.Fatalf("whole input: %d events (too large %v, err %v), want %d (too large %v)\ngot  %.200q\nwant %.200q",
				len(whole), large, err, len(want), wantLarge, whole, want)
		}
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		sizes := make([]int, 1+rng.IntN(8))
		for i := range sizes {
			sizes[i] = 1 + rng.IntN(1+rng.IntN(40<<10))
		}
		split, large, err := readAll(NewReader(&chunkReader{in: in, sizes: sizes}, int(max)))
		if err != nil || large != wantLarge || len(split) != len(want) || strings.Join(split, "|") != strings.Join(want, "|") {
			t.Fatalf("split into chunks of %v: %d events (too large %v), want %d", sizes, len(split), large, len(want))
		}
	})
}

// FuzzData: Data of an event built from data lines gives back those lines
// joined by newlines (the SSE encoding round trip), whatever else the
// event carries.
func FuzzData(f *testing.F) {
	for _, s := range []string{"", "x", "a\nb", `{"a":1}`, " leading", "[DONE]", "data: nested"} {
		f.Add(s, "event: e\n", true)
		f.Add(s, ": comment\n", false)
	}
	f.Fuzz(func(t *testing.T, data, extra string, crlf bool) {
		if strings.ContainsRune(data, '\r') || strings.ContainsAny(extra, "\r") ||
			strings.HasPrefix(extra, "data:") || strings.Contains(extra, "\ndata:") {
			t.Skip()
		}
		nl := "\n"
		if crlf {
			nl = "\r\n"
		}
		var ev strings.Builder
		for l := range strings.SplitSeq(extra, "\n") {
			if l != "" {
				ev.WriteString(l + nl)
			}
		}
		for l := range strings.SplitSeq(data, "\n") {
			ev.WriteString("data: " + l + nl)
		}
		ev.WriteString(nl)
		if got := string(Data([]byte(ev.String()))); got != data {
			t.Fatalf("Data(%q) = %q, want %q", ev.String(), got, data)
		}
	})
}
