package badger

import (
	"os"
	"strings"

	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// DiskUse is the bytes the ledger's files take in its data directory, by
// part. Sizes are the files' lengths: Badger preallocates its memtable
// files and the value log, so a new ledger already takes some MiB.
type DiskUse struct {
	Tables    int64 // Badger's LSM tables (*.sst): the keys and small values
	ValueLog  int64 // Badger's value log (*.vlog): the values too large for a table
	Memtables int64 // Badger's memtable write-ahead files (*.mem)
	Journal   int64 // the journal every change goes through (journal-*.log)
	Other     int64 // the rest: MANIFEST, KEYREGISTRY, DISCARD, the format marker
}

// Total is the sum of the parts.
func (d DiskUse) Total() int64 { return d.Tables + d.ValueLog + d.Memtables + d.Journal + d.Other }

// DiskUse lists the data directory's regular files (one directory read and
// a stat per file, a few dozen: no key is read, cheap enough for every
// scrape). The subdirectories (portal/, providers/, a journal moved aside)
// are not the ledger and are not counted. The zero DiskUse in memory.
func (l *Ledger) DiskUse() (DiskUse, error) {
	var d DiskUse
	if l.dir == "" {
		return d, nil
	}
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return d, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile (a compaction, a journal rotation)
		}
		n := fi.Size()
		switch name := e.Name(); {
		case strings.HasSuffix(name, ".sst"):
			d.Tables += n
		case strings.HasSuffix(name, ".vlog"):
			d.ValueLog += n
		case strings.HasSuffix(name, ".mem"):
			d.Memtables += n
		case journal.IsFile(name):
			d.Journal += n
		default:
			d.Other += n
		}
	}
	return d, nil
}
