package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// What iapd serve takes from systemd (docs/systemd): the notify socket of
// Type=notify and the listening sockets of socket activation
// (docs/systemd/iapd.socket), both from the environment systemd sets, with
// no library: sd_notify is one datagram, sd_listen_fds a few variables.

// sdListenFDsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const sdListenFDsStart = 3

// sdNotifier sends state changes to systemd's notify socket
// ($NOTIFY_SOCKET: a path, or an abstract name starting with '@').
// Without one (not started by systemd, or not Type=notify) it does
// nothing.
type sdNotifier struct{ socket string }

func newSDNotifier(getenv func(string) string) sdNotifier {
	return sdNotifier{socket: getenv("NOTIFY_SOCKET")}
}

// notify sends one message of newline-separated KEY=VALUE assignments
// ("READY=1", "STOPPING=1", "STATUS=…"). It returns an error only when a
// notify socket is set and the datagram could not be sent.
func (n sdNotifier) notify(state string) error {
	if n.socket == "" {
		return nil
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL).
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("systemd notify socket: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("systemd notify socket: %w", err)
	}
	return nil
}

// sdListeners are the listening sockets systemd passed by socket
// activation, by name (FileDescriptorName= of the socket unit: "public"
// or "ops", the listeners of iapd serve). They are taken only when
// $LISTEN_PID is this process (the variables are meant for it) and
// $LISTEN_FDS counts them from fd 3; each must be a listening stream
// socket with one of the two names, or start-up fails.
type sdListeners map[string]net.Listener

// listenersFromSystemd returns the sockets systemd passed to process pid
// (none when it passed none, or passed them to another process).
func listenersFromSystemd(getenv func(string) string, pid int) (sdListeners, error) {
	if getenv("LISTEN_PID") == "" || getenv("LISTEN_FDS") == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(getenv("LISTEN_PID")); err != nil || p != pid {
		return nil, nil // for another process (a parent that did not unset them)
	}
	n, err := strconv.Atoi(getenv("LISTEN_FDS"))
	if err != nil || n < 0 || n > 64 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q is not a count of sockets", getenv("LISTEN_FDS"))
	}
	names := strings.Split(getenv("LISTEN_FDNAMES"), ":")
	ls := sdListeners{}
	var errs []error
	for i := range n {
		fd := sdListenFDsStart + i
		name := ""
		if i < len(names) {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), "systemd:"+name)
		if name != "public" && name != "ops" {
			f.Close()
			errs = append(errs, fmt.Errorf("socket activation: fd %d is named %q; name each socket FileDescriptorName=public or ops in the .socket unit", fd, name))
			continue
		}
		if _, dup := ls[name]; dup {
			f.Close()
			errs = append(errs, fmt.Errorf("socket activation: two sockets are named %q; iapd serves one of each", name))
			continue
		}
		ln, err := net.FileListener(f) // a dup, close-on-exec
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("socket activation: fd %d (%s) is not a listening stream socket: %w", fd, name, err))
			continue
		}
		ls[name] = ln
	}
	if err := errors.Join(errs...); err != nil {
		ls.close()
		return nil, err
	}
	return ls, nil
}

// take returns the listener named name and hands it over to the caller
// (close is no longer its job); ok is false when systemd passed none.
func (ls sdListeners) take(name string) (ln net.Listener, ok bool) {
	ln, ok = ls[name]
	delete(ls, name)
	return ln, ok
}

// close closes the listeners not taken.
func (ls sdListeners) close() {
	for name, ln := range ls {
		ln.Close()
		delete(ls, name)
	}
}
