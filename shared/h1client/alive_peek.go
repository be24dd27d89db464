//go:build linux || darwin

package h1client

import (
	"syscall"
	"time"
)

// alive reports whether pc, idle, is still as its last answer left it: the
// server has neither closed it nor sent anything on it since. It peeks at
// the socket without blocking: one system call, no byte consumed.
func (pc *conn) alive() bool {
	rc := pc.raw.sys
	if rc == nil {
		return true // not a socket (tests' pipes): nothing to peek at
	}
	// The last call's deadline may have passed while it was idle, and a
	// passed deadline fails the peek; the next call sets its own.
	if pc.raw.SetReadDeadline(time.Time{}) != nil {
		return false
	}
	var perr error
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		_, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	})
	// EAGAIN: nothing to read, the connection as it was. Anything else
	// (0 bytes: the server closed it; a byte: it said something; an error)
	// leaves it unfit for a request.
	return err == nil && perr == syscall.EAGAIN
}
