package badger

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The durability wait honours its context (issue 13): a record that is
// not yet durable when ctx ends is answered errNotYetDurable (wrapping
// ctx's error), never a failure; a durable one is answered nil whatever
// ctx.
func TestJournalWaitHonoursContext(t *testing.T) {
	l, err := Open(Options{Dir: t.TempDir(), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.jn == nil {
		t.Fatal("no journal")
	}
	ctx := context.Background()
	before := l.jn.lastSeq()
	if err := l.PutRecord(ctx, "test", "k", []byte("v"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if l.jn.lastSeq() == before {
		t.Fatal("the record was not journaled")
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.jn.waitCtx(done, l.jn.lastSeq()); err != nil {
		t.Fatalf("a durable record: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	err = l.jn.waitCtx(short, l.jn.lastSeq()+1) // never written
	if !errors.Is(err, errNotYetDurable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a record not durable at the deadline: %v", err)
	}
}
