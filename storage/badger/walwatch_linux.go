package badger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"syscall"
)

// walWatch reports the files created in the data directory, through
// inotify: the syncer learns of a new WAL file with one read per round
// instead of listing the directory (which also grows with the SSTs).
type walWatch struct {
	fd  int
	buf [64 << 10]byte
}

func newWALWatch(dir string) (*walWatch, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	return &walWatch{fd: fd}, nil
}

// created calls fn with the name of every file created since the last
// call. overflow reports that the kernel dropped events: the caller must
// list the directory.
func (w *walWatch) created(fn func(name string) error) (overflow bool, err error) {
	for {
		n, err := syscall.Read(w.fd, w.buf[:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			return overflow, nil
		}
		if err != nil {
			return overflow, err
		}
		if n <= 0 {
			return overflow, errors.New("inotify: short read")
		}
		// struct inotify_event: wd int32, mask, cookie, len uint32, name[len].
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := w.buf[off:n]
			mask := binary.NativeEndian.Uint32(ev[4:8])
			end := syscall.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(ev[12:16]))
			if end > len(ev) {
				return overflow, errors.New("inotify: truncated event")
			}
			name := ev[syscall.SizeofInotifyEvent:end]
			off += end
			if mask&syscall.IN_Q_OVERFLOW != 0 {
				overflow = true
				continue
			}
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if len(name) > 0 {
				if err := fn(string(name)); err != nil {
					return overflow, err
				}
			}
		}
	}
}

func (w *walWatch) close() { _ = syscall.Close(w.fd) }
