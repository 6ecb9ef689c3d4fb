package badger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// A backup file is one consistent snapshot of the whole database (every
// key, the format marker included, at its latest version: vouchers, queued
// alerts and bookkeeping records too), written by Backup while the ledger
// serves:
//
//	magic     8 bytes  "IAPDBKUP"
//	hlen      4 bytes  big-endian length of the header
//	header    hlen bytes of JSON: BackupInfo (file and ledger formats,
//	          iapd version, time, Badger read timestamp, counts)
//	records   'K' uvarint(len key) key uvarint(len value) value, in key order
//	end       'E' uvarint(number of records)
//	checksum  32 bytes: SHA-256 of every byte before it
//
// The records are the ledger's own keys and values (keys.go, codec.go,
// version.go), so a backup restores to exactly the data it was taken from;
// the ledger format in the header says which code can read them. The tag
// byte before each record leaves room for other kinds (deletions, for
// incremental backups).
//
// Why not Badger's DB.Backup: outside managed mode its Stream reads each key
// range in a txn of its own, at its own read timestamp (stream.go,
// produceKVs), so under concurrent writes an account and its entries could
// come from different moments; and it writes every version of every key.
// Backup reads everything in one read-only txn: one snapshot, where every
// ledger operation (one Badger txn) is wholly present or wholly absent.
const (
	backupMagic       = "IAPDBKUP"
	BackupFileFormat  = 1 // the layout above
	maxBackupHeader   = 1 << 20
	maxBackupKey      = 1 << 16
	maxBackupValue    = 1 << 20
	backupRecordTag   = 'K'
	backupEndTag      = 'E'
	backupChecksumLen = sha256.Size
)

// BackupCounts counts what a backup holds, by table.
type BackupCounts struct {
	Keys         int64 `json:"keys"` // every record
	Services     int64 `json:"services"`
	Accounts     int64 `json:"accounts"`
	Transactions int64 `json:"transactions"`
	Entries      int64 `json:"entries"`
	Vouchers     int64 `json:"vouchers,omitempty"`
	Alerts       int64 `json:"alerts,omitempty"`
	Records      int64 `json:"records,omitempty"` // bookkeeping records
}

// BackupInfo is the header of a backup file; SHA256 and Size are not in
// the header but learnt by reading (or writing) the whole file.
type BackupInfo struct {
	FileFormat   int          `json:"file_format"`
	LedgerFormat uint64       `json:"ledger_format"`
	IAPD         string       `json:"iapd"`
	CreatedAt    time.Time    `json:"created_at"`
	ReadTs       uint64       `json:"badger_read_ts"`
	Counts       BackupCounts `json:"counts"`

	SHA256 string `json:"-"` // hex
	Size   int64  `json:"-"` // bytes
}

func (c *BackupCounts) add(key []byte) {
	c.Keys++
	switch key[0] {
	case pService:
		c.Services++
	case pAccount:
		c.Accounts++
	case pTxn:
		c.Transactions++
	case pEntry:
		c.Entries++
	case pVoucher:
		c.Vouchers++
	case pAlert:
		c.Alerts++
	case pRecord:
		c.Records++
	}
}

