package h1client

// One connection: a call's write and read, its deadline and its interruption,
// and the answer's body that hands the connection back.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// deadline is a call's end.
type deadline struct {
	at      time.Time     // zero: none
	fromCtx bool          // at is the context's deadline
	timeout time.Duration // Options.CallTimeout
}

// aLongTimeAgo is a deadline that has passed: setting it interrupts a
// connection's reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one connection.
type conn struct {
	c    *Client
	host *host
	nc   net.Conn
	// raw is the TCP connection under nc (nc itself without TLS): what it
	// read tells "no byte of an answer arrived" even when TLS only holds
	// part of a record.
	raw *countingConn
	// sending is the request body being written, closed by interrupt so
	// that a body whose Read blocks does not outlast the context (nil
	// between calls). Guarded by mu: interrupt runs on the context's
	// AfterFunc goroutine.
	mu      sync.Mutex
	sending io.Closer
	// interrupted says the call's context ended: interrupt set a past
	// deadline, which no later deadline of the call may undo (guarded by
	// mu; cleared as a call starts, before its AfterFunc is registered).
	interrupted bool
	r           limitReader
	w           errWriter
	br          *bufio.Reader
	bw          *bufio.Writer
	idleSince   time.Time // when it last went idle (guarded by Client.mu while idle)
	// interruptFunc is interrupt, made once: a method value made per call
	// would be an allocation per call.
	interruptFunc func()
	reused        bool // it served a call before
	// lr bounds the request body being written: a field, since
	// io.LimitReader would be an allocation per call.
	lr io.LimitedReader
}

// countingConn counts the bytes read from its connection. Only the calling
// goroutine reads a conn, so the count needs no lock.
type countingConn struct {
	net.Conn
	read int64
	sys  syscall.RawConn // the socket's, for alive; nil when not a socket
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}

// maxHeaderBytes bounds an answer's header, as net/http's
// Transport.MaxResponseHeaderBytes does (whose default is 10 MB; AWS's
// answers' headers are well under a kilobyte).
const maxHeaderBytes = 1 << 20

var errClosedIdle = errors.New("the server closed the idle connection (408 Request Timeout)")

var errProxySetting = errors.New("the proxy setting (HTTP_PROXY, HTTPS_PROXY) does not parse")

var errHeaderTooLong = errors.New("the answer's header is longer than 1 MB")

// limitReader reads nc, at most limit bytes.
type limitReader struct {
	nc    net.Conn
	limit int64
}

func (r *limitReader) Read(p []byte) (int, error) {
	if r.limit <= 0 {
		return 0, errHeaderTooLong
	}
	if int64(len(p)) > r.limit {
		p = p[:r.limit]
	}
	n, err := r.nc.Read(p)
	r.limit -= int64(n)
	return n, err
}

// errWriter writes nc and keeps its first error, which tells a failed
// connection from a failed request body.
type errWriter struct {
	nc  net.Conn
	err error
}

