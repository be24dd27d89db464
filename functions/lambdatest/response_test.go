package lambdatest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// requireResponse fails t unless the function answered the invocation with
// a response (not an error), read whole, with no error trailer.
func requireResponse(t *testing.T, res *result) {
	t.Helper()
	if res.Kind != "response" {
		t.Fatalf("function reported an error (%s): %s", res.Header.Get(hdrErrorType), res.Body)
	}
	if res.ReadErr != nil {
		t.Fatalf("reading the response body: %v (got %q)", res.ReadErr, res.Body)
	}
	if typ := res.Trailer.Get(hdrErrorType); typ != "" {
		body, _ := base64.StdEncoding.DecodeString(res.Trailer.Get(hdrErrorBody))
		t.Fatalf("response ended with error trailer %s: %s", typ, body)
	}
}

// prelude is the JSON that starts a function URL streaming response.
type prelude struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Cookies    []string          `json:"cookies"`
}

// streamed checks the wire format of a function URL streaming response
// (Content-Type application/vnd.awslambda.http-integration-response, sent
// with chunked transfer encoding; a JSON prelude, exactly 8 NUL bytes, the
// body) and returns the prelude and the offset of the body in res.Body.
func streamed(t *testing.T, res *result) (prelude, int) {
	t.Helper()
	requireResponse(t, res)
	if res.ContentType != streamingContentType {
		t.Fatalf("response Content-Type = %q, want %q", res.ContentType, streamingContentType)
	}
	if !slices.Contains(res.TransferEncoding, "chunked") {
		t.Errorf("response Transfer-Encoding = %q, want chunked (a stream of unknown length)", res.TransferEncoding)
	}
	// The only way a streaming function can report a failure after the
	// body started is the error trailers it declares up front.
	if _, ok := res.Trailer[hdrErrorType]; !ok {
		t.Errorf("response declares trailers %q, want %s among them", keys(res.Trailer), hdrErrorType)
	}
	sep := bytes.Index(res.Body, make([]byte, 8))
	if sep < 0 {
		t.Fatalf("no 8 NUL bytes after a prelude in %q", res.Body)
	}
	raw := res.Body[:sep]
	var p prelude
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || !json.Valid(raw) {
		t.Fatalf("prelude %q is not one JSON object {statusCode, headers, cookies}: %v", raw, err)
	}
	off := sep + 8
	if off < len(res.Body) && res.Body[off] == 0 {
		t.Fatalf("more than 8 NUL bytes after the prelude %s", raw)
	}
	return p, off
}

// buffered decodes a buffered function URL (payload 2.0) response.
func buffered(t *testing.T, res *result) (events.APIGatewayV2HTTPResponse, string) {
	t.Helper()
	requireResponse(t, res)
	if res.ContentType != "application/json" {
		t.Errorf("response Content-Type = %q, want application/json", res.ContentType)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(res.Body, &resp); err != nil {
		t.Fatalf("response %q is not an APIGatewayV2HTTPResponse: %v", res.Body, err)
	}
	body := resp.Body
	if resp.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			t.Fatalf("base64 body: %v", err)
		}
		body = string(b)
	}
	return resp, body
}

// sseEvent is one server-sent event of a streamed body.
type sseEvent struct {
	Data string
	// End is the offset in result.Body just past the event's blank line.
	End int
}

// parseSSE splits the body at res.Body[off:] into events; every event must
// be data lines only and end with a blank line.
func parseSSE(t *testing.T, res *result, off int) []sseEvent {
	t.Helper()
	var out []sseEvent
	rest := string(res.Body[off:])
	for rest != "" {
		block, after, ok := strings.Cut(rest, "\n\n")
		if !ok {
			t.Fatalf("unterminated event %q at the end of the body", rest)
		}
		off += len(block) + 2
		rest = after
		var data []string
		for _, line := range strings.Split(block, "\n") {
			v, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				t.Fatalf("event line %q is not a data line", line)
			}
			data = append(data, v)
		}
		out = append(out, sseEvent{Data: strings.Join(data, "\n"), End: off})
	}
	return out
}

// arrival returns when byte off of res.Body had been read.
func arrival(t *testing.T, res *result, off int) time.Time {
	t.Helper()
	for _, r := range res.Reads {
		if r.Off+r.N > off {
			return r.At
		}
	}
	t.Fatalf("offset %d is past the body (%d bytes)", off, len(res.Body))
	return time.Time{}
}

// logReads logs when each piece of res.Body arrived, for a failure report.
func logReads(t *testing.T, res *result) {
	t.Helper()
	for _, r := range res.Reads {
		t.Logf("  read at +%v: %d bytes at offset %d: %.60q", r.At.Sub(res.Received).Round(time.Millisecond), r.N, r.Off, res.Body[r.Off:r.Off+r.N])
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
