package badger

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger/internal/journal"
)

// JournalCorruptAction says what Open does with a corrupt journal (see
// JournalCorruptError).
type JournalCorruptAction int

const (
	// JournalRefuse (the default): Open fails with a *JournalCorruptError
	// and changes nothing; the journal files stay where they are.
	JournalRefuse JournalCorruptAction = iota
	// JournalMoveAside: Open replays the records before the damage (the
	// ledger as it was then, consistent), moves every journal file into a
	// new folder journal-corrupt-<time> of the data directory with a
	// damage.json describing it, and opens. The acknowledged records after
	// the damage are not replayed: they stay in that folder. Verify reports
	// the folder as an error until the operator removes it.
	JournalMoveAside
)

// JournalCorruptError is Open's refusal of a journal damaged before its
// end: acknowledged records cannot be read, and so neither those after
// them replayed. It is also the content of a moved-aside folder's
// damage.json.
type JournalCorruptError struct {
	File   string `json:"file"`   // the damaged journal file
	Offset int64  `json:"offset"` // the byte offset in File where the damage starts
	Reason string `json:"reason"` // what is found there
	// LastGood is the seq of the last record read before the damage (0:
	// none).
	LastGood uint64 `json:"last_good"`
	// After counts the valid records found after the damage, in File and
	// the later files; AfterFirst and AfterLast are their seqs.
	After      int    `json:"records_after"`
	AfterFirst uint64 `json:"after_first,omitempty"`
	AfterLast  uint64 `json:"after_last,omitempty"`
	// Unreplayed counts the records of After above the checkpoint marker:
	// in no other place (each was synced, and most acknowledged).
	// Unreadable counts the records lost in the damage itself above the
	// marker (when a record after it says how many).
	Unreplayed int    `json:"unreplayed"`
	Unreadable uint64 `json:"unreadable"`
	// Unscanned: the search for records after the damage gave up; After
	// is a lower bound.
	Unscanned bool `json:"unscanned,omitempty"`
	// Transactions are the holds written by the records above the
	// checkpoint marker after the damage, as the last of them wrote each:
	// what the ledger lacks (a hold authorized, captured or cancelled
	// there), for reconciliation. In damage.json only (a file of the data
	// directory, mode 0600, as the ledger holds the same tokens), never in
	// Error.
	Transactions []JournalTransaction `json:"transactions,omitempty"`
	// Set in damage.json only: the last record replayed, the files moved
	// and when.
	ReplayedTo uint64    `json:"replayed_to,omitempty"`
	Files      []string  `json:"files,omitempty"`
	MovedAt    time.Time `json:"moved_at,omitzero"`
}

// JournalTransaction is a hold as a record not replayed wrote it.
type JournalTransaction struct {
	Transaction string                   `json:"transaction"`
	Service     storage.ServiceName      `json:"service"`
	Account     storage.AccountToken     `json:"account"`
	State       storage.TransactionState `json:"state"`
	Amount      storage.Credits          `json:"amount"`
	Captured    storage.Credits          `json:"captured"`
}

func (e *JournalCorruptError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "journal corrupt: %s at byte %d: %s", e.File, e.Offset, e.Reason)
	switch {
	case e.After > 0:
		fmt.Fprintf(&b, "; %d valid records follow it (seq %d to %d), %d of them after the last checkpoint (in no other place)",
			e.After, e.AfterFirst, e.AfterLast, e.Unreplayed)
	default:
		b.WriteString("; no valid record follows it, but it is not the newest journal file, which a crash can tear")
	}
	if e.Unreadable > 0 {
		if e.Unreadable == 1 {
			b.WriteString("; 1 record after the last checkpoint is unreadable in the damage")
		} else {
			fmt.Fprintf(&b, "; %d records after the last checkpoint are unreadable in the damage", e.Unreadable)
		}
	}
	if e.Unscanned {
		b.WriteString(" (the search for records after it gave up: there may be more)")
	}
	return b.String()
}

// JournalAsideDir is the prefix of the folders, in the data directory,
// that hold moved-aside journal files.
const JournalAsideDir = journal.AsideDir

// describeCorruption fills a JournalCorruptError for the damage d: it
// walks the journal again to count the records after it.
func describeCorruption(dir string, d *journal.Damage, mark uint64) (*JournalCorruptError, error) {
	e := &JournalCorruptError{File: d.Path, Offset: d.At.Off, Reason: d.Why, LastGood: d.Prev, Unscanned: d.Unscanned}
	txns := map[string]JournalTransaction{}
	var order []string
	if _, err := journal.Walk(dir, func(at journal.Pos, seq uint64, ws []journal.Write) error {
		if at.Before(d.At) {
			return nil
		}
		if e.After == 0 {
			e.AfterFirst = seq
		}
		e.After++
		e.AfterLast = seq
		if seq <= mark {
			return nil
		}
		e.Unreplayed++
		for _, w := range ws {
			if w.Del || len(w.Key) != 1+txnIDBytes || w.Key[0] != pTxn {
				continue
			}
			tok := hex.EncodeToString(w.Key[1:])
			t, err := decodeTxn(w.Value, tok)
			if err != nil {
				continue // reported by the counts; the list is a help
			}
			if _, ok := txns[tok]; !ok {
				order = append(order, tok)
			}
			txns[tok] = JournalTransaction{Transaction: tok, Service: t.Service, Account: t.Account, State: t.State, Amount: t.Amount, Captured: t.Captured}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for _, tok := range order {
		e.Transactions = append(e.Transactions, txns[tok])
	}
	// The records lost in the damage are the seqs between the last one
	// before it and the first one after it.
	if d.Next > 0 {
		if from := max(d.Prev, mark) + 1; d.Next > from {
			e.Unreadable = d.Next - from
		}
	}
	return e, nil
}

// moveJournalAside moves the journal files aside (journal.MoveAside) with
// e, completed with the last record replayed, as the folder's damage.json.
func moveJournalAside(dir string, files []string, e *JournalCorruptError, replayedTo uint64) (string, error) {
	now := time.Now().UTC()
	d := *e
	d.ReplayedTo, d.MovedAt = replayedTo, now
	for _, f := range files {
		d.Files = append(d.Files, filepath.Base(f))
	}
	js, err := json.MarshalIndent(&d, "", "  ")
	if err != nil {
		return "", err
	}
	return journal.MoveAside(dir, files, append(js, '\n'), now)
}

// JournalAside is a moved-aside journal folder found in a data directory.
type JournalAside struct {
	Path   string
	Damage JournalCorruptError // from its damage.json; zero if unreadable
	Err    error               // damage.json could not be read
}

// ListJournalAside returns the moved-aside journal folders of dir, oldest
// first.
func ListJournalAside(dir string) ([]JournalAside, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []JournalAside
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), JournalAsideDir) {
			continue
		}
		a := JournalAside{Path: filepath.Join(dir, e.Name())}
		b, err := os.ReadFile(filepath.Join(a.Path, journal.DamageFile))
		if err == nil {
			err = json.Unmarshal(b, &a.Damage)
		}
		a.Err = err
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
