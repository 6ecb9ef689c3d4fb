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
	info, err := badger.CheckBackup(io.TeeReader(body, dst))
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
	force := fs.Bool("force", false, "delete the contents of a non-empty data directory first (it must hold an iapd ledger)")
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

	// 1. The whole file is checked before anything is written.
	info, err := badger.CheckBackup(f)
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
	if _, err := badger.Restore(ctx, badger.Options{Dir: *data}, f); err != nil {
		if rerr := removeContents(*data); rerr != nil {
			return fmt.Errorf("restore: %w (and cleaning %s failed: %v)", err, *data, rerr)
		}
		return fmt.Errorf("restore: %w (%s emptied again)", err, *data)
	}

	// 4. Open as iapd serve will (migrating an older format) and verify.
	l, err := badger.Open(badger.Options{Dir: *data, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return fmt.Errorf("restore: opening the restored ledger: %w", err)
	}
	defer l.Close()
	// Holds that expired since the backup are released by the sweeper at
	// the next start: warnings here, whatever their age.
	r, err := l.Verify(ctx, badger.VerifyOptions{Grace: -1})
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
	if !rep.Clean {
		return fmt.Errorf("restore: the restored ledger has %s (left in %s for inspection)", plural(rep.Errors, "error"), *data)
	}
	return nil
}

// prepareRestoreDir makes sure dir is absent or empty, emptying it with
// force when it holds an iapd ledger that no process has open.
func prepareRestoreDir(dir string, force bool, stdout io.Writer) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || err == nil && len(ents) == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	if !force {
		return fmt.Errorf("%s is not empty (%d entries): restore into an empty directory, or pass -force to delete its contents first", dir, len(ents))
	}
	// Refuse to empty what is not a ledger (a mistyped -data /), or a
	// ledger in use.
	looksLikeLedger := false
	for _, e := range ents {
		if e.IsDir() {
			return fmt.Errorf("%s holds a directory (%s): not an iapd data directory; refusing to delete its contents", dir, e.Name())
		}
		switch e.Name() {
		case "MANIFEST", "KEYREGISTRY", "RESTORE-IN-PROGRESS":
			looksLikeLedger = true
		}
	}
	if !looksLikeLedger {
		return fmt.Errorf("%s does not look like an iapd data directory (no MANIFEST); refusing to delete its contents", dir)
	}
	if l, err := badger.Open(badger.Options{Dir: dir}); err == nil {
		l.Close()
	} else if strings.Contains(err.Error(), "directory lock") {
		return fmt.Errorf("%s is in use (is iapd running on it? stop it first): %w", dir, err)
	}
	if err := removeContents(dir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted the previous contents of %s (%d files)\n", dir, len(ents))
	return nil
}

// removeContents removes the files in dir, keeping dir (a systemd
// StateDirectory stays in place, with its owner and mode).
func removeContents(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
