package admin

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/storage"
)

// Operator is what the operator routes (backup, verify, export) need from
// the ledger beyond storage.Ledger. cmd/iapd gives the Badger ledger's; a
// nil Operator makes those routes answer 503.
type Operator interface {
	// Backup writes a backup file of the whole ledger to w: one
	// consistent snapshot, taken when it starts, with a header and a
	// trailing checksum. An error after the first byte leaves w with an
	// incomplete file.
	Backup(ctx context.Context, w io.Writer) error
	// Verify walks every account and reports what is wrong (see
	// VerifyReport); overdue holds are errors once overdue by more than
	// grace (0: the ledger's default; negative: warnings only). Problems
	// carry full tokens; the caller hides them. The error is for a walk
	// that could not finish.
	Verify(ctx context.Context, grace time.Duration) (VerifyReport, error)
	// Export calls fn with every entry f selects, in (service, account,
	// seq) order, from one snapshot; fn's error stops it and is returned.
	// Invalid for a bad service name or token.
	Export(ctx context.Context, f ExportFilter, fn func(storage.Entry) error) error
}

// ExportFilter selects ledger entries; zero fields select all.
type ExportFilter struct {
	Service storage.ServiceName
	Account storage.AccountToken
	Since   time.Time // Time >= Since
	Until   time.Time // Time < Until
}

// VerifyReport is the answer of GET /v1/verify and what iapd verify
// prints: the counts walked and the problems found. Clean is Errors == 0.
type VerifyReport struct {
	Clean        bool            `json:"clean"`
	At           string          `json:"at"`
	Duration     string          `json:"duration"`
	Format       uint64          `json:"format"`
	Services     int64           `json:"services"`
	Accounts     int64           `json:"accounts"`
	Entries      int64           `json:"entries"`
	Transactions int64           `json:"transactions"`
	OpenHolds    int64           `json:"open_holds"`
	Errors       int             `json:"errors"`
	Warnings     int             `json:"warnings"`
	Problems     []VerifyProblem `json:"problems"`
	Omitted      int             `json:"omitted,omitempty"` // problems counted, not listed
}

// VerifyProblem is one discrepancy. Account is ShortID(token); Token and
// Transaction hold full tokens only when asked for (show_tokens), else
// Transaction is a ShortID too.
type VerifyProblem struct {
	Severity    string               `json:"severity"` // error or warning
	Check       string               `json:"check"`
	Service     storage.ServiceName  `json:"service,omitempty"`
	Account     string               `json:"account,omitempty"`
	Token       storage.AccountToken `json:"token,omitempty"`
	Transaction string               `json:"transaction,omitempty"`
	Detail      string               `json:"detail"`
}

// ShortID names a token in reports without showing it: "sha256:" and the
// first 12 hex digits of its SHA-256 (printf %s TOKEN | sha256sum).
func ShortID(token string) string {
	if token == "" {
		return ""
	}
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:6])
}

// Redact fills Account with the short id of Token and, unless showTokens,
// drops Token and shortens Transaction. Problems is copied, not changed in
// place.
func (r *VerifyReport) Redact(showTokens bool) {
	r.Problems = append([]VerifyProblem(nil), r.Problems...)
	for i := range r.Problems {
		p := &r.Problems[i]
		p.Account = ShortID(string(p.Token))
		if !showTokens {
			p.Token = ""
			p.Transaction = ShortID(p.Transaction)
		}
	}
}

// ExportedEntry is one line of GET /v1/export?format=jsonl.
type ExportedEntry struct {
	Service storage.ServiceName  `json:"service"`
	Account storage.AccountToken `json:"account"`
	Entry
}

// ExportColumns are the columns of GET /v1/export?format=csv.
var ExportColumns = []string{"service", "account", "seq", "time", "kind", "amount",
	"d_recharged", "d_available", "d_held", "d_captured", "transaction", "ref", "description"}

