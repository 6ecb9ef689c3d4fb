package admin_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// badgerOperator is cmd/iapd's adapter, for these tests.
type badgerOperator struct{ l *badger.Ledger }

func (o badgerOperator) Backup(ctx context.Context, w io.Writer) error {
	_, err := o.l.Backup(ctx, w)
	return err
}

func (o badgerOperator) Verify(ctx context.Context, grace time.Duration) (admin.VerifyReport, error) {
	r, err := o.l.Verify(ctx, badger.VerifyOptions{Grace: grace})
	if err != nil {
		return admin.VerifyReport{}, err
	}
	out := admin.VerifyReport{Clean: r.Clean(), Accounts: r.Accounts, Entries: r.Entries, Errors: r.Errors, Warnings: r.Warnings, OpenHolds: r.OpenHolds}
	for _, p := range r.Problems {
		out.Problems = append(out.Problems, admin.VerifyProblem{Severity: string(p.Severity), Check: p.Check, Service: p.Service,
			Token: p.Account, Transaction: p.Transaction, Detail: p.Detail})
	}
	return out, nil
}

func (o badgerOperator) Export(ctx context.Context, f admin.ExportFilter, fn func(storage.Entry) error) error {
	return o.l.Export(ctx, badger.ExportFilter{Service: f.Service, Account: f.Account, Since: f.Since, Until: f.Until}, fn)
}

const opsTok = "0123456789abcdef0123456789abcdef"

