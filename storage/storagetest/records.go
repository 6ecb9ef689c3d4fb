package storagetest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

func (e *xenv) wantRecord(ns, key string, want []byte) {
	e.t.Helper()
	got, err := e.x.GetRecord(e.ctx, ns, key)
	if err != nil {
		e.t.Fatalf("get %s/%q: %v", ns, key, err)
	}
	if !bytes.Equal(got, want) {
		e.t.Fatalf("get %s/%q = %q, want %q", ns, key, got, want)
	}
}

func (e *xenv) wantNoRecord(ns, key string) {
	e.t.Helper()
	_, err := e.x.GetRecord(e.ctx, ns, key)
	wantKind(e.t, err, storage.NotFound, fmt.Sprintf("get %s/%q", ns, key))
}

func (e *xenv) putIfAbsent(ns, key string, value []byte, expires time.Time) ([]byte, bool) {
	e.t.Helper()
	stored, created, err := e.x.PutRecordIfAbsent(e.ctx, ns, key, value, expires)
	if err != nil {
		e.t.Fatalf("put if absent %s/%q: %v", ns, key, err)
	}
	return stored, created
}

func testRecords(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	e.wantNoRecord("sms.uuid", "u1")
	stored, created := e.putIfAbsent("sms.uuid", "u1", []byte("first"), time.Time{})
	if !created || string(stored) != "first" {
		t.Fatalf("first put: %q, created %v", stored, created)
	}
	stored, created = e.putIfAbsent("sms.uuid", "u1", []byte("second"), time.Time{})
	if created || string(stored) != "first" {
		t.Fatalf("second put: %q, created %v; want the first value, not created", stored, created)
	}
	e.wantRecord("sms.uuid", "u1", []byte("first"))

	// Namespaces are separate; a key may hold any byte.
	e.wantNoRecord("sms.dlr", "u1")
	odd := "a\x00b\xff c"
	noErr(t, x.PutRecord(ctx, "sms.dlr", odd, []byte("dlr"), time.Time{}))
	e.wantRecord("sms.dlr", odd, []byte("dlr"))
	e.wantNoRecord("sms.dlr", "a")
	e.wantRecord("sms.uuid", "u1", []byte("first"))

	// PutRecord replaces.
	noErr(t, x.PutRecord(ctx, "sms.uuid", "u1", []byte("replaced"), time.Time{}))
	e.wantRecord("sms.uuid", "u1", []byte("replaced"))

	// The returned slice is the caller's: changing it changes nothing.
	got := res(x.GetRecord(ctx, "sms.uuid", "u1")).must(t)
	got[0] = 'X'
	e.wantRecord("sms.uuid", "u1", []byte("replaced"))

	// An empty value is a record.
	stored, created = e.putIfAbsent("letters", "l1", nil, time.Time{})
	if !created || len(stored) != 0 {
		t.Fatalf("empty put: %q, created %v", stored, created)
	}
	e.wantRecord("letters", "l1", []byte{})
	if _, created = e.putIfAbsent("letters", "l1", []byte("x"), time.Time{}); created {
		t.Fatal("an empty record counted as absent")
	}

	// Delete, idempotent; then the key is free again.
	noErr(t, x.DeleteRecord(ctx, "sms.uuid", "u1"))
	e.wantNoRecord("sms.uuid", "u1")
	noErr(t, x.DeleteRecord(ctx, "sms.uuid", "u1"))
	noErr(t, x.DeleteRecord(ctx, "never", "seen"))
	if _, created = e.putIfAbsent("sms.uuid", "u1", []byte("again"), time.Time{}); !created {
		t.Fatal("put after delete did not create")
	}
	e.wantRecord("sms.uuid", "u1", []byte("again"))

	// The largest value.
	big := bytes.Repeat([]byte{0xab}, storage.MaxRecordValue)
	noErr(t, x.PutRecord(ctx, "big", "k", big, time.Time{}))
	e.wantRecord("big", "k", big)
}