// Backup writes a backup of the whole ledger to w (see the file format
// above) and returns its header. It runs while the ledger serves: the
// snapshot is taken when Backup starts, every operation acknowledged before
// then is in it, and it waits until what the snapshot holds is durable, so
// a backup never holds a change a crash could take back. ctx is checked
// between records; a write error or ctx ends the backup with an error (the
// file is then incomplete and fails its checksum). Unavailable when the
// ledger is closed.
func (l *Ledger) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	const op = "backup"
	if err := l.enter(op, ctx); err != nil {
		return BackupInfo{}, err
	}
	defer l.leave()
	if err := l.drain(); err != nil { // the journaled writes too (overlay.go)
		return BackupInfo{}, l.syncErr(op, err)
	}
	txn := l.readTxn()
	defer txn.Discard()
	if err := l.settle(op); err != nil {
		return BackupInfo{}, err
	}
	info := BackupInfo{FileFormat: BackupFileFormat, IAPD: BuildVersion(), CreatedAt: l.clock(), ReadTs: txn.ReadTs()}

	// First pass, keys only: the counts of the header, and the format.
	var m formatMarker
	if found, err := get(txn, metaKey(), func(b []byte) error { return decodeMarker(b, &m) }); err != nil {
		return info, l.wrap(op, err)
	} else if !found {
		return info, storage.E(op, storage.Internal, "no format marker")
	}
	info.LedgerFormat = m.Format
	if err := eachKey(ctx, txn, false, func(k, _ []byte) error { info.Counts.add(k); return nil }); err != nil {
		return info, l.wrap(op, err)
	}

	// Second pass, in the same snapshot: the records.
	h := sha256.New()
	bw := bufio.NewWriterSize(w, 256<<10)
	cw := &countWriter{w: io.MultiWriter(bw, h)}
	hdr, err := json.Marshal(info)
	if err != nil {
		return info, storage.Wrap(op, storage.Internal, err)
	}
	var buf []byte
	buf = append(buf, backupMagic...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(hdr)))
	buf = append(buf, hdr...)
	if _, err := cw.Write(buf); err != nil {
		return info, storage.Wrap(op, storage.Unavailable, err)
	}
	var n int64
	werr := error(nil)
	err = eachKey(ctx, txn, true, func(k, v []byte) error {
		n++
		buf = append(buf[:0], backupRecordTag)
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
		if _, err := cw.Write(buf); err != nil {
			werr = err
			return err
		}
		return nil
	})
	switch {
	case werr != nil:
		return info, storage.Wrap(op, storage.Unavailable, fmt.Errorf("writing the backup: %w", werr))
	case err != nil:
		return info, l.wrap(op, err)
	case n != info.Counts.Keys:
		return info, storage.Wrap(op, storage.Internal, fmt.Errorf("snapshot changed: %d keys, then %d", info.Counts.Keys, n))
	}
	buf = append(buf[:0], backupEndTag)
	buf = binary.AppendUvarint(buf, uint64(n))
	if _, err := cw.Write(buf); err != nil {
		return info, storage.Wrap(op, storage.Unavailable, err)
	}
	sum := h.Sum(nil)
	if _, err := bw.Write(sum); err != nil {
		return info, storage.Wrap(op, storage.Unavailable, err)
	}
	if err := bw.Flush(); err != nil {
		return info, storage.Wrap(op, storage.Unavailable, err)
	}
	info.SHA256 = hex.EncodeToString(sum)
	info.Size = cw.n + int64(len(sum))
	l.log.Info("backup written", "keys", n, "bytes", info.Size, "read_ts", info.ReadTs)
	return info, nil
}

// eachKey walks every key of txn in order (values too when values).
func eachKey(ctx context.Context, txn *badger.Txn, values bool, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: values, PrefetchSize: 100})
	defer it.Close()
	i := 0
	for it.Rewind(); it.Valid(); it.Next() {
		if i++; i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item := it.Item()
		if !values {
			if err := fn(item.Key(), nil); err != nil {
				return err
			}
			continue
		}
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrBadBackup is the cause (errors.Is) of every refusal of a backup file
// that is not one, is damaged or truncated.
var ErrBadBackup = errors.New("not a valid iapd backup")

func badBackup(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadBackup, fmt.Sprintf(format, args...))
}

// backupReader reads a backup file, hashing what it reads.
type backupReader struct {
	br   *bufio.Reader
	h    hash.Hash
	n    int64 // bytes read
	info BackupInfo
	seen BackupCounts
	last []byte // the previous key, for the order check
}

func (r *backupReader) Read(p []byte) (int, error) {
	n, err := r.br.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	return n, err
}

func (r *backupReader) ReadByte() (byte, error) {
	c, err := r.br.ReadByte()
	if err == nil {
		r.h.Write([]byte{c})
		r.n++
	}
	return c, err
}

func (r *backupReader) full(p []byte) error {
	if _, err := io.ReadFull(r, p); err != nil {
		return truncated(err)
	}
	return nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return badBackup("truncated")
	}
	return err
}