func (s *server) operatorRoutes() {
	s.mux.HandleFunc("GET /v1/backup", s.backup)
	s.mux.HandleFunc("GET /v1/verify", s.verify)
	s.mux.HandleFunc("GET /v1/export", s.export)
}

// streamDeadline is how long one write of a streamed answer may take: each
// write pushes the connection's write deadline (the ops listener's own
// WriteTimeout would cut a long stream).
const streamDeadline = 2 * time.Minute

// streamWriter writes a streamed answer, pushing the write deadline.
type streamWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	n  int64
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(streamDeadline)) // unsupported: the server's timeout applies
	n, err := sw.w.Write(p)
	sw.n += int64(n)
	return n, err
}

// startStream sends the header of a 200 answer now.
func startStream(w http.ResponseWriter, contentType string) *streamWriter {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	_ = rc.SetWriteDeadline(time.Now().Add(streamDeadline))
	return &streamWriter{w: w, rc: rc}
}

// abort ends a streamed answer that failed after its header: the
// connection is cut, so the client sees a truncated (chunked) answer
// rather than a complete one.
func (s *server) abort(r *http.Request, err error) {
	s.log.Error("admin: streamed answer failed; connection cut", "method", r.Method, "path", r.URL.Path, "err", err)
	panic(http.ErrAbortHandler)
}

func (s *server) noOperator(w http.ResponseWriter, r *http.Request, op string) bool {
	if s.ops != nil {
		return false
	}
	s.fail(w, r, storage.E(op, storage.Unavailable, "this ledger does not offer "+op))
	return true
}

// backup streams a backup file. The snapshot is taken when the request
// arrives; the stream is not cut by a shutdown (a request in flight is
// finished), only by a write error.
func (s *server) backup(w http.ResponseWriter, r *http.Request) {
	const op = "backup"
	if s.noOperator(w, r, op) {
		return
	}
	// The answer starts with the first byte of the file, so that a refusal
	// (a closed ledger) is still an ordinary error answer.
	lw := &lazyStream{begin: func() *streamWriter {
		w.Header().Set("Content-Disposition", `attachment; filename="iapd-`+time.Now().UTC().Format("20060102T150405Z")+`.iapdbak"`)
		return startStream(w, "application/octet-stream")
	}}
	start := time.Now()
	if err := s.ops.Backup(context.WithoutCancel(r.Context()), lw); err != nil {
		if lw.sw == nil {
			s.fail(w, r, err)
			return
		}
		s.abort(r, err)
	}
	if lw.sw == nil {
		s.abort(r, errors.New("empty backup"))
	}
	s.log.Info("admin: backup streamed", "bytes", lw.sw.n, "duration", time.Since(start).Round(time.Millisecond))
}

// lazyStream starts a streamed answer at its first write.
type lazyStream struct {
	begin func() *streamWriter
	sw    *streamWriter
}

func (l *lazyStream) Write(p []byte) (int, error) {
	if l.sw == nil {
		l.sw = l.begin()
	}
	return l.sw.Write(p)
}

func (s *server) verify(w http.ResponseWriter, r *http.Request) {
	const op = "verify"
	if s.noOperator(w, r, op) {
		return
	}
	q := r.URL.Query()
	var grace time.Duration
	if raw := q.Get("grace"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil {
			s.fail(w, r, storage.Ef(op, storage.Invalid, "grace must be a duration such as 1h or 30m, got %q", raw))
			return
		}
		if d == 0 {
			d = time.Nanosecond // "no grace", not the default
		}
		grace = d
	}
	show, err := parseBool(op, "show_tokens", q.Get("show_tokens"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := s.ops.Verify(r.Context(), grace)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rep.Redact(show)
	if rep.Problems == nil {
		rep.Problems = []VerifyProblem{}
	}
	lvl := slog.LevelInfo
	if !rep.Clean {
		lvl = slog.LevelWarn
	}
	s.log.Log(r.Context(), lvl, "admin: ledger verified", "clean", rep.Clean, "errors", rep.Errors, "warnings", rep.Warnings, "accounts", rep.Accounts)
	s.reply(w, http.StatusOK, rep)
}

func parseBool(op, name, raw string) (bool, error) {
	if raw == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, storage.Ef(op, storage.Invalid, "%s must be true or false, got %q", name, raw)
	}
	return b, nil
}

// ParseExportTime reads a bound of an export: RFC 3339, or a date
// (YYYY-MM-DD, midnight UTC).
func ParseExportTime(raw string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, raw); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, raw); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want RFC 3339 (2025-06-01T00:00:00Z) or a date (2025-06-01)")
}

