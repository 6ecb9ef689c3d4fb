package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/iapd/iapd/storage/badger"
)

// ---- backup (admin API client) ----

func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", stderr, "iapd backup -o FILE [-force] [-ops ADDR]")
	cf := addClientFlags(fs, getenv)
	out := fs.String("o", "", "backup `file` to write (- for standard output)")
	force := fs.Bool("force", false, "replace FILE if it exists")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return errors.New("backup: -o FILE is required")
	}
	c, err := cf.client(getenv)
	if err != nil {
		return err
	}
	body, err := c.stream(ctx, "/v1/backup", nil)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer body.Close()

	// The file is written under a temporary name, checked as it arrives
	// (framing, counts, checksum), synced, and only then renamed.
	var dst io.Writer = localWriter{stdout}
	var tmp *os.File
	if *out != "-" {
		if _, err := os.Stat(*out); err == nil && !*force {
			return fmt.Errorf("backup: %s exists (-force replaces it)", *out)
		}
		tmp, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".partial-*")
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		dst = localWriter{tmp}
	}
	prog := newProgress(stderr, time.Now)
	if *out == "-" && writesToTerminal(stdout) {
		prog = nil
	}
	prog.Phase("backup: received", "bytes", 0)
	info, err := badger.CheckBackup(io.TeeReader(countingReader{body, prog}, dst))
	prog.Done()
	if err != nil {
		var werr *writeError
		if errors.As(err, &werr) {
			return fmt.Errorf("backup: writing %s: %w", *out, werr.err)
		}
		return fmt.Errorf("backup: the backup received is incomplete or damaged (nothing written to %s): %w", *out, err)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		if err := os.Rename(tmp.Name(), *out); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		tmp = nil
		if d, err := os.Open(filepath.Dir(*out)); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	w := stdout
	if *out == "-" {
		w = stderr
	}
	fmt.Fprintf(w, "backup %s: %s\n", orStdout(*out), describeBackup(info))
	return nil
}

func orStdout(name string) string {
	if name == "-" {
		return "(standard output)"
	}
	return name
}

// writeError marks a failure to write the local copy, as opposed to a bad
// stream. (io.TeeReader returns the writer's error as is; CheckBackup
// passes I/O errors through.)
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

type localWriter struct{ w io.Writer }

func (l localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// decodeAPIError turns an error answer of the admin API into an *apiError,
// as adminClient.call does.
func decodeAPIError(base string, resp *http.Response, raw []byte) error {
	var e struct {
		Error struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Error.Kind == "" {
		return &apiError{Status: resp.StatusCode, Kind: "http", Message: fmt.Sprintf("unexpected answer from %s: %s", base, resp.Status)}
	}
	return &apiError{Status: resp.StatusCode, Kind: e.Error.Kind, Message: e.Error.Message}
}

func describeBackup(info badger.BackupInfo) string {
	return fmt.Sprintf("%d services, %d accounts, %d transactions, %d entries (%d records, %d bytes); ledger format %d, taken %s by %s; sha256 %s",
		info.Counts.Services, info.Counts.Accounts, info.Counts.Transactions, info.Counts.Entries, info.Counts.Keys, info.Size,
		info.LedgerFormat, info.CreatedAt.UTC().Format(time.RFC3339), info.IAPD, info.SHA256)
}

// stream sends a GET and returns the body of a 200 answer, unread. The
// client's overall timeout does not apply (a backup may take long); the
// answer's header must come within a minute.
func (c *adminClient) stream(ctx context.Context, path string, query url.Values) (io.ReadCloser, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute}}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach iapd's admin API at %s: %w", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		// The error answer is JSON: decode it as call does.
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, decodeAPIError(c.base, resp, raw)
	}
	return resp.Body, nil
}

// ---- restore (offline) ----

