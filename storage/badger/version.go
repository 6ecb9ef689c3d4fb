package badger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// The data directory carries a format version: the value of the meta key
// 'v' (the one key of its table, outside the layout of keys.go):
//
//	'v' → {"format": 1, "written_by": "iapd v0.3.0 1a2b3c4d5e6f", "written_at": "…"}
//
// JSON, so that any iapd, older or newer, can read it whatever the record
// codec becomes. written_by names the iapd that wrote the marker (created
// the directory or migrated it last): an older iapd that finds a newer
// format names it as the one the directory needs.
//
// Open checks it after Badger is open (upgrade):
//
//   - no marker, no key at all: a new directory; the marker of
//     FormatVersion is written;
//   - no marker but data: format 0, a directory written before the marker
//     existed; migrated;
//   - an older format: migrated, one step at a time (migrations);
//   - FormatVersion: nothing to do;
//   - a newer format: refused (ErrFutureFormat), nothing is written.
//
// A migration step must be idempotent: it runs, then the marker of the next
// format is written in a txn of its own; a crash between the two runs the
// step again at the next Open. Record-level changes may also stay lazy (the
// leading format byte of every value, codec.go) and need no step.
const pMeta = 'v'

// FormatVersion is the format of the data directory this code writes, and
// the newest it opens.
//
//   - 1: the tables of keys.go up to 'r'.
//   - 2: account records in record format 2 (alert state, codec.go), and
//     the tables of vouchers ('c'), queued alerts ('n') and bookkeeping
//     records ('d', 'y'). Format 1 records are read as they are; an older
//     iapd would misread neither, it refuses the directory.
//   - 3: the hold operations are journaled (journal.go): between
//     checkpoints their writes are in journal-*.log files of the data
//     directory, replayed at Open, and the checkpoint marker ('j') says
//     how far Badger has them. An iapd of format 2 would ignore the
//     journal: it must refuse the directory.
//   - 4: the hashed-token index ('h') and the aggregate figures ('g') of
//     flat.go, written with every change; an iapd of format 3 would let
//     them drift: it must refuse the directory.
const FormatVersion = 4

// ErrFutureFormat is the cause (errors.Is) of Open's refusal of a data
// directory written in a format newer than FormatVersion.
var ErrFutureFormat = errors.New("data directory written by a newer iapd")

// restoringFile exists in a data directory while Restore loads it: Open
// refuses such a directory, half restored.
const restoringFile = "RESTORE-IN-PROGRESS"

func metaKey() []byte { return []byte{pMeta} }

// formatMarker is the value of the meta key.
type formatMarker struct {
	Format    uint64    `json:"format"`
	WrittenBy string    `json:"written_by,omitempty"`
	WrittenAt time.Time `json:"written_at,omitzero"`
}

// migration turns a directory of format from into format from+1.
type migration struct {
	from uint64
	what string
	// apply changes the data; it must be idempotent. nil for a step that
	// only records the new format.
	apply func(l *Ledger) error
	// afterReplay: the step needs the journal replayed first; Open runs
	// it (and those after it) in finishUpgrade, after the replay.
	afterReplay bool
}

// migrations, by from. Format 0 is a directory written before the marker
// existed, whose records are already those of format 1: the step only
// writes the marker.
var migrations = []migration{
	{from: 0, what: "record the format version of the data directory"},
	{from: 1, what: "allow account records with alert state, vouchers, alerts and records (format 1 records stay readable)"},
	{from: 2, what: "journal the hold operations (journal files beside Badger's, replayed at open)"},
	{from: 3, what: "index hashed tokens and keep aggregate figures (one walk of every account, hold and entry)",
		apply: (*Ledger).migrateFlat, afterReplay: true},
}

// upgrade brings the data directory to FormatVersion, or refuses it. On
// failure it closes l. dir is "" in memory.
func (l *Ledger) upgrade(dir string) error {
	if err := l.checkFormat(dir); err != nil {
		_ = l.Close()
		return err
	}
	return nil
}

