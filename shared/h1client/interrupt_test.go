package h1client

// A context that ends at any moment of a call interrupts it, whatever
// deadline the call sets after (found by review: the response header
// timeout's deadline, and the call's after the header, undid the
// interruption). A net.Pipe connection in the pool runs a hook that ends
// the context, and waits for the interruption, at the moment tested.

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookConn is one end of a net.Pipe that runs hooks after a write
// or a read and tells when interrupt set its past deadline.
type hookConn struct {
	net.Conn
	afterWrite  func()
	afterRead   func()
	once        sync.Once
	interrupted chan struct{}
}

func (h *hookConn) Write(p []byte) (int, error) {
	n, err := h.Conn.Write(p)
	if h.afterWrite != nil {
		f := h.afterWrite
		h.afterWrite = nil
		f()
	}
	return n, err
}

func (h *hookConn) Read(p []byte) (int, error) {
	n, err := h.Conn.Read(p)
	if n > 0 && h.afterRead != nil {
		f := h.afterRead
		h.afterRead = nil
		f()
	}
	return n, err
}

func (h *hookConn) SetDeadline(t time.Time) error {
	err := h.Conn.SetDeadline(t)
	if t.Equal(aLongTimeAgo) {
		h.once.Do(func() { close(h.interrupted) })
	}
	return err
}

// pooledOver puts a connection over hc, as dial makes one, into c's pool
// for u, as if it had served a call.
func pooledOver(c *Client, u *url.URL, hc *hookConn) {
	h, _ := c.take(u)
	raw := &countingConn{Conn: hc}
	pc := &conn{host: h, nc: raw, raw: raw, c: c}
	pc.interruptFunc = pc.interrupt
	pc.r.nc, pc.w.nc = raw, raw
	pc.br = bufio.NewReaderSize(&pc.r, 4096)
	pc.bw = bufio.NewWriterSize(&pc.w, 4096)
	c.put(pc)
}

func neverResendClient() *Client {
	return New(Options{
		ResponseHeaderTimeout: 2 * time.Second,
		MaxIdleConnsPerHost:   4,
		NeverResend:           true,
		Proxy:                 func(*http.Request) (*url.URL, error) { return nil, nil },
	})
}

// TestCancelAfterWriteNotUndone: a context that ends after the request
// was written but before the header deadline is set still ends the call
// at once, not after the whole ResponseHeaderTimeout (240 s in the proxy).
func TestCancelAfterWriteNotUndone(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() { // reads the request, never answers
		http.ReadRequest(bufio.NewReader(server))
		io.Copy(io.Discard, server)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hc := &hookConn{Conn: client, interrupted: make(chan struct{})}
	hc.afterWrite = func() {
		cancel()
		select {
		case <-hc.interrupted: // the AfterFunc ran, as it may at any moment
		case <-time.After(time.Second):
		}
	}
	c := neverResendClient()
	u, _ := url.Parse("http://provider.invalid/v1/chat/completions")
	pooledOver(c, u, hc)

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader("{}"))
	start := time.Now()
	_, err := c.Do(req)
	took := time.Since(start)
	if err == nil {
		t.Fatal("no error")
	}
	if took > 500*time.Millisecond {
		t.Errorf("Do returned %v after its context was cancelled (error: %v); the interruption was undone", took, err)
	}
}

// TestCancelAfterHeaderNotUndone: a context that ends while the answer's
// header is being read still interrupts the body's reads, though the call
// sets its own deadline (none, for the proxy's client) after the header.
func TestCancelAfterHeaderNotUndone(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	go func() { // answers a header, then stalls the body
		http.ReadRequest(bufio.NewReader(server))
		io.WriteString(server, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
		io.Copy(io.Discard, server)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hc := &hookConn{Conn: client, interrupted: make(chan struct{})}
	hc.afterRead = func() {
		cancel()
		select {
		case <-hc.interrupted:
		case <-time.After(time.Second):
		}
	}
	c := neverResendClient()
	u, _ := url.Parse("http://provider.invalid/v1/chat/completions")
	pooledOver(c, u, hc)

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader("{}"))
	resp, err := c.Do(req)
	if err != nil {
		return // the cancel was seen: fine
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.Body)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("body read whole though the server sent none of it")
		}
	case <-time.After(2 * time.Second):
		t.Error("the body's read still blocks 2s after the call's context was cancelled: the interruption was undone")
		server.Close()
		<-done
	}
	resp.Body.Close()
}
