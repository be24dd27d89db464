package h1client

// An answer's header, read in place when it is a plain one.
//
// http.ReadResponse copies the status line and every header line into
// strings of their own, canonicalises each name through a map and builds
// a body of three layers: a dozen allocations for each of the proxy's five
// calls a request. AWS's and the providers' answers are plain: HTTP/1.1, a
// status, a few "Name: value" lines and a Content-Length. plainHead reads
// such a header from what the connection already buffered, with one string
// for the whole of it; anything else (a header not all buffered yet,
// chunked or unsized bodies, 1xx, 204 and 304, Connection other than
// keep-alive, Pragma, Trailer, folded lines, bytes a header may not hold,
// an answer to HEAD) is left unread for http.ReadResponse. The two give
// the same answer for every header plainHead takes (TestPlainHeadMatches,
// FuzzPlainHead).

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
)

// readHead reads the header of the answer to req from br; an informational
// (1xx) answer is skipped for the one after it.
func readHead(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if resp := plainHead(br, req); resp != nil {
		return resp, nil
	}
	resp, err := http.ReadResponse(br, req)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, req) // 1xx: informational, the answer follows
	}
	return resp, err
}

// plainHead reads a plain answer's header from what br holds and returns
// the answer, whose Body reads the next Content-Length bytes of br; nil
// (nothing read) when the header is not all buffered or not plain.
func plainHead(br *bufio.Reader, req *http.Request) *http.Response {
	if req.Method == http.MethodHead {
		return nil
	}
	buffered, _ := br.Peek(br.Buffered())
	end := bytes.Index(buffered, []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	// One string for the status line and all header lines: names, values
	// and the status are slices of it.
	block := headerBlock(buffered[:end+2])
	status, rest, _ := strings.Cut(block, "\r\n")
	const proto = "HTTP/1.1 "
	if len(status) < len(proto)+5 || status[:len(proto)] != proto || status[len(proto)+3] != ' ' {
		return nil
	}
	status = status[len(proto):] // "200 OK"
	code := 0
	for _, c := range []byte(status[:3]) {
		if c < '0' || c > '9' {
			return nil
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil // no body, or another answer follows: ReadResponse's rules
	}
	for _, c := range []byte(status[4:]) {
		if c < ' ' || c > '~' {
			return nil
		}
	}
	lines := strings.Count(rest, "\r\n")
	header := make(http.Header, lines)
	values := make([]string, lines) // one backing array: most names have one value
	length := int64(-1)
	for rest != "" {
		var line string
		line, rest, _ = strings.Cut(rest, "\r\n")
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || !token(name) {
			return nil // also a folded line, which starts with a space
		}
		value = strings.Trim(value, " \t")
		for _, c := range []byte(value) {
			if c < ' ' && c != '\t' || c == 0x7f {
				return nil
			}
		}
		switch name { // canonical: headerBlock made it so
		case "Content-Length":
			if length >= 0 || !digits(value) {
				return nil // repeated or odd: ReadResponse's rules
			}
			length = parseLength(value)
		case "Connection":
			if !strings.EqualFold(value, "keep-alive") {
				return nil // close (which ReadResponse removes) or other tokens
			}
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil
		}
		if vv, ok := header[name]; ok {
			header[name] = append(vv, value)
			continue
		}
		vv := values[:1:1]
		values = values[1:]
		vv[0] = value
		header[name] = vv
	}
	if length < 0 {
		return nil // the body runs to the connection's end
	}
	br.Discard(end + 4)
	resp := &http.Response{
		Status: status, StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: header, ContentLength: length, Request: req,
		Body: http.NoBody,
	}
	if length > 0 {
		resp.Body = &sizedBody{br: br, left: length}
	}
	return resp
}

// headerBlock is b, a status line and header lines each ending in CRLF, as
// one string in which every header name made of token bytes is canonical
// (textproto's form: upper case first and after each hyphen, lower case
// elsewhere). The names sliced out of it are then what
// textproto.CanonicalMIMEHeaderKey would return, without the string of its
// own it makes for each name that is not (AWS's are lower case: a third of
// the allocations of reading a header). Other names are copied as they are.
func headerBlock(b []byte) string {
	var s strings.Builder
	s.Grow(len(b))
	status, rest, _ := bytes.Cut(b, []byte("\r\n"))
	s.Write(status)
	s.WriteString("\r\n")
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, _, _ := bytes.Cut(line, []byte(":"))
		if !tokenBytes(name) {
			s.Write(line)
			s.WriteString("\r\n")
			continue
		}
		upper := true
		for _, c := range name {
			switch {
			case upper && 'a' <= c && c <= 'z':
				c -= 'a' - 'A'
			case !upper && 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			}
			s.WriteByte(c)
			upper = c == '-'
		}
		s.Write(line[len(name):])
		s.WriteString("\r\n")
	}
	return s.String()
}

// tokenBytes reports whether b is made of the bytes a header's name may
// hold.
func tokenBytes(b []byte) bool {
	for _, c := range b {
		if !tchar(c) {
			return false
		}
	}
	return true
}

// token reports whether s is made of the bytes a header's name may hold.
func token(s string) bool {
	for _, c := range []byte(s) {
		if !tchar(c) {
			return false
		}
	}
	return true
}

// tchar reports whether c is a token character (RFC 9110, section 5.6.2).
func tchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// digits reports whether s is 1 to 18 decimal digits: a length that fits
// an int64.
func digits(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseLength is the value of s, which digits accepted.
func parseLength(s string) int64 {
	var n int64
	for _, c := range []byte(s) {
		n = n*10 + int64(c-'0')
	}
	return n
}

// sizedBody reads the left bytes of an answer's body from br, the end
// reported with the last of them, as net/http's body does: the connection
// is free for the next call as soon as they are read.
type sizedBody struct {
	br   *bufio.Reader
	left int64
}

func (b *sizedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	switch {
	case b.left == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *sizedBody) Close() error { return nil }