func (l *Ledger) checkFormat(dir string) error {
	const op = "open"
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, restoringFile)); err == nil {
			return storage.Ef(op, storage.Unavailable,
				"%s holds an interrupted restore (%s exists): restore again with iapd restore -force", dir, restoringFile)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return storage.Wrap(op, storage.Unavailable, err)
		}
	}
	m, found, empty, err := l.readFormat()
	if err != nil {
		return storage.Wrap(op, storage.Internal, fmt.Errorf("reading the format version: %w", err))
	}
	switch {
	case !found && empty:
		if err := l.writeFormat(FormatVersion); err != nil {
			return err
		}
		l.log.Info("new data directory", "format", FormatVersion)
		return nil
	case !found:
		m.Format = 0
	case m.Format == FormatVersion:
		return nil
	case m.Format > FormatVersion:
		by := m.WrittenBy
		if by == "" {
			by = "an unknown iapd"
		}
		return &storage.Error{Op: op, Kind: storage.Unavailable, Err: ErrFutureFormat, Msg: fmt.Sprintf(
			"the data directory has ledger format %d, written by %s; this iapd (%s) opens formats up to %d: run %s or a later release (README: Upgrade iapd)",
			m.Format, by, BuildVersion(), FormatVersion, by)}
	}
	for cur := m.Format; cur < FormatVersion; cur++ {
		step := migrations[cur]
		if step.from != cur {
			return storage.Wrap(op, storage.Internal, fmt.Errorf("no migration from format %d", cur))
		}
		if step.afterReplay {
			l.pendingFormat = cur // finishUpgrade
			return nil
		}
		if err := l.migrate(op, cur); err != nil {
			return err
		}
	}
	return nil
}

// readFormat reads the marker; empty reports a database without any key.
func (l *Ledger) readFormat() (m formatMarker, found, empty bool, err error) {
	err = l.db.View(func(txn *badger.Txn) error {
		found, err = get(txn, metaKey(), func(b []byte) error { return decodeMarker(b, &m) })
		if err != nil || found {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	return m, found, empty, err
}

func decodeMarker(b []byte, m *formatMarker) error {
	if err := json.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: format marker: %v", errCorrupt, err)
	}
	return nil
}

func encodeMarker(format uint64, at time.Time) []byte {
	b, _ := json.Marshal(formatMarker{Format: format, WrittenBy: BuildVersion(), WrittenAt: at})
	return b
}

// writeFormat records format in the marker, durably.
func (l *Ledger) writeFormat(format uint64) error {
	return l.write("open", nil, func(tx *wtxn, now time.Time) (error, error) {
		return nil, tx.set(metaKey(), encodeMarker(format, now))
	})
}

// Build reads this build of iapd from the binary's build information:
// the module version ("(devel)" when unknown), the VCS revision (empty
// when unknown) and whether the tree it was built from was modified.
// cmd/iapd reports it too (--version, iap_build_info).
func Build() (version, revision string, modified bool) {
	version = "(devel)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, "", false
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return version, revision, modified
}

// BuildVersion names this build of iapd as the format marker and backups
// record it: "iapd <module version> <vcs revision[:12]>[+dirty]", the
// revision left out when unknown.
func BuildVersion() string {
	v, rev, modified := Build()
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev
		if modified {
			v += "+dirty"
		}
	}
	return "iapd " + v
}

// migrate runs the migration step from format cur, writes the marker of
// cur+1 and logs the step's cost.
func (l *Ledger) migrate(op string, cur uint64) error {
	step := migrations[cur]
	start := time.Now()
	if step.apply != nil {
		if err := step.apply(l); err != nil {
			return storage.Wrap(op, storage.Internal, fmt.Errorf("migrating from format %d (%s): %w", cur, step.what, err))
		}
	}
	if err := l.writeFormat(cur + 1); err != nil {
		return err
	}
	l.log.Warn("data directory migrated", "from", cur, "to", cur+1, "step", step.what,
		"duration", time.Since(start).Round(time.Millisecond))
	return nil
}
