package nbconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, both wrapped.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := Listener{Listener: ln}.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client, server = Wrap(c), <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func wantRaw(t *testing.T, c net.Conn) {
	t.Helper()
	if _, ok := c.(*Conn); !ok && runtime.GOOS == "linux" {
		t.Fatalf("conn is %T, want *nbconn.Conn on Linux", c)
	}
}

func TestWrapOnlyTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe itself", got)
	}
	client, server := pair(t)
	wantRaw(t, client)
	wantRaw(t, server)
}

// TestDuplex moves 8 MB each way at once, one reader and one writer per
// end, so writes fill the send buffer and wait in the poller.
func TestDuplex(t *testing.T) {
	client, server := pair(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16)
	var wg sync.WaitGroup
	got := make([][]byte, 2)
	for i, c := range []net.Conn{client, server} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			n, err := c.Write(payload)
			if err != nil || n != len(payload) {
				t.Errorf("Write = %d, %v; want %d, nil", n, err, len(payload))
			}
		}()
		go func() {
			defer wg.Done()
			b := make([]byte, 0, len(payload))
			buf := make([]byte, 1000) // short reads: many of them
			for len(b) < len(payload) {
				n, err := c.Read(buf)
				if err != nil {
					t.Errorf("Read after %d bytes: %v", len(b), err)
					return
				}
				b = append(b, buf[:n]...)
			}
			got[i] = b
		}()
	}
	wg.Wait()
	for i, b := range got {
		if !bytes.Equal(b, payload) {
			t.Errorf("end %d read %d bytes, not the %d written", i, len(b), len(payload))
		}
	}
}

func TestEOFAndEmptyRead(t *testing.T) {
	client, server := pair(t)
	if n, err := server.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	if _, err := client.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := client.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(server)
	if err != nil || string(b) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil (io.EOF at the end)", b, err)
	}
	if n, err := server.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestDeadlines(t *testing.T) {
	client, server := pair(t)
	wantTimeout := func(t *testing.T, op string, err error) {
		t.Helper()
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != op || oe.Net != "tcp" || oe.Addr == nil || oe.Source == nil {
			t.Fatalf("error %#v, want a *net.OpError for %q with both addresses", err, op)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || !oe.Timeout() {
			t.Fatalf("error %v is not a deadline's timeout", err)
		}
	}
	t.Run("read", func(t *testing.T) {
		server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		n, err := server.Read(make([]byte, 8))
		if n != 0 {
			t.Fatalf("read %d bytes of nothing", n)
		}
		wantTimeout(t, "read", err)
		if d := time.Since(start); d < 40*time.Millisecond {
			t.Fatalf("Read returned after %v, before its deadline", d)
		}
		// A later deadline lets it read again.
		server.SetReadDeadline(time.Time{})
		client.Write([]byte("x"))
		if n, err := server.Read(make([]byte, 8)); n != 1 || err != nil {
			t.Fatalf("Read after clearing the deadline = %d, %v", n, err)
		}
	})
	t.Run("write", func(t *testing.T) {
		// Nobody reads client's end: writes fill both buffers, then wait.
		server.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		big := make([]byte, 64<<20)
		n, err := server.Write(big)
		wantTimeout(t, "write", err)
		if n <= 0 || n >= len(big) {
			t.Fatalf("Write reported %d of %d bytes written before its deadline; want some, not all", n, len(big))
		}
	})
}

func TestCloseWakesReader(t *testing.T) {
	_, server := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 8))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	server.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed conn: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the waiting Read")
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed conn: %v, want net.ErrClosed", err)
	}
}

// TestPeerGone: writing to a connection the peer reset fails with the
// system call's error, as net.Conn's write does.
func TestPeerGone(t *testing.T) {
	client, server := pair(t)
	client.(interface{ SetLinger(int) error }).SetLinger(0) // close sends a reset
	client.Close()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = server.Write([]byte("are you there?"))
		time.Sleep(time.Millisecond)
	}
	var se *os.SyscallError
	if !errors.As(err, &se) || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("Write to a reset peer: %v, want ECONNRESET or EPIPE in an *os.SyscallError", err)
	}
	if !strings.HasPrefix(err.Error(), "write tcp ") {
		t.Fatalf("error %q does not read as net.Conn's", err)
	}
}

