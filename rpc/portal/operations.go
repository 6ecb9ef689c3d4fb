package portal

import (
	"time"

	"github.com/iapd/iapd/storage"
)

// historyRow is one operation of the history as a customer reads it: a
// recharge, an adjustment, or a hold with its end (capture, cancel or
// expiry) on one line, "SMS: 3 messages, −3".
type historyRow struct {
	Time   time.Time
	Kind   string // recharge, adjustment, consumption, cancelled, expired
	Text   string // in the page's language
	Amount storage.Credits
}

// pendingRow is a hold in progress: credit held, not consumed yet.
type pendingRow struct {
	Time        time.Time
	Description string
	Amount      storage.Credits
}

// sameOperation reports whether newer and older are one operation's
// entries written together (a capture and the release of its remainder).
func sameOperation(newer, older storage.Entry) bool {
	return newer.Transaction != "" && newer.Transaction == older.Transaction &&
		newer.Kind == storage.EntryRelease && older.Kind == storage.EntryCapture
}

// operations folds entries (newest first) into one row per operation. A
// hold is never a row: the end of its operation is (where the history
// shows it), and holds still open are listed apart (pending). The
// release of a capture's remainder folds into the capture's row.
func (r *request) operations(entries []storage.Entry) []historyRow {
	rows := make([]historyRow, 0, len(entries))
	captured := map[string]bool{} // transactions with a capture on this page
	for _, e := range entries {
		if e.Kind == storage.EntryCapture && e.Transaction != "" {
			captured[e.Transaction] = true
		}
	}
	for _, e := range entries {
		row := historyRow{Time: e.Time}
		switch e.Kind {
		case storage.EntryHold:
			continue
		case storage.EntryRecharge:
			row.Kind, row.Amount = "recharge", e.DRecharged
		case storage.EntryAdjustment:
			row.Kind, row.Amount = "adjustment", e.DRecharged
		case storage.EntryCapture:
			row.Kind, row.Amount = "consumption", -e.DCaptured
		case storage.EntryRelease:
			if captured[e.Transaction] {
				continue // the remainder of a capture: one line with it
			}
			row.Kind = "cancelled"
		case storage.EntryExpiry:
			row.Kind = "expired"
		default:
			continue
		}
		row.Text = r.opText(row.Kind, e.Description)
		rows = append(rows, row)
	}
	return rows
}

// opText is the text of an operation: its description with the kind.
func (r *request) opText(kind, desc string) string {
	if desc == "" {
		return r.tr.T("op." + kind + ".bare")
	}
	return r.tr.T("op."+kind, "desc", desc)
}

// Bounds of the in-progress list: holds are short-lived, so the open ones
// are among the newest entries.
const (
	pendingScan = 200 // newest entries read
	pendingMax  = 20  // holds listed
)

// pending lists the account's holds in progress, newest first: the holds
// among its newest pendingScan entries that have not ended.
func (r *request) pending(a storage.Account) ([]pendingRow, error) {
	if a.Held <= 0 {
		return nil, nil
	}
	entries, err := r.p.ledger.History(r.context(), a.Service, a.Token, storage.HistoryQuery{Limit: pendingScan})
	if err != nil {
		return nil, err
	}
	ended := map[string]bool{}
	var out []pendingRow
	for _, e := range entries {
		switch {
		case e.Transaction == "":
		case e.Kind != storage.EntryHold:
			ended[e.Transaction] = true
		case !ended[e.Transaction] && len(out) < pendingMax:
			out = append(out, pendingRow{Time: e.Time, Description: e.Description, Amount: e.DHeld})
		}
	}
	return out, nil
}