func testRecordsValidation(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	future := e.clock.Now().Add(time.Hour)
	badNS := []string{"", "a b", "a\x00b", "é", strings.Repeat("n", 65)}
	for _, ns := range badNS {
		_, _, err := x.PutRecordIfAbsent(ctx, ns, "k", nil, future)
		wantKind(t, err, storage.Invalid, fmt.Sprintf("put if absent in namespace %q", ns))
		wantKind(t, x.PutRecord(ctx, ns, "k", nil, future), storage.Invalid, "put in a bad namespace")
		_, err = x.GetRecord(ctx, ns, "k")
		wantKind(t, err, storage.Invalid, "get in a bad namespace")
		wantKind(t, x.DeleteRecord(ctx, ns, "k"), storage.Invalid, "delete in a bad namespace")
	}
	for _, key := range []string{"", strings.Repeat("k", 513)} {
		_, _, err := x.PutRecordIfAbsent(ctx, "ns", key, nil, future)
		wantKind(t, err, storage.Invalid, fmt.Sprintf("put a key of %d bytes", len(key)))
		_, err = x.GetRecord(ctx, "ns", key)
		wantKind(t, err, storage.Invalid, "get a bad key")
	}
	noErr(t, x.PutRecord(ctx, strings.Repeat("n", 64), strings.Repeat("k", 512), []byte("v"), future))
	e.wantRecord(strings.Repeat("n", 64), strings.Repeat("k", 512), []byte("v"))

	tooBig := make([]byte, storage.MaxRecordValue+1)
	_, _, err := x.PutRecordIfAbsent(ctx, "ns", "k", tooBig, future)
	wantKind(t, err, storage.Invalid, "put if absent a value too big")
	wantKind(t, x.PutRecord(ctx, "ns", "k", tooBig, future), storage.Invalid, "put a value too big")

	// A record born dead is refused.
	for _, at := range []time.Time{e.clock.Now(), e.clock.Now().Add(-time.Second)} {
		_, _, err := x.PutRecordIfAbsent(ctx, "ns", "k", nil, at)
		wantKind(t, err, storage.Invalid, "put if absent expiring at "+at.String())
		wantKind(t, x.PutRecord(ctx, "ns", "k", nil, at), storage.Invalid, "put expiring at "+at.String())
	}
	e.wantNoRecord("ns", "k")
}

// sweeper returns the store's RecordSweeper, failing if it has none: a
// store that keeps expired records must let Sweep delete them.
func (e *xenv) sweeper() storage.RecordSweeper {
	e.t.Helper()
	rs, ok := e.x.(storage.RecordSweeper)
	if !ok {
		e.t.Fatal("the store does not implement storage.RecordSweeper")
	}
	return rs
}

func testRecordsExpiry(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	t0 := e.clock.Now()
	e.putIfAbsent("ns", "short", []byte("s"), t0.Add(time.Minute))
	e.putIfAbsent("ns", "long", []byte("l"), t0.Add(time.Hour))
	e.putIfAbsent("ns", "forever", []byte("f"), time.Time{})
	e.putIfAbsent("ns", "made-forever", []byte("m1"), t0.Add(time.Minute))
	noErr(t, x.PutRecord(ctx, "ns", "made-forever", []byte("m2"), time.Time{}))
	e.putIfAbsent("ns", "extended", []byte("e1"), t0.Add(time.Minute))
	noErr(t, x.PutRecord(ctx, "ns", "extended", []byte("e2"), t0.Add(2*time.Hour)))
	e.putIfAbsent("ns", "deleted", []byte("d"), t0.Add(time.Minute))
	noErr(t, x.DeleteRecord(ctx, "ns", "deleted"))

	// Just before the expiry the record lives; at it, it is gone.
	e.clock.Set(t0.Add(time.Minute - time.Nanosecond))
	e.wantRecord("ns", "short", []byte("s"))
	if stored, created := e.putIfAbsent("ns", "short", []byte("x"), time.Time{}); created || string(stored) != "s" {
		t.Fatalf("put over a live record: %q, created %v", stored, created)
	}
	e.clock.Set(t0.Add(time.Minute))
	e.wantNoRecord("ns", "short")
	e.wantRecord("ns", "long", []byte("l"))
	e.wantRecord("ns", "forever", []byte("f"))
	e.wantRecord("ns", "made-forever", []byte("m2"))
	e.wantRecord("ns", "extended", []byte("e2"))

	rs := e.sweeper()
	if n, err := rs.DeleteExpiredRecords(ctx, e.clock.Now(), 0); !storage.Is(err, storage.Invalid) {
		t.Fatalf("sweep with max 0: %d, %v", n, err)
	}
	if n := res(rs.DeleteExpiredRecords(ctx, e.clock.Now(), 10)).must(t); n != 1 {
		t.Fatalf("swept %d records at +1m, want 1 (short)", n)
	}
	if n := res(rs.DeleteExpiredRecords(ctx, e.clock.Now(), 10)).must(t); n != 0 {
		t.Fatalf("swept %d records again, want 0", n)
	}

	// An expired record that no sweep deleted counts as absent.
	e.putIfAbsent("ns", "lazy", []byte("old"), e.clock.Now().Add(time.Second))
	e.clock.Advance(time.Second)
	e.wantNoRecord("ns", "lazy")
	if stored, created := e.putIfAbsent("ns", "lazy", []byte("new"), e.clock.Now().Add(3*time.Hour)); !created || string(stored) != "new" {
		t.Fatalf("put over an expired record: %q, created %v", stored, created)
	}

	// At +2h: long and extended go, in batches of one.
	e.clock.Set(t0.Add(2 * time.Hour))
	if n := res(rs.DeleteExpiredRecords(ctx, e.clock.Now(), 1)).must(t); n != 1 {
		t.Fatalf("swept %d with max 1", n)
	}
	if n := res(rs.DeleteExpiredRecords(ctx, e.clock.Now(), 1)).must(t); n != 1 {
		t.Fatalf("swept %d with max 1, second batch", n)
	}
	if n := res(rs.DeleteExpiredRecords(ctx, e.clock.Now(), 1)).must(t); n != 0 {
		t.Fatalf("swept %d with max 1, third batch", n)
	}
	e.wantNoRecord("ns", "long")
	e.wantNoRecord("ns", "extended")
	e.wantRecord("ns", "forever", []byte("f"))
	e.wantRecord("ns", "made-forever", []byte("m2"))
	e.wantRecord("ns", "lazy", []byte("new"))

	// Far in the future only the records without expiry are left.
	e.clock.Set(t0.Add(1000 * time.Hour))
	if n := res(rs.DeleteExpiredRecords(ctx, e.clock.Now(), 100)).must(t); n != 1 {
		t.Fatalf("swept %d at +1000h, want 1 (lazy)", n)
	}
	e.wantRecord("ns", "forever", []byte("f"))
	e.wantRecord("ns", "made-forever", []byte("m2"))
}

