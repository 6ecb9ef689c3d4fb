package badger

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// removeEmptyWALs deletes the zero-length memtable files (*.mem) in dir
// before Badger opens it.
//
// Badger creates a memtable's file with O_CREATE and then sizes it; a
// process killed between the two leaves an empty file, and Badger v4.9
// refuses to open a directory holding one ("while opening memtables err:
// while opening fid: N err: Create a new file"; the crash drill in
// cmd/iapd hit it once; TestReopenAfterKillAtWALCreate reproduces it).
// An empty file holds nothing: removing it is exact. It must happen
// before Open: a failed Open has already sized the file. This is a
// start-up repair, not a durability path — nothing iapd acknowledges
// rests on Badger's files until a checkpoint has synced them (overlay.go).
func removeEmptyWALs(dir string, log *slog.Logger) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // a new ledger: Badger creates the directory
		}
		return err
	}
	removed := false
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.Remove(path); err != nil {
			return err
		}
		removed = true
		log.Warn("removed an empty memtable WAL left by a crash", "file", e.Name())
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}
