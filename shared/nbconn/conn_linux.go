//go:build linux

package nbconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Wrap returns c reading and writing with raw system calls when c is a
// *net.TCPConn, and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	nc := &Conn{TCPConn: tc, rc: rc}
	nc.r.fn, nc.w.fn = nc.r.read, nc.w.write
	return nc
}

// Conn is a TCP connection whose Read and Write are raw non-blocking system
// calls; everything else (deadlines, Close, CloseWrite, addresses, options)
// is the *net.TCPConn's. So are ReadFrom and WriteTo, which io.Copy and
// net/http use for large bodies of a known length: they stay correct, but
// make net's own system calls. It is safe for concurrent use, as net.Conn
// is.
type Conn struct {
	*net.TCPConn
	rc   syscall.RawConn
	r, w op
}

// op is one direction's call in progress. Its fn, made once per Conn, is
// what the poller calls; a closure made per call would be an allocation
// per call. mu keeps a second caller's state out of the first's (the
// poller would serialise them anyway).
type op struct {
	mu    sync.Mutex
	p     []byte
	n     int
	errno syscall.Errno
	short bool // a write took no byte without an error
	fn    func(fd uintptr) bool
}

// maxRW bounds one system call's bytes, as net.Conn's do (1 GiB).
const maxRW = 1 << 30

// read reads into o.p once; false asks the poller to wait for data.
func (o *op) read(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&o.p[0])), uintptr(len(o.p)))
		switch e {
		case 0:
			o.n = int(r)
			raceRead(fd, o.p[:o.n])
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait in the poller
		default:
			o.errno = e
			return true
		}
	}
}

// write writes the rest of o.p; false asks the poller to wait for room.
func (o *op) write(fd uintptr) bool {
	raceWrite(o.p[o.n:])
	for o.n < len(o.p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&o.p[o.n])), uintptr(min(len(o.p)-o.n, maxRW)))
		switch e {
		case 0:
			if r == 0 {
				o.short = true // as net.Conn: a write that takes nothing ends the Write
				return true
			}
			o.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait in the poller
		default:
			o.errno = e
			return true
		}
	}
	return true
}

// Read reads into p as net.Conn does: it waits in the runtime's poller
// until data, the end of the stream, an error, the read deadline or Close.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		// As net.Conn: nothing to read, but a closed connection says so.
		if err := c.rc.Control(func(uintptr) {}); err != nil {
			return 0, c.opError("read", err)
		}
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	o := &c.r
	o.mu.Lock()
	o.p, o.n, o.errno = p, 0, 0
	err := c.rc.Read(o.fn)
	n, errno := o.n, o.errno
	o.p = nil // keep no caller's buffer
	o.mu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p as net.Conn does, waiting in the runtime's poller
// while the send buffer is full. It returns what was written before an
// error, the write deadline or Close stopped it.
func (c *Conn) Write(p []byte) (int, error) {
	o := &c.w
	o.mu.Lock()
	o.p, o.n, o.errno, o.short = p, 0, 0, false
	err := c.rc.Write(o.fn)
	n, errno, short := o.n, o.errno, o.short
	o.p = nil
	o.mu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	case short:
		return n, c.opError("write", io.ErrUnexpectedEOF)
	}
	return n, nil
}

// opError is err as net.Conn reports it: a *net.OpError naming the
// operation and the addresses, wrapping the poller's error (a passed
// deadline, a closed connection) or the system call's. Its Net is "tcp",
// where net.Conn names the network the connection was made on ("tcp4" or
// "tcp6" when one of those was asked for): the wrapper cannot see it.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // the raw conn's, whose Op is "raw-read" or "raw-write"
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