func (w *errWriter) Write(p []byte) (int, error) {
	n, err := w.nc.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// interrupt makes pc's reads and writes fail at once (a context's end),
// and closes the request body being sent, if any.
func (pc *conn) interrupt() {
	pc.mu.Lock()
	pc.interrupted = true
	pc.nc.SetDeadline(aLongTimeAgo)
	body := pc.sending
	pc.mu.Unlock()
	if body != nil {
		body.Close()
	}
}

// setReadDeadline sets pc's read deadline to t, unless the call was
// interrupted, whose past deadline stays.
func (pc *conn) setReadDeadline(t time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !pc.interrupted {
		pc.nc.SetReadDeadline(t)
	}
}

// send records body (nil: none) as the request body being sent.
func (pc *conn) send(body io.Closer) {
	pc.mu.Lock()
	pc.sending = body
	pc.mu.Unlock()
}

// roundTrip sends req with body on pc and reads the answer's header. On
// error, pc is closed and retry says whether the request may be sent again
// on a new connection: pc was reused and no byte of an answer arrived.
// body is closed whatever happens.
func (pc *conn) roundTrip(ctx context.Context, req *http.Request, o *outgoing, body io.ReadCloser, dl *deadline) (*http.Response, bool, error) {
	c := pc.c
	pc.mu.Lock()
	pc.interrupted = false
	pc.mu.Unlock()
	pc.nc.SetDeadline(dl.at)
	read := pc.raw.read // what arrived before this request: none of its answer
	if body != nil {
		pc.send(body)
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, pc.interruptFunc)
	}
	fail := func(stage string, err error) error {
		if stop != nil {
			stop()
		}
		pc.nc.Close()
		return c.fail(req, stage, err, dl)
	}
	werr, bodyErr := pc.write(req, o, body)
	if body != nil {
		pc.send(nil)
	}
	closeReader(body)
	if bodyErr != nil {
		return nil, false, fail("read the request's body", bodyErr)
	}
	if werr != nil && (ctx.Err() != nil || isTimeout(werr)) {
		return nil, false, fail("write the request", werr)
	}
	// Even when the write failed, the server may have answered (an error
	// before reading the whole body) or closed: read what it said.
	pc.r.limit = maxHeaderBytes
	headerBy := pc.headerDeadline(dl)
	if _, err := pc.br.Peek(1); err != nil {
		err = c.headerTimedOut(ctx, err, headerBy)
		// Not a byte of an answer. EOF says so (TLS says it only at a
		// record's boundary: a close_notify, or the end of the connection
		// between records). TLS may have read part of a record before the
		// connection dropped (io.ErrUnexpectedEOF, or a reset), which says
		// the server answered: the bytes read under TLS tell.
		retry := pc.reused && ctx.Err() == nil && (errors.Is(err, io.EOF) || gone(err) && pc.raw.read == read)
		if werr != nil {
			return nil, retry, fail("write the request", werr)
		}
		return nil, retry, fail("read the answer", err)
	}
	resp, err := readHead(pc.br, req)
	if err != nil {
		return nil, false, fail("read the answer", c.headerTimedOut(ctx, err, headerBy))
	}
	if !headerBy.IsZero() {
		pc.setReadDeadline(dl.at) // the body has the call's bounds only
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, false, fail("read the answer", errors.New("unexpected 101 Switching Protocols"))
	}
	if resp.StatusCode == http.StatusRequestTimeout && pc.reused {
		// Some servers say 408 as they close an idle connection: sent
		// before the request arrived, it answers none (net/http ignores
		// it likewise).
		return nil, ctx.Err() == nil, fail("read the answer", errClosedIdle)
	}
	pc.r.limit = 1<<63 - 1
	keep := werr == nil && !resp.Close && !o.close
	if resp.Body == http.NoBody {
		pc.release(stop, keep)
		return resp, false, nil
	}
	resp.Body = &answerBody{pc: pc, rc: resp.Body, stop: stop, keep: keep, req: req, dl: *dl}
	return resp, false, nil
}

// headerDeadline sets pc's read deadline for the answer's header, when
// Options.ResponseHeaderTimeout ends it before dl does, and returns it
// (zero: none set).
func (pc *conn) headerDeadline(dl *deadline) time.Time {
	t := pc.c.opts.ResponseHeaderTimeout
	if t <= 0 {
		return time.Time{}
	}
	at := time.Now().Add(t)
	if !dl.at.IsZero() && !at.Before(dl.at) {
		return time.Time{}
	}
	pc.setReadDeadline(at)
	return at
}

// headerTimedOut is err, said to be the response header timeout's doing
// when that timeout (set at headerBy; zero: none) ended the read, not the
// context or the call's deadline.
func (c *Client) headerTimedOut(ctx context.Context, err error, headerBy time.Time) error {
	if headerBy.IsZero() || ctx.Err() != nil || !isTimeout(err) {
		return err
	}
	return &stopped{reason: context.DeadlineExceeded, what: "response header timeout (" + c.opts.ResponseHeaderTimeout.String() + ") exceeded", err: err}
}