// openBackup reads and checks the header.
func openBackup(rd io.Reader) (*backupReader, error) {
	r := &backupReader{br: bufio.NewReaderSize(rd, 256<<10), h: sha256.New()}
	var head [len(backupMagic) + 4]byte
	if err := r.full(head[:]); err != nil {
		return nil, err
	}
	if string(head[:len(backupMagic)]) != backupMagic {
		return nil, badBackup("no backup header (magic %q)", head[:len(backupMagic)])
	}
	hl := binary.BigEndian.Uint32(head[len(backupMagic):])
	if hl > maxBackupHeader {
		return nil, badBackup("header of %d bytes", hl)
	}
	hdr := make([]byte, hl)
	if err := r.full(hdr); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(hdr, &r.info); err != nil {
		return nil, badBackup("header: %v", err)
	}
	if r.info.FileFormat < 1 {
		return nil, badBackup("file format %d", r.info.FileFormat)
	}
	if r.info.FileFormat > BackupFileFormat {
		return nil, fmt.Errorf("backup file format %d (written by %s): this iapd (%s) reads format %d",
			r.info.FileFormat, r.info.IAPD, BuildVersion(), BackupFileFormat)
	}
	return r, nil
}

// next returns the next record, or done at the end record (whose count it
// checks). k and v are fresh slices.
func (r *backupReader) next() (k, v []byte, done bool, err error) {
	tag, err := r.ReadByte()
	if err != nil {
		return nil, nil, false, truncated(err)
	}
	switch tag {
	case backupEndTag:
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, nil, false, truncated(err)
		}
		if int64(n) != r.seen.Keys {
			return nil, nil, false, badBackup("the end record counts %d records, the file holds %d", n, r.seen.Keys)
		}
		return nil, nil, true, nil
	case backupRecordTag:
	default:
		return nil, nil, false, badBackup("unknown record tag 0x%02x at byte %d", tag, r.n-1)
	}
	kl, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, nil, false, truncated(err)
	}
	if kl == 0 || kl > maxBackupKey {
		return nil, nil, false, badBackup("key of %d bytes at byte %d", kl, r.n)
	}
	k = make([]byte, kl)
	if err := r.full(k); err != nil {
		return nil, nil, false, err
	}
	vl, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, nil, false, truncated(err)
	}
	if vl > maxBackupValue {
		return nil, nil, false, badBackup("value of %d bytes at byte %d", vl, r.n)
	}
	v = make([]byte, vl)
	if err := r.full(v); err != nil {
		return nil, nil, false, err
	}
	if r.last != nil && bytes.Compare(k, r.last) <= 0 {
		return nil, nil, false, badBackup("records out of order at byte %d", r.n)
	}
	r.last = k
	r.seen.add(k)
	return k, v, false, nil
}

// finish checks the checksum, the end of the file and the counts of the
// header; it fills info.SHA256 and info.Size.
func (r *backupReader) finish() (BackupInfo, error) {
	want := r.h.Sum(nil)
	var got [backupChecksumLen]byte
	if _, err := io.ReadFull(r.br, got[:]); err != nil {
		return r.info, truncated(err)
	}
	if !bytes.Equal(got[:], want) {
		return r.info, badBackup("checksum mismatch: the file is damaged")
	}
	if _, err := r.br.ReadByte(); err != io.EOF {
		return r.info, badBackup("data after the checksum")
	}
	if r.seen != r.info.Counts {
		return r.info, badBackup("the header counts %+v, the file holds %+v", r.info.Counts, r.seen)
	}
	r.info.SHA256 = hex.EncodeToString(want)
	r.info.Size = r.n + backupChecksumLen
	return r.info, nil
}

// ReadBackupHeader reads the header of a backup file, checking nothing
// else.
func ReadBackupHeader(rd io.Reader) (BackupInfo, error) {
	r, err := openBackup(rd)
	if err != nil {
		return BackupInfo{}, err
	}
	return r.info, nil
}

// CheckBackup reads a whole backup file and checks it: header, record
// framing and order, counts, and the checksum. Errors wrap ErrBadBackup
// for a damaged file; others are I/O errors.
func CheckBackup(rd io.Reader) (BackupInfo, error) {
	r, err := openBackup(rd)
	if err != nil {
		return BackupInfo{}, err
	}
	for {
		_, _, done, err := r.next()
		if err != nil {
			return r.info, err
		}
		if done {
			return r.finish()
		}
	}
}

