package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/iapd/iapd/rpc/admin"
)

// onlinePollEvery is how often iapd directory import asks the running
// iapd how its import goes.
const onlinePollEvery = 500 * time.Millisecond

// runDirectoryOnline has the running iapd import files (made absolute:
// the ops listener is local, and iapd reads them from this machine's
// filesystem) through POST /v1/registers/import, then follows
// GET /v1/registers/import until the import ends: progress as offline
// (a line rewritten on a terminal, a plain line every
// plainProgressEvery otherwise), the bad rows named, the counts at the
// end. An import that failed or was aborted is the error.
func runDirectoryOnline(ctx context.Context, format string, files []string, cf clientFlags, s stdio) error {
	c, err := cf.client(s.getenv)
	if err != nil {
		return fmt.Errorf("directory import: %w", err)
	}
	abs := make([]string, len(files))
	for i, f := range files {
		if abs[i], err = filepath.Abs(f); err != nil {
			return fmt.Errorf("directory import: %w", err)
		}
	}
	var st admin.RegisterImportStatus
	if err := c.call(ctx, "POST", "/v1/registers/import", nil, map[string]any{"format": format, "files": abs}, &st); err != nil {
		return fmt.Errorf("directory import: %w", err)
	}
	if !*cf.json {
		fmt.Fprintf(s.stderr, "%s: online import of %d files started by iapd at %s\n", format, len(abs), c.base)
	}
	tty := writesToTerminal(s.stderr)
	every := plainProgressEvery
	if tty {
		every = progressEvery
	}
	var shown time.Time
	badShown, width := 0, 0
	erase := func() {
		if width > 0 {
			fmt.Fprintf(s.stderr, "\r%s\r", strings.Repeat(" ", width))
			width = 0
		}
	}
	t := time.NewTicker(onlinePollEvery)
	defer t.Stop()
	for st.State == "running" {
		select {
		case <-ctx.Done():
			erase()
			return fmt.Errorf("directory import: %w (the import goes on in iapd: iapd directory import shows nothing more; GET /v1/registers/import does)", ctx.Err())
		case <-t.C:
		}
		if err := c.call(ctx, "GET", "/v1/registers/import", nil, nil, &st); err != nil {
			erase()
			return fmt.Errorf("directory import: following the import: %w", err)
		}
		if len(st.BadRows) > badShown {
			erase()
			for _, b := range st.BadRows[badShown:] {
				fmt.Fprintf(s.stderr, "%s: skipped\n", b)
			}
			badShown = len(st.BadRows)
		}
		if now := time.Now(); st.State == "running" && now.Sub(shown) >= every {
			shown = now
			line := onlineProgressLine(st, now)
			if !tty {
				fmt.Fprintln(s.stderr, line)
				continue
			}
			pad := ""
			if len(line) < width {
				pad = strings.Repeat(" ", width-len(line))
			}
			width = len(line)
			fmt.Fprintf(s.stderr, "\r%s%s", line, pad)
		}
	}
	erase()
	if *cf.json {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(s.stdout, string(b))
	} else {
		if st.Bad > int64(badShown) {
			fmt.Fprintf(s.stderr, "%d more bad rows skipped\n", st.Bad-int64(badShown))
		}
		secs := st.Finished.Sub(st.Started).Seconds()
		fmt.Fprintf(s.stdout, "%s: %d records from %d files in %.1fs (%.0f records/s), %d bad rows skipped\n",
			format, st.Records, len(abs), secs, float64(st.Records)/max(secs, 0.001), st.Bad)
		fmt.Fprintf(s.stdout, "index of the running iapd: %d new, %d changed, %d unchanged, %d struck off\n",
			st.New, st.Changed, st.Unchanged, st.StruckOff)
	}
	if st.State != "done" {
		return fmt.Errorf("directory import: %s: %s", st.State, st.Error)
	}
	return nil
}

// onlineProgressLine renders e.g. "companies-house: /srv/ch.csv 45% (81.2
// of 180.3 MB), 1234567 records, 52311 records/s".
func onlineProgressLine(st admin.RegisterImportStatus, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", st.Format, st.File)
	if st.BytesTotal > 0 {
		fmt.Fprintf(&b, " %d%% (%.1f of %.1f MB)", percent(st.BytesDone, st.BytesTotal), megabytes(st.BytesDone), megabytes(st.BytesTotal))
	}
	fmt.Fprintf(&b, ", %d records", st.Records)
	if secs := now.Sub(st.Started).Seconds(); secs > 0 {
		fmt.Fprintf(&b, ", %.0f records/s", float64(st.Records)/secs)
	}
	return b.String()
}