// testRecordsConcurrent races 32 callers for one key: exactly one creates
// and all see its value; meanwhile other keys are written in parallel.
func testRecordsConcurrent(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	const n = 32
	type outcome struct {
		stored  []byte
		created bool
		err     error
	}
	for round := 0; round < 3; round++ {
		key := fmt.Sprintf("uuid-%d", round)
		out := make([]outcome, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				var o outcome
				o.stored, o.created, o.err = x.PutRecordIfAbsent(ctx, "race", key, []byte(fmt.Sprintf("v%d", i)), e.clock.Now().Add(time.Hour))
				out[i] = o
			}()
			go func() { // unrelated keys, replaced and deleted
				defer wg.Done()
				<-start
				k := fmt.Sprintf("other-%d-%d", round, i)
				if err := x.PutRecord(ctx, "race", k, []byte("a"), time.Time{}); err != nil {
					out[i].err = err
					return
				}
				if err := x.PutRecord(ctx, "race", k, []byte("b"), e.clock.Now().Add(time.Hour)); err != nil {
					out[i].err = err
					return
				}
				if i%2 == 0 {
					if err := x.DeleteRecord(ctx, "race", k); err != nil {
						out[i].err = err
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		var won []byte
		for i, o := range out {
			if o.err != nil {
				t.Fatalf("caller %d: %v", i, o.err)
			}
			if o.created {
				winners++
				won = o.stored
				if string(o.stored) != fmt.Sprintf("v%d", i) {
					t.Fatalf("the creator got %q back, want its own value", o.stored)
				}
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d callers created the record, want 1", round, winners)
		}
		for i, o := range out {
			if !bytes.Equal(o.stored, won) {
				t.Fatalf("caller %d saw %q, the winner stored %q", i, o.stored, won)
			}
		}
		e.wantRecord("race", key, won)
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("other-%d-%d", round, i)
			if i%2 == 0 {
				e.wantNoRecord("race", k)
			} else {
				e.wantRecord("race", k, []byte("b"))
			}
		}
	}
}

func testRecordsReopen(t *testing.T, e *xenv) {
	ctx := e.ctx
	t0 := e.clock.Now()
	e.putIfAbsent("ns", "forever", []byte("f"), time.Time{})
	e.putIfAbsent("ns", "hour", []byte("h"), t0.Add(time.Hour))
	e.putIfAbsent("ns", "minute", []byte("m"), t0.Add(time.Minute))
	noErr(t, e.x.PutRecord(ctx, "ns", "replaced", []byte("r1"), time.Time{}))
	noErr(t, e.x.PutRecord(ctx, "ns", "replaced", []byte("r2"), t0.Add(time.Hour)))
	e.putIfAbsent("ns", "deleted", []byte("d"), time.Time{})
	noErr(t, e.x.DeleteRecord(ctx, "ns", "deleted"))
	e.restart()
	e.wantRecord("ns", "forever", []byte("f"))
	e.wantRecord("ns", "hour", []byte("h"))
	e.wantRecord("ns", "minute", []byte("m"))
	e.wantRecord("ns", "replaced", []byte("r2"))
	e.wantNoRecord("ns", "deleted")
	if _, created := e.putIfAbsent("ns", "hour", []byte("x"), time.Time{}); created {
		t.Fatal("a record written before the restart counted as absent")
	}
	// The expiry index survived too.
	e.clock.Set(t0.Add(time.Hour))
	if n := res(e.sweeper().DeleteExpiredRecords(ctx, e.clock.Now(), 10)).must(t); n != 3 {
		t.Fatalf("swept %d after the restart, want 3 (hour, minute, replaced)", n)
	}
	e.restart()
	e.wantRecord("ns", "forever", []byte("f"))
	e.wantNoRecord("ns", "hour")
	e.wantNoRecord("ns", "replaced")
}

// lister returns the store's RecordLister, failing if it has none: the
// services find the sends a crash interrupted by listing a namespace.
func (e *xenv) lister() storage.RecordLister {
	e.t.Helper()
	rl, ok := e.x.(storage.RecordLister)
	if !ok {
		e.t.Fatal("the store does not implement storage.RecordLister")
	}
	return rl
}

func testRecordsList(t *testing.T, e *xenv) {
	ctx, x := e.ctx, e.x
	t0 := e.clock.Now()
	keys := func(rs []storage.Record) string {
		var ks []string
		for _, r := range rs {
			ks = append(ks, r.Key+"="+string(r.Value))
		}
		return strings.Join(ks, ",")
	}
	ls := e.lister()
	if rs, err := ls.ListRecords(ctx, "open", "", 10); err != nil || len(rs) != 0 {
		t.Fatalf("empty namespace: %v %v", rs, err)
	}
	for _, k := range []string{"b", "a", "c/1", "c", "d"} {
		noErr(t, x.PutRecord(ctx, "open", k, []byte("v"+k), time.Time{}))
	}
	noErr(t, x.PutRecord(ctx, "open", "e", []byte("short"), t0.Add(time.Minute)))
	noErr(t, x.PutRecord(ctx, "openx", "a", []byte("other namespace"), time.Time{}))
	noErr(t, x.PutRecord(ctx, "ope", "z", []byte("prefix namespace"), time.Time{}))
	noErr(t, x.PutRecord(ctx, "open", "d", []byte("replaced"), time.Time{}))
	noErr(t, x.DeleteRecord(ctx, "open", "b"))

	all := res(ls.ListRecords(ctx, "open", "", 100)).must(t)
	if got, want := keys(all), "a=va,c=vc,c/1=vc/1,d=replaced,e=short"; got != want {
		t.Fatalf("list: %s, want %s", got, want)
	}
	if !all[4].Expires.Equal(t0.Add(time.Minute)) || !all[0].Expires.IsZero() {
		t.Fatalf("expiries: %v, %v", all[4].Expires, all[0].Expires)
	}
	// Pages: after the last key of the previous page.
	p1 := res(ls.ListRecords(ctx, "open", "", 2)).must(t)
	p2 := res(ls.ListRecords(ctx, "open", p1[len(p1)-1].Key, 2)).must(t)
	p3 := res(ls.ListRecords(ctx, "open", p2[len(p2)-1].Key, 2)).must(t)
	if got := keys(p1) + "|" + keys(p2) + "|" + keys(p3); got != "a=va,c=vc|c/1=vc/1,d=replaced|e=short" {
		t.Fatalf("pages: %s", got)
	}
	// The values are the caller's.
	all[0].Value[0] = 'X'
	e.wantRecord("open", "a", []byte("va"))

	// An expired record is not listed.
	e.clock.Advance(time.Minute)
	if got := keys(res(ls.ListRecords(ctx, "open", "", 100)).must(t)); got != "a=va,c=vc,c/1=vc/1,d=replaced" {
		t.Fatalf("after expiry: %s", got)
	}
	_, err := ls.ListRecords(ctx, "open", "", 0)
	wantKind(t, err, storage.Invalid, "list with max 0")
	_, err = ls.ListRecords(ctx, "a b", "", 1)
	wantKind(t, err, storage.Invalid, "list a bad namespace")

	// Listed after a restart, as acknowledged.
	e.restart()
	ls = e.lister()
	if got := keys(res(ls.ListRecords(ctx, "open", "", 100)).must(t)); got != "a=va,c=vc,c/1=vc/1,d=replaced" {
		t.Fatalf("after restart: %s", got)
	}
}