func (s *server) export(w http.ResponseWriter, r *http.Request) {
	const op = "export"
	if s.noOperator(w, r, op) {
		return
	}
	q := r.URL.Query()
	var f ExportFilter
	var err error
	if raw := q.Get("service"); raw != "" {
		if f.Service, err = parseService(op, raw); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if raw := q.Get("token"); raw != "" {
		if f.Account, err = parseToken(op, raw); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if raw := q.Get(b.name); raw != "" {
			if *b.t, err = ParseExportTime(raw); err != nil {
				s.fail(w, r, storage.Ef(op, storage.Invalid, "%s %q: %v", b.name, raw, err))
				return
			}
		}
	}
	format := q.Get("format")
	switch format {
	case "", "csv":
		format = "csv"
	case "jsonl", "ndjson":
		format = "jsonl"
	default:
		s.fail(w, r, storage.Ef(op, storage.Invalid, "format must be csv or jsonl, got %q", format))
		return
	}

	// Nothing is sent before the first entry (or the end), so that a
	// refusal (bad token, closed ledger) is still an ordinary error answer.
	ctx := context.WithoutCancel(r.Context())
	var sw *streamWriter
	var bw *bufio.Writer
	var cw *csv.Writer
	var enc *json.Encoder
	begin := func() {
		ct := "text/csv; charset=utf-8"
		if format == "jsonl" {
			ct = "application/x-ndjson"
		}
		w.Header().Set("Content-Disposition", `attachment; filename="iapd-entries.`+format+`"`)
		sw = startStream(w, ct)
		bw = bufio.NewWriterSize(sw, 64<<10)
		if format == "csv" {
			cw = csv.NewWriter(bw)
			_ = cw.Write(ExportColumns)
		} else {
			enc = json.NewEncoder(bw)
		}
	}
	n := 0
	row := make([]string, len(ExportColumns))
	err = s.ops.Export(ctx, f, func(e storage.Entry) error {
		if sw == nil {
			begin()
		}
		n++
		if enc != nil {
			return enc.Encode(ExportedEntry{Service: e.Service, Account: e.Account, Entry: entryView(e)})
		}
		v := entryView(e)
		row = append(row[:0], string(e.Service), csvText(string(e.Account)), strconv.FormatUint(e.Seq, 10), v.Time, string(e.Kind),
			v.Amount.String(), v.DRecharged.String(), v.DAvailable.String(), v.DHeld.String(), v.DCaptured.String(),
			e.Transaction, csvText(e.Ref), csvText(e.Description))
		cw.Write(row)
		return cw.Error()
	})
	if err != nil {
		if sw == nil {
			s.fail(w, r, err)
			return
		}
		s.abort(r, err)
	}
	if sw == nil {
		begin()
	}
	if cw != nil {
		cw.Flush()
		err = cw.Error()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		s.abort(r, err)
	}
	s.log.Info("admin: entries exported", "entries", n, "format", format, "bytes", sw.n)
}

// csvText keeps a spreadsheet from reading a text cell as a formula (OWASP
// "CSV injection"): a leading =, +, -, @, tab or carriage return gets a
// leading apostrophe. Only free text is treated; numbers are never text.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
