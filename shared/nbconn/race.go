//go:build race && linux

package nbconn

import (
	"runtime"
	"syscall"
	"unsafe"
)

// The race detector orders a goroutine that reads a socket after another
// goroutine, anywhere in the process, wrote one: syscall.Read and Write
// tell it so, and raw system calls do not. Without this, a test whose
// server writes through net.Conn and whose client reads through a Conn
// would see a data race where the bytes on the wire order the two. These
// hooks tell the detector what syscall.Read and Write tell it; they exist
// in race builds only.

// raceRead is called after a read of p from fd succeeded: a read of no
// bytes through syscall.Read (which then acquires what writes released)
// and the bytes written into p.
func raceRead(fd uintptr, p []byte) {
	syscall.Read(int(fd), nil)
	if len(p) > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&p[0]), len(p))
	}
}

// raceWrite is called before p is written: syscall.Write releases what
// this goroutine did to later readers before it fails on fd -1, and the
// bytes of p are read.
func raceWrite(p []byte) {
	syscall.Write(-1, nil)
	if len(p) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&p[0]), len(p))
	}
}