// Restore loads a backup into opts.Dir, which must be absent or hold no
// file (Exists otherwise; sub-directories, which are not the ledger's, are
// left as they are), and returns the backup's header. It refuses a backup
// of a newer ledger format than this code opens (ErrFutureFormat) before
// writing anything. While it loads, a file RESTORE-IN-PROGRESS in the
// directory makes Open refuse it; on any error the directory is left with
// that file in it (the caller removes the directory's contents). On
// success the ledger is closed: open it with Open, which migrates an older
// format, and Verify it. The checksum is checked at the end of the load;
// check the file with CheckBackup first to write nothing for a damaged one.
func Restore(ctx context.Context, opts Options, rd io.Reader) (BackupInfo, error) {
	const op = "restore"
	if opts.InMemory || opts.Dir == "" {
		return BackupInfo{}, storage.E(op, storage.Invalid, "restore needs a data directory")
	}
	if name, err := firstFile(opts.Dir); err != nil {
		return BackupInfo{}, storage.Wrap(op, storage.Unavailable, err)
	} else if name != "" {
		return BackupInfo{}, storage.Ef(op, storage.Exists, "%s is not empty (it holds %s)", opts.Dir, name)
	}
	r, err := openBackup(rd)
	if err != nil {
		return BackupInfo{}, storage.Wrap(op, storage.Invalid, err)
	}
	if r.info.LedgerFormat > FormatVersion {
		return r.info, &storage.Error{Op: op, Kind: storage.Invalid, Err: ErrFutureFormat, Msg: fmt.Sprintf(
			"the backup holds ledger format %d, written by %s; this iapd (%s) opens formats up to %d: restore it with %s or a later release",
			r.info.LedgerFormat, r.info.IAPD, BuildVersion(), FormatVersion, r.info.IAPD)}
	}
	l, err := Open(opts)
	if err != nil {
		return r.info, err
	}
	defer func() {
		if l != nil {
			_ = l.Close()
		}
	}()
	marker := filepath.Join(opts.Dir, restoringFile)
	if err := os.WriteFile(marker, []byte("iapd restore in progress\n"), 0o600); err != nil {
		return r.info, storage.Wrap(op, storage.Unavailable, err)
	}
	if err := syncDir(opts.Dir); err != nil {
		return r.info, storage.Wrap(op, storage.Unavailable, err)
	}

	wb := l.db.NewWriteBatch()
	defer wb.Cancel()
	var format *formatMarker
	for i := 0; ; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return r.info, storage.Wrap(op, storage.Unavailable, err)
			}
			if err := l.space.admit(op); err != nil { // space.go: stop before Badger runs out
				return r.info, err
			}
		}
		k, v, done, err := r.next()
		if err != nil {
			return r.info, storage.Wrap(op, storage.Invalid, err)
		}
		if done {
			break
		}
		if len(v) > l.maxValue {
			return r.info, storage.Wrap(op, storage.Invalid, badBackup("a value of %d bytes, above %d", len(v), l.maxValue))
		}
		if bytes.Equal(k, metaKey()) {
			format = new(formatMarker)
			if err := decodeMarker(v, format); err != nil {
				return r.info, storage.Wrap(op, storage.Invalid, badBackup("format marker: %v", err))
			}
		}
		if err := wb.Set(k, v); err != nil {
			return r.info, storage.Wrap(op, storage.Internal, err)
		}
	}
	if _, err := r.finish(); err != nil {
		return r.info, storage.Wrap(op, storage.Invalid, err)
	}
	if format == nil || format.Format != r.info.LedgerFormat {
		return r.info, storage.Wrap(op, storage.Invalid, badBackup("the format marker does not match the header's ledger format %d", r.info.LedgerFormat))
	}
	if err := wb.Flush(); err != nil {
		return r.info, storage.Wrap(op, storage.Internal, err)
	}
	// Close flushes the memtables into synced tables and a synced
	// manifest; then the directory is synced before the marker file goes.
	err = l.Close()
	l = nil
	if err != nil {
		return r.info, err
	}
	if err := syncDir(opts.Dir); err != nil {
		return r.info, storage.Wrap(op, storage.Unavailable, err)
	}
	if err := os.Remove(marker); err != nil {
		return r.info, storage.Wrap(op, storage.Unavailable, err)
	}
	if err := syncDir(opts.Dir); err != nil {
		return r.info, storage.Wrap(op, storage.Unavailable, err)
	}
	return r.info, nil
}

// firstFile returns the name of a file (anything but a directory) in dir,
// "" when dir is absent or holds none.
func firstFile(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if !e.IsDir() {
			return e.Name(), nil
		}
	}
	return "", nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
