// Package sse reads a server-sent-events stream one event at a time, so a
// proxy can forward each event the moment its terminating blank line arrives.
//
// The Reader returns each event's raw bytes (its lines and the blank line that
// ends it) exactly as received, so forwarding them changes nothing.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Reader splits a stream into events. It is not safe for concurrent use.
type Reader struct {
	br  *bufio.Reader
	buf []byte
	max int
}

// ErrTooLarge reports an event larger than the reader's limit.
var ErrTooLarge = errors.New("sse: event too large")

// NewReader returns a Reader over r that rejects events above maxEvent bytes
// (1 MiB when <= 0).
func NewReader(r io.Reader, maxEvent int) *Reader {
	if maxEvent <= 0 {
		maxEvent = 1 << 20
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: maxEvent}
}

// Next returns the next event's raw bytes, ending with its blank line. The
// slice is valid until the next call. At the end of the stream it returns any
// unterminated remainder (possibly empty) with io.EOF; on a read error it
// returns the partial event with that error.
func (r *Reader) Next() ([]byte, error) {
	r.buf = r.buf[:0]
	start := 0 // where the current line begins in buf
	for {
		part, err := r.br.ReadSlice('\n')
		r.buf = append(r.buf, part...)
		if err == bufio.ErrBufferFull {
			if len(r.buf) > r.max {
				return nil, ErrTooLarge
			}
			continue // the line goes on past the buffer: part is not a line
		}
		// The whole line, not the last part read: a line longer than the
		// buffer ends with a part that may be just "\n" or "\r\n".
		line := r.buf[start:]
		start = len(r.buf)
		if err == nil && isBlank(line) && len(r.buf) == len(line) {
			r.buf = r.buf[:0] // stray blank line between events: skip it
			start = 0
			continue
		}
		if len(r.buf) > r.max {
			return nil, ErrTooLarge
		}
		if err != nil {
			return r.buf, err
		}
		if isBlank(line) {
			return r.buf, nil
		}
	}
}

func isBlank(line []byte) bool {
	return len(line) == 1 || len(line) == 2 && line[0] == '\r'
}

// Data returns the event's data: the values of its "data:" lines joined by
// newlines. For the common single-line event it returns a sub-slice of ev
// without copying.
func Data(ev []byte) []byte {
	var out []byte
	n := 0
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		v, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		v = bytes.TrimPrefix(v, []byte(" "))
		switch n {
		case 0:
			out = v
		case 1:
			out = append(append(append([]byte(nil), out...), '\n'), v...)
		default:
			out = append(append(out, '\n'), v...)
		}
		n++
	}
	return out
}