// write writes req's head and body to pc. werr is the connection's error,
// bodyErr the body's.
func (pc *conn) write(req *http.Request, o *outgoing, body io.ReadCloser) (werr, bodyErr error) {
	bw := pc.bw
	bw.WriteString(o.method)
	bw.WriteByte(' ')
	bw.WriteString(o.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(o.host)
	bw.WriteString("\r\n")
	for k, vs := range req.Header {
		if skipHeader(k) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	if o.close && !o.connection {
		bw.WriteString("Connection: close\r\n")
	}
	length := o.length
	var rd io.Reader = body
	if body != nil && length == 0 {
		// A body of length 0 is a body of unknown length, as with
		// net/http: it is empty or sent chunked.
		probe := make([]byte, 1)
		switch n, err := io.ReadFull(body, probe); {
		case err == io.EOF:
			rd = nil
		case err != nil:
			return nil, err
		default:
			rd, length = io.MultiReader(bytes.NewReader(probe[:n]), body), -1
		}
	}
	switch {
	case length > 0 || length == 0 && (o.method == http.MethodPost || o.method == http.MethodPut || o.method == http.MethodPatch):
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), length, 10))
		bw.WriteString("\r\n\r\n")
	case length < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	default:
		bw.WriteString("\r\n")
	}
	switch {
	case rd == nil || length == 0:
	case length > 0:
		// All but the last byte, then the last one only if the body ends
		// right after it: a body longer than announced never puts a whole
		// request (and the start of another) on the connection.
		pc.lr = io.LimitedReader{R: rd, N: length - 1}
		n, err := io.Copy(bw, &pc.lr)
		pc.lr.R = nil // keep no caller's body
		if pc.w.err != nil {
			return pc.w.err, nil
		}
		if err != nil {
			return nil, err
		}
		var tail [2]byte
		m, err := io.ReadFull(rd, tail[:])
		switch {
		case m == 2:
			return nil, fmt.Errorf("the body is longer than its ContentLength (%d)", length)
		case m == 1 && err == io.ErrUnexpectedEOF:
			bw.WriteByte(tail[0])
		case m == 0 && err == io.EOF:
			return nil, fmt.Errorf("the body has %d bytes, ContentLength says %d", n, length)
		default:
			return nil, err
		}
	default:
		if err := writeChunked(bw, rd); pc.w.err != nil {
			return pc.w.err, nil
		} else if err != nil {
			return nil, err
		}
	}
	bw.Flush()
	return pc.w.err, nil
}

// writeChunked writes r to bw in the chunked transfer coding; its error
// is r's (bw's, if any, is the connection's, kept by errWriter).
func writeChunked(bw *bufio.Writer, r io.Reader) error {
	buf := make([]byte, 8<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:n])
			bw.WriteString("\r\n")
		}
		if err == io.EOF {
			bw.WriteString("0\r\n\r\n")
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// release ends pc's call: back to the pool when keep (and the context did
// not end meanwhile: its AfterFunc may be setting a past deadline), else
// closed.
func (pc *conn) release(stop func() bool, keep bool) {
	if stop != nil && !stop() {
		keep = false
	}
	if keep && pc.br.Buffered() == 0 { // bytes past the answer: the connection is out of step
		pc.c.put(pc)
	} else {
		pc.nc.Close()
	}
}

// answerBody is an answer's body: read to its end, it puts its connection back;
// closed before, it closes it.
type answerBody struct {
	pc   *conn
	rc   io.ReadCloser // http.ReadResponse's body
	stop func() bool   // the context's AfterFunc's; nil without one
	keep bool          // the connection may be reused once the body is read
	req  *http.Request
	dl   deadline

	mu       sync.Mutex
	released bool  // the connection went back to the pool or was closed
	closed   bool  // Close was called
	err      error // the error that ended the body early
}

var errBodyClosed = errors.New("h1client: read on a closed answer body")

func (b *answerBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return 0, errBodyClosed
	case b.err != nil:
		b.mu.Unlock()
		return 0, b.err
	case b.released:
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p) // Close may run meanwhile: it closes the connection
	if err == nil {
		return n, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return n, errBodyClosed
	}
	if err == io.EOF {
		if !b.released {
			b.released = true
			b.pc.release(b.stop, b.keep)
		}
		return n, io.EOF
	}
	if !b.released {
		b.released = true
		b.pc.release(b.stop, false)
	}
	b.err = b.pc.c.fail(b.req, "read the answer's body", err, &b.dl)
	return n, b.err
}

// Close closes the body; before its end, it closes the connection too.
func (b *answerBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if !b.released {
		b.released = true
		b.pc.release(b.stop, false)
	}
	return nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func closeReader(rc io.ReadCloser) {
	if rc != nil {
		rc.Close()
	}
}
