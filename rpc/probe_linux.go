package rpc

import (
	"net"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// Watching the client of a request in flight. fasthttp does not read the
// connection while the handler runs and says nothing of a client that
// goes away, so the seam asks the kernel: ppoll with POLLRDHUP tells a
// peer that closed or shut down its side (FIN) or reset the connection,
// without reading anything (a pipelined request or TLS data stays where
// it is for fasthttp). The wait itself is the Go netpoller's (RawConn.Read
// parks the goroutine until the socket has news), so a watch costs a
// parked goroutine, not a thread.
//
// What is detected: FIN, RST, and a half-close after the request (as
// net/http, which treats it as the client gone). What is not: a client
// whose machine vanished without a FIN or RST (no packet comes; the
// route's deadline ends the request), connections that are not TCP
// sockets (in-memory listeners in tests).

// pollfd of ppoll(2).
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn    = 0x1
	pollErr   = 0x8
	pollHup   = 0x10
	pollRDHup = 0x2000
)

// probeWatch is an exchange's watch state; reused with it.
type probeWatch struct {
	fds [1]pollFd
	ts  syscall.Timespec // zero: ppoll does not block
}

// socketOf returns the TCP socket under c (through TLS).
func socketOf(c net.Conn) (syscall.Conn, bool) {
	for range 4 {
		if u, ok := c.(interface{ NetConn() net.Conn }); ok {
			c = u.NetConn()
			continue
		}
		break
	}
	sc, ok := c.(syscall.Conn)
	return sc, ok
}

// canWatch reports whether the client of ctx can be watched.
func canWatch(ctx *fasthttp.RequestCtx) bool {
	c := ctx.Conn()
	if c == nil {
		return false
	}
	_, ok := socketOf(c)
	return ok
}

// wait returns true when the client of rc is gone, false when the watch
// was stopped (stopWatch) or cannot be done.
func (w *probeWatch) wait(rc *fasthttp.RequestCtx) bool {
	sc, ok := socketOf(rc.Conn())
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	err = raw.Read(func(fd uintptr) bool {
		w.fds[0] = pollFd{fd: int32(fd), events: pollIn | pollRDHup} // #nosec G115 -- a file descriptor
		n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&w.fds[0])), 1,
			uintptr(unsafe.Pointer(&w.ts)), 0, 0, 0)
		if errno != 0 || n == 0 {
			return false // nothing yet: park until the socket has news
		}
		gone = w.fds[0].revents&(pollRDHup|pollHup|pollErr) != 0
		return gone // data only (a pipelined request): keep watching
	})
	return err == nil && gone
}

// stopWatch makes a watch of ctx's client return (or return at once if it
// has not started): a read deadline in the past wakes the parked read.
// fasthttp sets the connection's read deadline again before it reads the
// next request.
func stopWatch(ctx *fasthttp.RequestCtx) {
	past := time.Unix(1, 0)
	if ctx.SetReadDeadline(past) != nil {
		_ = ctx.Conn().SetReadDeadline(past)
	}
}

// watchSupported: clients are watched on this platform.
const watchSupported = true
