package registers

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/providers/directory"
)

// ImportStats count what one import did to its source's companies.
type ImportStats struct {
	New       int64 // records the index did not have
	Changed   int64 // records whose content changed (a struck-off company that came back included)
	Unchanged int64
	StruckOff int64 // active records of the source this import did not put: now inactive
}

// Import is one import session of a source: a registers.Sink whose
// records are written in batches as they come, each record complete (its
// index keys with it). Commit then strikes off what the import did not
// put. Not safe for concurrent use.
type Import struct {
	x      *Index
	source string
	txn    *badger.Txn
	n      int      // records in txn
	seen   []uint64 // bitmap of the ids put
	stats  ImportStats
	done   bool
}

// BeginImport starts importing source ("gleif", "sirene", …). One import
// at a time: a second one is an error, as is a read-only index.
func (x *Index) BeginImport(source string) (*Import, error) {
	if x.readOnly {
		return nil, errors.New("registers: the index is open read-only")
	}
	if source == "" || strings.ContainsRune(source, 0) || strings.ContainsRune(source, ':') {
		return nil, fmt.Errorf("registers: bad source name %q", source)
	}
	if !x.importing.CompareAndSwap(false, true) {
		return nil, errors.New("registers: an import is already in progress")
	}
	return &Import{x: x, source: source, txn: x.db.NewTransaction(true)}, nil
}

// Put adds or updates one record of the session's source (rec.Source
// empty or the same). Its key must be set; VAT, domain and country are
// normalised, a domain that is not one dropped. Records already in the
// index are compared by content: unchanged ones are not written again.
func (im *Import) Put(rec Record) error {
	if im.done {
		return errors.New("registers: import already finished")
	}
	if rec.Source == "" {
		rec.Source = im.source
	}
	switch {
	case rec.Source != im.source:
		return fmt.Errorf("registers: record of source %q in an import of %q", rec.Source, im.source)
	case rec.Key == "" || strings.ContainsRune(rec.Key, 0):
		return fmt.Errorf("registers: %s record without a usable key", im.source)
	}
	normalize(&rec)
	enc := encodeRecord(&rec)
	if len(enc) > maxRecordBytes {
		return fmt.Errorf("registers: %s record %s: %d bytes, more than %d", im.source, rec.Key, len(enc), maxRecordBytes)
	}
	if im.n >= batchRecords {
		if err := im.flush(); err != nil {
			return err
		}
	}
	im.n++
	kk := cat([]byte{pKey}, []byte(im.source), []byte{0}, []byte(rec.Key))
	item, err := im.txn.Get(kk)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		id := im.x.nextID()
		im.mark(id)
		im.stats.New++
		return im.write(nil, &rec, enc, id, kk)
	case err != nil:
		return err
	}
	idb, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	if len(idb) != 8 {
		return errCorrupt
	}
	id := binary.BigEndian.Uint64(idb)
	dup := im.isSeen(id) // the same key twice in one file: the later record wins, counted once
	im.mark(id)
	oldItem, err := im.txn.Get(cat([]byte{pRecord}, idb))
	if err != nil {
		return err
	}
	old, err := oldItem.ValueCopy(nil)
	if err != nil {
		return err
	}
	if bytes.Equal(old, enc) {
		if !dup {
			im.stats.Unchanged++
		}
		return nil
	}
	oldRec, err := decodeRecord(old)
	if err != nil {
		return err
	}
	if !dup {
		im.stats.Changed++
	}
	return im.write(&oldRec, &rec, enc, id, nil)
}

// normalize puts rec's fields in the form the index keys use.
func normalize(rec *Record) {
	rec.ID = ""
	rec.Valid = nil
	rec.Country = strings.ToUpper(strings.TrimSpace(rec.Country))
	rec.VAT = directory.NormalizeVAT(rec.VAT)
	if rec.Domain != "" {
		d, err := directory.NormalizeDomain(rec.Domain)
		if err != nil {
			d = ""
		}
		rec.Domain = d
	}
	rec.LEI = strings.ToUpper(strings.TrimSpace(rec.LEI))
}