func runRestore(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("restore", stderr, "iapd restore -data DIR [-force] FILE")
	data := fs.String("data", "", "data `directory` to restore into: absent or empty (iapd must not be running on it)")
	force := fs.Bool("force", false, "delete the ledger of a non-empty data directory first (it must hold an iapd ledger and nothing iapd did not make; portal/, providers/ and registers/ are kept)")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if *data == "" {
		fs.Usage()
		return errors.New("restore: -data DIR is required")
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()

	var size int64
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	prog := newProgress(stderr, time.Now)

	// 1. The whole file is checked before anything is written.
	prog.Phase("restore: checking", "bytes", size)
	info, err := badger.CheckBackup(countingReader{f, prog})
	prog.Done()
	if err != nil {
		return fmt.Errorf("restore: %s: %w", pos[0], err)
	}
	if info.LedgerFormat > badger.FormatVersion {
		return fmt.Errorf("restore: %s holds ledger format %d, taken by %s; this iapd reads formats up to %d: restore it with that iapd or a later release",
			pos[0], info.LedgerFormat, info.IAPD, badger.FormatVersion)
	}
	fmt.Fprintf(stdout, "backup %s checked: %s\n", pos[0], describeBackup(info))

	// 2. The data directory: absent, empty, or emptied with -force.
	if err := prepareRestoreDir(*data, *force, stdout); err != nil {
		return fmt.Errorf("restore: %w", err)
	}

	// 3. Load. On failure the directory's contents (which this command
	// wrote) are removed again.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	prog.Phase("restore: loading", "bytes", size)
	_, err = badger.Restore(ctx, badger.Options{Dir: *data}, countingReader{f, prog})
	prog.Done()
	if err != nil {
		if rerr := removeLedger(*data); rerr != nil {
			return fmt.Errorf("restore: %w (and cleaning %s failed: %v)", err, *data, rerr)
		}
		return fmt.Errorf("restore: %w (the ledger files written to %s removed again)", err, *data)
	}

	// 4. Open as iapd serve will (migrating an older format) and verify.
	l, err := badger.Open(badger.Options{Dir: *data, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return fmt.Errorf("restore: opening the restored ledger: %w", err)
	}
	defer l.Close()
	// Holds that expired since the backup are released by the sweeper at
	// the next start: warnings here, whatever their age.
	prog.Phase("restore: verifying", "records walked", 0)
	r, err := l.Verify(ctx, badger.VerifyOptions{Grace: -1, Progress: prog.Set})
	prog.Done()
	if err != nil {
		return fmt.Errorf("restore: verifying the restored ledger: %w", err)
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("restore: closing the restored ledger: %w", err)
	}
	fmt.Fprintf(stdout, "restored into %s: %d services, %d accounts, %d entries, %d transactions (%d holds open)\n",
		*data, r.Services, r.Accounts, r.Entries, r.Transactions, r.OpenHolds)
	rep := verifyReport(r)
	rep.Redact(false)
	printVerifyReport(stdout, rep)
	// The restored ledger has no journal: journal problems are about the
	// journal-corrupt-* folders kept from before (prepareRestoreDir).
	kept := 0
	for _, p := range rep.Problems {
		if p.Check == badger.CheckJournal && p.Severity == string(badger.SeverityError) {
			kept++
		}
	}
	if rep.Errors > kept {
		return fmt.Errorf("restore: the restored ledger has %s (left in %s for inspection)", plural(rep.Errors-kept, "error"), *data)
	}
	if kept > 0 {
		fmt.Fprintf(stdout, "the ledger restored is sound; the journal errors are about folders kept from before the restore: reconcile them, then remove them (iapd verify fails until then)\n")
	}
	return nil
}

// prepareRestoreDir makes sure dir holds no ledger, deleting the ledger's
// files with force when no process has the ledger open. Beside the ledger a
// data directory holds what iapd serve made there, which restore keeps:
// portal/ (the secret keying the credit pages' CSRF tokens: not ledger
// state, and not in a backup) and providers/ (what the providers did, e.g.
// the outbox's messages and the folder's letters: a restored ledger does
// not unsend them, and they are the record to reconcile it against), and
// journal-corrupt-* folders (evidence of acknowledged operations a backup
// may lack). Anything else in dir makes it refuse: it deletes nothing it
// does not recognise as iapd's.
func prepareRestoreDir(dir string, force bool, stdout io.Writer) error {
	c, err := readDataDir(dir)
	if err != nil {
		return err
	}
	if len(c.ledger) == 0 && len(c.foreign) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("%s is not empty (%d entries): restore into an empty directory, or pass -force to delete its ledger first", dir, len(c.ledger)+len(c.foreign)+len(c.kept))
	}
	// Refuse to empty what is not a ledger (a mistyped -data /), or a
	// ledger in use.
	if len(c.foreign) > 0 {
		return fmt.Errorf("%s holds %s, which iapd did not put there: not an iapd data directory; refusing to delete its contents", dir, c.foreign[0])
	}
	if !c.hasManifest {
		return fmt.Errorf("%s does not look like an iapd data directory (no MANIFEST); refusing to delete its contents", dir)
	}
	if err := dataDirInUse(dir); err != nil { // datadir.go: names the pid
		return err
	}
	if l, err := badger.Open(badger.Options{Dir: dir}); err == nil {
		l.Close()
	} else if inUse := explainOpenError(dir, err); inUse != err {
		return inUse
	}
	if err := removeLedger(dir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted the previous ledger in %s (%d files)\n", dir, len(c.ledger))
	if len(c.kept) > 0 {
		fmt.Fprintf(stdout, "kept %s (not the ledger)\n", strings.Join(c.kept, ", "))
	}
	return nil
}

// dataDir is what readDataDir found in a data directory.
type dataDir struct {
	ledger      []string // the ledger's files: Badger's, the journal's, the restore marker
	kept        []string // directories iapd serve makes, which restore keeps
	foreign     []string // anything else ("name/" for a directory, "portal/name" inside one)
	hasManifest bool     // a MANIFEST, KEYREGISTRY or RESTORE-IN-PROGRESS
}

// ledgerFile matches the names of the files a ledger directory holds:
// Badger's (tables, value logs, memtable logs, manifest, key registry,
// discard stats, lock, their rewrite files), the journal's and the
// restore marker.
var ledgerFile = regexp.MustCompile(`^([0-9]+\.(sst|vlog|mem)|MANIFEST|MANIFEST-REWRITE|KEYREGISTRY|REWRITE-KEYREGISTRY|DISCARD|LOCK|RESTORE-IN-PROGRESS|journal-[0-9]+\.log)$`)

// readDataDir sorts the entries of dir (absent: none). Inside portal/ only
// the secret (and its temporary file) is iapd's; providers/ holds one
// directory per provider instance, whose contents are the provider's.
func readDataDir(dir string) (dataDir, error) {
	var c dataDir
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case !e.IsDir() && e.Type().IsRegular() && ledgerFile.MatchString(name):
			c.ledger = append(c.ledger, name)
			switch name {
			case "MANIFEST", "KEYREGISTRY", "RESTORE-IN-PROGRESS":
				c.hasManifest = true
			}
		case e.IsDir() && name == "portal":
			if bad, err := onlyEntries(filepath.Join(dir, name), func(e os.DirEntry) bool {
				return e.Type().IsRegular() && (e.Name() == "secret" || e.Name() == "secret.tmp")
			}); err != nil {
				return c, err
			} else if bad != "" {
				c.foreign = append(c.foreign, name+"/"+bad)
			} else {
				c.kept = append(c.kept, name+"/")
			}
		case e.IsDir() && name == "providers":
			if bad, err := onlyEntries(filepath.Join(dir, name), os.DirEntry.IsDir); err != nil {
				return c, err
			} else if bad != "" {
				c.foreign = append(c.foreign, name+"/"+bad)
			} else {
				c.kept = append(c.kept, name+"/")
			}
		case e.IsDir() && name == "registers": // iapd directory import's index: not ledger state
			c.kept = append(c.kept, name+"/")
		case e.IsDir() && strings.HasPrefix(name, badger.JournalAsideDir):
			c.kept = append(c.kept, name+"/")
		case e.IsDir():
			c.foreign = append(c.foreign, name+"/")
		default:
			c.foreign = append(c.foreign, name)
		}
	}
	return c, nil
}

// onlyEntries returns the name of the first entry of dir that ok refuses,
// "" when there is none.
func onlyEntries(dir string, ok func(os.DirEntry) bool) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if !ok(e) {
			return e.Name(), nil
		}
	}
	return "", nil
}

// removeLedger removes the ledger's files from dir, keeping dir (a systemd
// StateDirectory stays in place, with its owner and mode) and the
// directories iapd keeps beside the ledger (prepareRestoreDir).
func removeLedger(dir string) error {
	c, err := readDataDir(dir)
	if err != nil {
		return err
	}
	for _, name := range c.ledger {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}
