package main

import (
	"os"
	"sync"
)

// groupSync makes records durable the cheapest way a server that answers
// only once a write is durable can: appended to one file, made durable in
// group fsyncs by one writer goroutine, every caller waiting for the round
// that covers its record. The durable echo (startBaseline with a
// groupSync) is the native echo paying that price per request: the
// ceiling of any durable server on this machine, disk and client,
// measured in the same run as iapd.
type groupSync struct {
	f *os.File

	mu    sync.Mutex
	buf   []byte
	spare []byte
	round *syncRound

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

type syncRound struct {
	done chan struct{}
	err  error
}

// startGroupSync creates its file in dir (the disk whose fsync is to be
// measured) and starts the writer.
func startGroupSync(dir string) (*groupSync, error) {
	f, err := os.CreateTemp(dir, "iapload-journal-*")
	if err != nil {
		return nil, err
	}
	g := &groupSync{
		f: f, round: &syncRound{done: make(chan struct{})},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go g.run()
	return g, nil
}

// commit appends rec and returns once it is durable.
func (g *groupSync) commit(rec []byte) error {
	g.mu.Lock()
	g.buf = append(g.buf, rec...)
	r := g.round
	g.mu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
	<-r.done
	return r.err
}

func (g *groupSync) run() {
	defer close(g.done)
	for {
		select {
		case <-g.kick:
			g.sync()
		case <-g.stop:
			g.sync()
			return
		}
	}
}

// sync writes what was appended since the last round, fsyncs, and
// releases the round's callers.
func (g *groupSync) sync() {
	g.mu.Lock()
	buf, r := g.buf, g.round
	g.buf, g.round = g.spare[:0], &syncRound{done: make(chan struct{})}
	g.mu.Unlock()
	if len(buf) > 0 {
		_, r.err = g.f.Write(buf)
		if r.err == nil {
			r.err = g.f.Sync()
		}
	}
	g.mu.Lock()
	g.spare = buf[:0]
	g.mu.Unlock()
	close(r.done)
}

// close stops the writer (its callers must be done) and removes the file.
func (g *groupSync) close() {
	close(g.stop)
	<-g.done
	g.f.Close()
	os.Remove(g.f.Name())
}