// write replaces old's index entries (nil: a new record) by rec's; kk,
// for a new record, is its key entry.
func (im *Import) write(old, rec *Record, enc []byte, id uint64, kk []byte) error {
	idb := idBytes(id)
	newEntries := entries(rec, id)
	if old != nil {
		keep := map[string]bool{}
		for _, e := range newEntries {
			keep[string(e.key)] = true
		}
		for _, e := range entries(old, id) {
			if !keep[string(e.key)] {
				if err := im.txn.Delete(e.key); err != nil {
					return err
				}
			}
		}
	}
	if kk != nil {
		if err := im.txn.Set(kk, idb); err != nil {
			return err
		}
	}
	if err := im.txn.Set(cat([]byte{pRecord}, idb), enc); err != nil {
		return err
	}
	for _, e := range newEntries {
		if err := im.txn.Set(e.key, e.val); err != nil {
			return err
		}
	}
	return nil
}

func (x *Index) nextID() uint64 {
	x.seqMu.Lock()
	defer x.seqMu.Unlock()
	id := x.seq
	x.seq++
	return id
}

func (im *Import) mark(id uint64) {
	w := int(id / 64)
	if w >= len(im.seen) {
		im.seen = append(im.seen, make([]uint64, w+1-len(im.seen)+len(im.seen)/4)...)
	}
	im.seen[w] |= 1 << (id % 64)
}

func (im *Import) isSeen(id uint64) bool {
	w := int(id / 64)
	return w < len(im.seen) && im.seen[w]&(1<<(id%64)) != 0
}

// flush commits the records put so far and starts a new transaction.
func (im *Import) flush() error {
	im.x.seqMu.Lock()
	seq := im.x.seq
	im.x.seqMu.Unlock()
	if err := im.txn.Set(seqKey, idBytes(seq)); err != nil {
		return err
	}
	if err := im.txn.Commit(); err != nil {
		return err
	}
	im.txn = im.x.db.NewTransaction(true)
	im.n = 0
	return nil
}

// Commit writes the records put, then marks inactive (struck off) every
// active record of the source that this import did not put, and makes it
// all durable before it returns.
func (im *Import) Commit() (ImportStats, error) {
	if im.done {
		return im.stats, errors.New("registers: import already finished")
	}
	im.done = true
	defer im.x.importing.Store(false)
	if err := im.flush(); err != nil {
		im.txn.Discard()
		return im.stats, err
	}
	defer func() { im.txn.Discard() }()
	// The source's ids not put, found in pages of key entries; each page
	// is read in its own read transaction, then struck off in im.txn.
	prefix := cat([]byte{pKey}, []byte(im.source), []byte{0})
	from := prefix
	for {
		var stale [][]byte
		var next []byte
		err := im.x.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
			defer it.Close()
			for it.Seek(from); it.ValidForPrefix(prefix); it.Next() {
				if len(stale) == batchRecords {
					next = it.Item().KeyCopy(nil)
					return nil
				}
				idb, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				if len(idb) == 8 && !im.isSeen(binary.BigEndian.Uint64(idb)) {
					stale = append(stale, idb)
				}
			}
			return nil
		})
		if err != nil {
			return im.stats, err
		}
		for _, idb := range stale {
			r, err := get(im.txn, idb)
			if err != nil {
				return im.stats, err
			}
			if !r.Active {
				continue
			}
			old := r
			r.Active = false
			if err := im.write(&old, &r, encodeRecord(&r), binary.BigEndian.Uint64(idb), nil); err != nil {
				return im.stats, err
			}
			im.stats.StruckOff++
		}
		if err := im.flush(); err != nil {
			return im.stats, err
		}
		if next == nil {
			break
		}
		from = next
	}
	if err := im.x.db.Sync(); err != nil {
		return im.stats, err
	}
	if err := im.x.logImport(im.source, im.stats); err != nil {
		return im.stats, err
	}
	return im.stats, im.x.refreshCountries()
}

// logImport appends a committed import to the directory's ImportsFile,
// durably.
func (x *Index) logImport(source string, st ImportStats) error {
	f, err := os.OpenFile(filepath.Join(x.dir, ImportsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s %s %d %d %d %d\n", time.Now().UTC().Format(time.RFC3339), source, st.New, st.Changed, st.Unchanged, st.StruckOff)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort ends the session without striking anything off. The records of
// the last, unfinished batch are dropped; those of earlier batches stay
// (each a complete record of the newer file), so an aborted import never
// removes a company, and the next complete one sets everything right.
func (im *Import) Abort() {
	if im.done {
		return
	}
	im.done = true
	im.txn.Discard()
	im.x.importing.Store(false)
}

// Stats returns the counts so far.
func (im *Import) Stats() ImportStats { return im.stats }

var _ Sink = (*Import)(nil)
