package h1client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// buffered is a reader holding all of b, as a connection's reader does
// once an answer arrived in one piece.
func buffered(b []byte) *bufio.Reader {
	br := bufio.NewReaderSize(bytes.NewReader(b), 64<<10)
	br.Peek(1)
	return br
}

// sameAnswer fails t unless plainHead reads the same answer from raw as
// http.ReadResponse: status, header, length, body and what follows it. It
// reports whether plainHead took the header.
func sameAnswer(t *testing.T, raw []byte, method string) bool {
	t.Helper()
	req := &http.Request{Method: method}
	br := buffered(raw)
	before := br.Buffered()
	got := plainHead(br, req)
	if got == nil {
		if br.Buffered() != before {
			t.Fatalf("plainHead left the header but consumed %d bytes", before-br.Buffered())
		}
		return false
	}
	wbr := buffered(raw)
	want, err := http.ReadResponse(wbr, req)
	if err != nil {
		t.Fatalf("plainHead took a header ReadResponse refuses (%v):\n%q", err, raw)
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
		got.ContentLength != want.ContentLength || got.Close != want.Close ||
		!reflect.DeepEqual(got.Header, want.Header) || !reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) ||
		!reflect.DeepEqual(got.Trailer, want.Trailer) || got.Request != req || (got.Body == http.NoBody) != (want.Body == http.NoBody) {
		t.Fatalf("answers differ for\n%q\nplainHead:    %+v\nReadResponse: %+v", raw, got, want)
	}
	gb, gerr := io.ReadAll(got.Body)
	wb, werr := io.ReadAll(want.Body)
	if !bytes.Equal(gb, wb) || (gerr == nil) != (werr == nil) {
		t.Fatalf("bodies differ for %q: %q, %v; ReadResponse's %q, %v", raw, gb, gerr, wb, werr)
	}
	grest, _ := io.ReadAll(br)
	wrest, _ := io.ReadAll(wbr)
	if !bytes.Equal(grest, wrest) {
		t.Fatalf("after the body: %q, ReadResponse left %q", grest, wrest)
	}
	return true
}

// ddbAnswer is an answer as DynamoDB Local sends it: lower-case names among
// canonical ones.
const ddbAnswer = "HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 04:00:00 GMT\r\nContent-Type: application/x-amz-json-1.0\r\n" +
	"x-amz-crc32: 2745614147\r\nx-amzn-RequestId: 0b4b7c2e-1f5d-4c27-9f6b-2f0f7d8f1c11\r\nContent-Length: 2\r\nServer: Jetty(12.0.14)\r\n\r\n{}"

func TestPlainHeadMatches(t *testing.T) {
	const ddb = ddbAnswer
	tests := []struct {
		name  string
		raw   string
		plain bool // plainHead must take it: the proxy's calls stay on the fast path
	}{
		{"DynamoDB", ddb, true},
		{"DynamoDB then the next answer", ddb + "HTTP/1.1 200 OK\r\n", true},
		{"provider", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nopenai-processing-ms: 412\r\nx-request-id: req_1\r\n" +
			"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: keep-alive\r\nContent-Length: 11\r\n\r\n{\"id\":\"x\"}\n", true},
		{"error status", "HTTP/1.1 400 Bad Request\r\nx-amzn-ErrorType: ValidationException\r\nContent-Length: 0\r\n\r\n", true},
		{"no headers but length", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nabc", true},
		{"spaces and tabs around a value", "HTTP/1.1 200 OK\r\nX-A: \t v  w \t\r\nContent-Length: 0\r\n\r\n", true},
		{"empty value", "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", true},
		{"obs-text value", "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", true},
		{"length with leading zeros", "HTTP/1.1 200 OK\r\nContent-Length: 003\r\n\r\nabcdef", true},
		{"lower-case and odd names", "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nx_under-score: 1\r\nX-!#$%&'*+.^`|~: y\r\n\r\nz", true},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true},

		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
		{"no length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", false},
		{"pragma", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", false},
		{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"1xx first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"204", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false},
		{"304", "HTTP/1.1 304 Not Modified\r\n\r\n", false},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false},
		{"folded line", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", false},
		{"space in a name", "HTTP/1.1 200 OK\r\nX A: a\r\nContent-Length: 0\r\n\r\n", false},
		{"no colon", "HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 0\r\n\r\n", false},
		{"control byte", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", false},
		{"not all buffered", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameAnswer(t, []byte(tt.raw), http.MethodPost); got != tt.plain {
				t.Fatalf("plainHead took it: %v, want %v", got, tt.plain)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		if sameAnswer(t, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), http.MethodHead) {
			t.Fatal("plainHead took an answer to HEAD, whose length has no body")
		}
	})
}

// TestPlainHeadAllocations: a DynamoDB answer's header costs six
// allocations whatever the case of its names: the header's string, the map
// (two), the values' array, the answer and its body. A name canonicalised
// by textproto would be a string of its own (eight before headerBlock).
func TestPlainHeadAllocations(t *testing.T) {
	raw := []byte(ddbAnswer)
	req := &http.Request{Method: http.MethodPost}
	rd := bytes.NewReader(raw)
	br := bufio.NewReaderSize(rd, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(raw)
		br.Reset(rd)
		br.Peek(1)
		if plainHead(br, req) == nil {
			t.Fatal("plainHead refused DynamoDB's answer")
		}
	})
	if allocs > 6 {
		t.Fatalf("%v allocations, want at most 6", allocs)
	}
}

func TestSizedBodyEnds(t *testing.T) {
	b := &sizedBody{br: bufio.NewReader(strings.NewReader("abcdef")), left: 3}
	p := make([]byte, 10)
	if n, err := b.Read(p); n != 3 || err != io.EOF {
		t.Fatalf("Read = %d, %v; want 3 with io.EOF (the connection is free at once)", n, err)
	}
	short := &sizedBody{br: bufio.NewReader(strings.NewReader("ab")), left: 3}
	if _, err := io.ReadAll(short); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a body cut short: %v, want io.ErrUnexpectedEOF", err)
	}
}

func FuzzPlainHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nA: 1\r\na: 2\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		sameAnswer(t, raw, http.MethodPost)
	})
}