// newOpsServer serves the admin API over a Badger ledger with an operator
// (op overrides it when non-nil), holding a recharge, a captured hold and
// an open hold past its expiry.
func newOpsServer(t *testing.T, op admin.Operator) (*httptest.Server, *badger.Ledger, storage.Transaction) {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l, err := badger.Open(badger.Options{Dir: t.TempDir(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: opsTok, Amount: 10 * storage.Scale, Kind: storage.EntryRecharge, Ref: "inv-1", Description: "=1+1"}); err != nil {
		t.Fatal(err)
	}
	tr, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: opsTok, Amount: storage.Scale, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if op == nil {
		op = badgerOperator{l}
	}
	srv := httptest.NewServer(admin.New(admin.Config{Ledger: l, Token: adminToken, Operator: op}))
	t.Cleanup(srv.Close)
	return srv, l, tr
}

func get(t *testing.T, url string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestBackupRoute(t *testing.T) {
	srv, _, _ := newOpsServer(t, nil)
	resp, body, err := get(t, srv.URL+"/v1/backup")
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), ".iapdbak") {
		t.Fatalf("backup: %v %d %v", err, resp.StatusCode, resp.Header)
	}
	info, err := badger.CheckBackup(bytes.NewReader(body))
	if err != nil || info.Counts.Accounts != 1 || info.Counts.Entries != 2 || info.Counts.Transactions != 1 {
		t.Fatalf("backup received: %+v, %v", info, err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/backup", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("backup without token: %v %v", resp, err)
	}
}

func TestVerifyRoute(t *testing.T) {
	srv, _, _ := newOpsServer(t, nil)
	var rep admin.VerifyReport
	decode := func(path string) string {
		t.Helper()
		resp, body, err := get(t, srv.URL+path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %d %s", path, err, resp.StatusCode, body)
		}
		rep = admin.VerifyReport{}
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
		return string(body)
	}
	// The open hold expired a minute after the fixed clock; the clock has
	// not moved, so it is not overdue yet: clean.
	body := decode("/v1/verify")
	if !rep.Clean || rep.Errors != 0 || rep.Accounts != 1 || rep.OpenHolds != 1 || rep.Problems == nil {
		t.Fatalf("verify: %s", body)
	}
}

func TestVerifyRouteHidesTokens(t *testing.T) {
	fake := fakeOperator{report: admin.VerifyReport{Clean: false, Errors: 1, Problems: []admin.VerifyProblem{{
		Severity: "error", Check: "invariant", Service: "sms", Token: opsTok, Transaction: "485a1ad5a2d2490fa3adc2ff6e56d402", Detail: "recharged 1 ≠ …",
	}}}}
	srv, _, _ := newOpsServer(t, &fake)
	_, body, _ := get(t, srv.URL+"/v1/verify?grace=30m")
	if strings.Contains(string(body), opsTok) || strings.Contains(string(body), "485a1ad5a2d2490f") ||
		!strings.Contains(string(body), admin.ShortID(opsTok)) || !strings.Contains(string(body), `"clean":false`) {
		t.Fatalf("tokens not hidden: %s", body)
	}
	if fake.grace != 30*time.Minute {
		t.Fatalf("grace passed: %v", fake.grace)
	}
	_, body, _ = get(t, srv.URL+"/v1/verify?show_tokens=true&grace=0")
	if !strings.Contains(string(body), `"token":"`+opsTok) || !strings.Contains(string(body), "485a1ad5a2d2490fa3adc2ff6e56d402") {
		t.Fatalf("show_tokens: %s", body)
	}
	if fake.grace <= 0 || fake.grace > time.Millisecond {
		t.Fatalf("grace=0 passed as %v, want a tiny positive grace", fake.grace)
	}
	if resp, _, _ := get(t, srv.URL+"/v1/verify?grace=soon"); resp.StatusCode != 400 {
		t.Fatalf("bad grace: %d", resp.StatusCode)
	}
	if got, want := admin.ShortID("abc"), "sha256:ba7816bf8f01"; got != want {
		t.Fatalf("ShortID = %s, want %s", got, want)
	}
}

func TestExportRoute(t *testing.T) {
	srv, _, tr := newOpsServer(t, nil)
	resp, body, err := get(t, srv.URL+"/v1/export")
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("export: %v %d %s", err, resp.StatusCode, body)
	}
	rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(admin.ExportColumns, ",") {
		t.Fatalf("csv: %v\n%s", err, body)
	}
	if r := rows[1]; r[0] != "sms" || r[1] != opsTok || r[2] != "1" || r[4] != "recharge" || r[5] != "10" || r[11] != "inv-1" || r[12] != "'=1+1" {
		t.Fatalf("recharge row: %q", r)
	}
	if r := rows[2]; r[4] != "hold" || r[5] != "-1" || r[8] != "1" || r[10] != tr.Token {
		t.Fatalf("hold row: %q", r)
	}

	resp, body, _ = get(t, srv.URL+"/v1/export?format=jsonl&service=sms&token="+opsTok+"&since=2025-06-01&until=2025-06-02T00:00:00Z")
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if resp.Header.Get("Content-Type") != "application/x-ndjson" || len(lines) != 2 {
		t.Fatalf("jsonl: %v\n%s", resp.Header, body)
	}
	var e admin.ExportedEntry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.Service != "sms" || e.Account != opsTok || e.Seq != 1 || e.Description != "=1+1" {
		t.Fatalf("jsonl line: %+v, %v", e, err)
	}
	if _, body, _ := get(t, srv.URL+"/v1/export?since=2025-06-02"); strings.Count(string(body), "\n") != 1 {
		t.Fatalf("since after every entry: %q", body)
	}
	for _, bad := range []string{"format=xml", "token=a+b+c", "service=Bad!", "since=yesterday"} {
		if resp, body, _ := get(t, srv.URL+"/v1/export?"+bad); resp.StatusCode != 400 || !strings.Contains(string(body), `"invalid"`) {
			t.Fatalf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
}

// An export that fails after its first entry is cut: the client sees an
// error, never a short answer that looks complete.
func TestExportCutOnFailure(t *testing.T) {
	srv, _, _ := newOpsServer(t, &fakeOperator{exportErr: errors.New("disk on fire")})
	_, body, err := get(t, srv.URL+"/v1/export")
	if err == nil {
		t.Fatalf("a failed export read as complete: %q", body)
	}
	// Refused before the first entry: an ordinary error answer.
	srv2, _, _ := newOpsServer(t, &fakeOperator{exportErr: storage.E("export", storage.Unavailable, "ledger closed"), noEntry: true})
	resp, body, err := get(t, srv2.URL+"/v1/export")
	if err != nil || resp.StatusCode != 503 || !strings.Contains(string(body), "ledger closed") {
		t.Fatalf("refused export: %v %d %s", err, resp.StatusCode, body)
	}
	// A failed backup is cut too; one refused before its first byte is an
	// ordinary error answer.
	if _, _, err := get(t, srv.URL+"/v1/backup"); err == nil {
		t.Fatal("a failed backup read as complete")
	}
	resp, body, err = get(t, srv2.URL+"/v1/backup")
	if err != nil || resp.StatusCode != 503 || !strings.Contains(string(body), "ledger closed") {
		t.Fatalf("refused backup: %v %d %s", err, resp.StatusCode, body)
	}
}

func TestOperatorRoutesWithoutOperator(t *testing.T) {
	f := newFixture(t, adminToken, nil)
	for _, p := range []string{"/v1/backup", "/v1/verify", "/v1/export"} {
		f.wantError("GET", p, nil, 503, "unavailable")
	}
}

type fakeOperator struct {
	report    admin.VerifyReport
	grace     time.Duration
	exportErr error
	noEntry   bool
}

func (f *fakeOperator) Backup(ctx context.Context, w io.Writer) error {
	if f.noEntry {
		return f.exportErr
	}
	w.Write([]byte("IAPDBKUP partial"))
	return errors.New("disk on fire")
}

func (f *fakeOperator) Verify(ctx context.Context, grace time.Duration) (admin.VerifyReport, error) {
	f.grace = grace
	return f.report, nil
}

func (f *fakeOperator) Export(ctx context.Context, _ admin.ExportFilter, fn func(storage.Entry) error) error {
	if !f.noEntry {
		if err := fn(storage.Entry{Seq: 1, Service: "sms", Account: opsTok, Kind: storage.EntryRecharge}); err != nil {
			return err
		}
	}
	return f.exportErr
}
