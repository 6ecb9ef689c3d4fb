package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Verdict sorts the damage of a Scan (Classify).
type Verdict struct {
	// Torn are the torn tails: damage with no valid record after it, in
	// the newest file. A crash during a write leaves them (records are
	// appended in order by one goroutine, a round is synced before any of
	// its records is acknowledged, and a file is closed only after its
	// last round is synced); nothing in them was acknowledged.
	Torn []Damage
	// Covered is the damage whose unreadable records are all at or below
	// the caller's marker (the records it holds elsewhere): nothing is
	// lost, but the disk may be failing.
	Covered []Damage
	// Corrupt is the first damage that loses records above the marker
	// (acknowledged records unreadable), or the first whose extent is
	// unknown; nil if none. Classify stops there.
	Corrupt *Damage
}

// Classify sorts s's damage given mark, the seq up to which the caller
// holds every record elsewhere (0: none).
func (s Scan) Classify(mark uint64) Verdict {
	var v Verdict
	for i := range s.Damages {
		d := s.Damages[i]
		switch {
		case d.Unscanned:
		case d.Next == 0 && d.Newest:
			v.Torn = append(v.Torn, d)
			continue
		case d.Next != 0 && d.Next-1 <= mark:
			v.Covered = append(v.Covered, d)
			continue
		}
		v.Corrupt = &d
		break
	}
	return v
}

// AsideDir is the prefix of the folders, in the journal's directory, that
// MoveAside creates; DamageFile is the description it writes in each.
const (
	AsideDir   = "journal-corrupt-"
	DamageFile = "damage.json"
)

// MoveAside moves files (journal files of dir) into a new folder of dir
// named AsideDir and the time (now, UTC), with DamageFile holding
// description, all durable before it returns the folder's path. Files are
// moved newest first: if a crash stops it half way, the files left are
// the oldest ones, never the records after a damage without it.
func MoveAside(dir string, files []string, description []byte, now time.Time) (string, error) {
	var aside string
	for i := 0; ; i++ {
		aside = filepath.Join(dir, AsideDir+now.UTC().Format("20060102T150405Z"))
		if i > 0 {
			aside += fmt.Sprintf("-%d", i)
		}
		err := os.Mkdir(aside, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i > 100 {
			return "", err
		}
	}
	if err := writeFileSync(filepath.Join(aside, DamageFile), description); err != nil {
		return "", err
	}
	for i := len(files) - 1; i >= 0; i-- {
		if err := os.Rename(files[i], filepath.Join(aside, filepath.Base(files[i]))); err != nil {
			return "", err
		}
	}
	if err := syncDir(aside); err != nil {
		return "", err
	}
	return aside, syncDir(dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