// TestHeaderBlockNames (from a review): names with digits, underscores, hyphens at
// the ends, repeated hyphens, every case, non-token bytes and lines without
// a colon give ReadResponse's answer, and headerBlock's names are
// textproto's canonical ones.
func TestHeaderBlockNames(t *testing.T) {
	names := []string{
		"x-amz-crc32", "X-AMZ-CRC32", "x-amzn-requestid", "1abc", "a1B2-c3D4", "_a", "a_b", "A_B_c",
		"-", "--", "a-", "-a", "a--b", "---x---", "content-length", "CONTENT-TYPE", "conTent-tYpe",
		"connection", "x!#$%&'*+.^_`|~y", "ÿ", "a b", "a\tb", "a\"b", "a(b", "a/b", "a@b", "a\x7fb", "a\x80b",
		"Www-Authenticate", "WWW-AUTHENTICATE", "www-authenticate", "Etag", "ETAG", "etag", "Te", "TE",
	}
	taken := 0
	for _, n := range names {
		for _, second := range []string{"", "\r\n" + n + ": again"} {
			raw := "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n" + n + ": v" + second + "\r\n\r\nx"
			if sameAnswer(t, []byte(raw), http.MethodPost) {
				taken++
			}
		}
	}
	if taken == 0 {
		t.Fatal("plainHead took none")
	}
	// lines without a colon, and a name canonicalised by headerBlock in a
	// line plainHead refuses: left to ReadResponse, nothing consumed
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nnocolon\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nx-a b: v\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n: v\r\n\r\nx",
		"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n x-folded\r\n\r\nx",
		"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-LENGTH: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-ENCODING: chunked\r\n\r\nx",
		"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nCONNECTION: close\r\n\r\nx",
	} {
		sameAnswer(t, []byte(raw), http.MethodPost)
	}
	for _, n := range names {
		b := headerBlock([]byte("HTTP/1.1 200 OK\r\n" + n + ": v\r\n"))
		got := b[len("HTTP/1.1 200 OK\r\n") : len(b)-len(": v\r\n")]
		if tokenBytes([]byte(n)) {
			if want := textproto.CanonicalMIMEHeaderKey(n); got != want {
				t.Errorf("headerBlock made %q of %q, textproto %q", got, n, want)
			}
		} else if got != n {
			t.Errorf("headerBlock changed non-token name %q to %q", n, got)
		}
	}
}

// TestHeaderBlockLength: the block is as long as its input (one
// allocation) and equal to it apart from the names' case.
func TestHeaderBlockLength(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nx-a: B\r\nno colon\r\n\r\n"
	in = in[:len(in)-2]
	out := headerBlock([]byte(in))
	if len(out) != len(in) {
		t.Fatalf("len %d, want %d: %q", len(out), len(in), out)
	}
	if out != "HTTP/1.1 200 OK\r\nX-A: B\r\nno colon\r\n" {
		t.Fatalf("%q", out)
	}
}