// TestHTTPServer serves keep-alive requests through a wrapped listener.
func TestHTTPServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(bytes.ToUpper(b))
	})}
	go srv.Serve(Listener{Listener: ln})
	defer srv.Close()
	conns := 0
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns++
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		return Wrap(c), err
	}}}
	for i := 0; i < 50; i++ {
		resp, err := client.Post("http://"+ln.Addr().String(), "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HELLO" {
			t.Fatalf("request %d: %q", i, b)
		}
	}
	if conns != 1 {
		t.Fatalf("50 requests took %d connections, want 1 kept alive", conns)
	}
}

// TestConcurrentWriters: net.Conn may be written by several goroutines at
// once; every byte arrives.
func TestConcurrentWriters(t *testing.T) {
	client, server := pair(t)
	const writers, writes, size = 4, 200, 3000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bytes.Repeat([]byte{byte('a' + w)}, size)
			for i := 0; i < writes; i++ {
				if _, err := client.Write(b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); client.(interface{ CloseWrite() error }).CloseWrite() }()
	b, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	for w := 0; w < writers; w++ {
		if n := bytes.Count(b, []byte{byte('a' + w)}); n != writes*size {
			t.Errorf("writer %d: %d bytes arrived, want %d", w, n, writes*size)
		}
	}
}

// TestNoAllocations: a read and a write allocate nothing (the closures the
// poller calls are made once per connection).
func TestNoAllocations(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw system calls on Linux only")
	}
	client, server := pair(t)
	out, in := []byte("ping"), make([]byte, 4)
	allocs := testing.AllocsPerRun(200, func() {
		client.Write(out)
		io.ReadFull(server, in)
	})
	if allocs != 0 {
		t.Fatalf("a write and a read: %v allocations, want 0", allocs)
	}
}

// TestEmptyReadAfterClose: a read of no bytes on a closed connection
// reports the close, as net.Conn's does (found by a review).
func TestEmptyReadAfterClose(t *testing.T) {
	_, server := pair(t)
	server.Close()
	if n, err := server.Read(nil); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read(nil) after Close = %d, %v; want net.ErrClosed", n, err)
	}
	var oe *net.OpError
	if _, err := server.Read(nil); !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("error %#v, want a *net.OpError for read", err)
	}
}

// TestWrapTransport: a transport given to WrapTransport dials wrapped
// connections through its own dialer (DialContext, else the deprecated
// Dial, else a net.Dialer), keeps that dialer's errors, and serves
// requests.
func TestWrapTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pong")
	}))
	defer srv.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	var dialed []string
	inner := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		return inner(ctx, network, addr)
	}
	WrapTransport(tr)
	c, err := tr.DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wantRaw(t, c)
	c.Close()
	if _, err := tr.DialContext(context.Background(), "tcp", "127.0.0.1:0"); err == nil {
		t.Fatal("dialing port 0 succeeded, want the dialer's error")
	}
	for range 3 { // the second and third on the kept connection
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "pong" {
			t.Fatalf("body %q, want pong", body)
		}
	}
	if len(dialed) != 3 || dialed[2] != srv.Listener.Addr().String() {
		t.Fatalf("dialed %v, want the test's two dials and one by the client", dialed)
	}
	var oldDial int
	legacy := &http.Transport{Dial: func(network, addr string) (net.Conn, error) { //nolint:staticcheck // the deprecated field is the point
		oldDial++
		return net.Dial(network, addr)
	}}
	WrapTransport(legacy) // its deprecated Dial is kept (found by a review)
	c, err = legacy.DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wantRaw(t, c)
	c.Close()
	if oldDial != 1 {
		t.Fatalf("the transport's own Dial ran %d times, want 1", oldDial)
	}
	bare := &http.Transport{}
	WrapTransport(bare) // no dialer of its own: net.Dialer's
	c, err = bare.DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wantRaw(t, c)
	c.Close()
}
