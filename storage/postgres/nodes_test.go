package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/postgres"
	"github.com/iapd/iapd/storage/postgres/pgtest"
	"github.com/iapd/iapd/storage/storagetest"
)

func cr(n int64) storage.Credits { return storage.Credits(n) * storage.Scale }

// TestSchemaVersions: Migrate is idempotent; NoMigrate refuses a schema
// that is not current; Open and Migrate refuse a schema newer than the
// build knows, changing nothing.
func TestSchemaVersions(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	if _, err := postgres.Open(ctx, postgres.Options{URL: url, NoMigrate: true}); err == nil || !strings.Contains(err.Error(), "iapd migrate") {
		t.Fatalf("NoMigrate on an empty schema: %v, want a refusal naming iapd migrate", err)
	}
	from, to, err := postgres.Migrate(ctx, url)
	if err != nil || from != 0 || to != postgres.SchemaVersion() {
		t.Fatalf("first migrate: %d -> %d, %v", from, to, err)
	}
	if from, to, err = postgres.Migrate(ctx, url); err != nil || from != to || to != postgres.SchemaVersion() {
		t.Fatalf("second migrate: %d -> %d, %v", from, to, err)
	}
	l, err := postgres.Open(ctx, postgres.Options{URL: url, NoMigrate: true})
	if err != nil {
		t.Fatalf("NoMigrate on a current schema: %v", err)
	}
	l.Close()

	exec(t, url, "INSERT INTO iapd_schema (version, name) VALUES (99, '0099_future.sql')")
	var tn *postgres.SchemaTooNewError
	if _, err := postgres.Open(ctx, postgres.Options{URL: url}); !errors.As(err, &tn) || tn.Have != 99 {
		t.Fatalf("Open on a newer schema: %v, want SchemaTooNewError", err)
	}
	if _, _, err := postgres.Migrate(ctx, url); !errors.As(err, &tn) {
		t.Fatalf("Migrate on a newer schema: %v, want SchemaTooNewError", err)
	}
}

// exec runs statements on the schema at url, failing the test on error.
func exec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	if err := execErr(url, sql, args...); err != nil {
		t.Fatal(err)
	}
}

func execErr(url, sql string, args ...any) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// TestConstraints: the schema itself refuses an overdraft, a negative
// hold, an unbalanced account or entry and a second use of a recharge
// ref, whatever a faulty node sends.
func TestConstraints(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	l, err := postgres.Open(ctx, postgres.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "tok", Amount: cr(5), Kind: storage.EntryRecharge, Ref: "r1"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, sql, code string }{
		{"overdraft", "UPDATE iapd_accounts SET available = available - 60000, captured = captured + 60000", "23514"},
		{"negative hold", "UPDATE iapd_accounts SET held = -1, available = available + 1", "23514"},
		{"unbalanced account", "UPDATE iapd_accounts SET available = available + 1", "23514"},
		{"unbalanced entry", "INSERT INTO iapd_entries VALUES ('sms', 'tok', 2, now(), 'capture', 0, 0, 0, 1, '', '', '')", "23514"},
		{"ref reused", "INSERT INTO iapd_entries VALUES ('sms', 'tok', 2, now(), 'recharge', 1, 1, 0, 0, '', 'r1', '')", "23505"},
		{"negative hold amount", "INSERT INTO iapd_transactions VALUES ('0123456789abcdef0123456789abcdef', 'sms', 'tok', 'held', -1, 0, '', now(), now(), NULL)", "23514"},
		{"voucher of no credit", "INSERT INTO iapd_vouchers VALUES (decode(repeat('ab', 32), 'hex'), 'sms', 0, '', now(), NULL, NULL, '', 0)", "23514"},
	} {
		err := execErr(url, c.sql)
		var code string
		if pe := (interface{ SQLState() string })(nil); errors.As(err, &pe) {
			code = pe.SQLState()
		}
		if code != c.code {
			t.Errorf("%s: %v, want SQLSTATE %s", c.what, err, c.code)
		}
	}
	a := storagetest.Audit(t, l, "sms", "tok")
	if a.Available != cr(5) {
		t.Fatalf("after the refused statements: %+v", a)
	}
}

// TestTwoNodes: two ledgers on one database, as two iapd nodes: holds
// raced on one account from both never overdraw it; both sweeping expire
// each hold once; with a lease, DueAlerts hands each alert to one node.
func TestTwoNodes(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	clock := storagetest.NewClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	var nodes [2]*postgres.Ledger
	for i := range nodes {
		l, err := postgres.Open(ctx, postgres.Options{URL: url, Now: clock.Now, AlertLease: time.Minute, KeyCacheTTL: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		nodes[i] = l
	}
	a, b := nodes[0], nodes[1]
	if _, err := a.EnsureService(ctx, storage.Service{Name: "sms", AutoRegister: true}); err != nil {
		t.Fatal(err)
	}
	const credit = 50
	if _, err := b.Recharge(ctx, storage.RechargeRequest{Service: "sms", Account: "hot", Amount: cr(credit), Kind: storage.EntryRecharge}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateAccount(ctx, "sms", "hot", storage.AccountUpdate{Alerts: &storage.Alerts{Enabled: true, Threshold: cr(10)}}); err != nil {
		t.Fatal(err)
	}

	// 8 workers per node each try 10 holds of 1 credit: 160 asked, 50 granted.
	var held, refused atomic.Int64
	var mu sync.Mutex
	var tokens []string
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(l *postgres.Ledger) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				tr, err := l.Authorize(ctx, storage.AuthorizeRequest{Service: "sms", Account: "hot", Amount: cr(1), TTL: time.Minute})
				switch {
				case err == nil:
					held.Add(1)
					mu.Lock()
					tokens = append(tokens, tr.Token)
					mu.Unlock()
				case storage.Is(err, storage.InsufficientCredit):
					refused.Add(1)
				default:
					errc <- err
					return
				}
			}
		}(nodes[w%2])
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if held.Load() != credit || refused.Load() != 160-credit {
		t.Fatalf("%d held, %d refused; want %d and %d", held.Load(), refused.Load(), credit, 160-credit)
	}
	acct := storagetest.Audit(t, a, "sms", "hot")
	if acct.Available != 0 || acct.Held != cr(credit) {
		t.Fatalf("after the race: %+v", acct)
	}

	// One alert for the one crossing, and one node gets it.
	due := [2][]storage.AlertNotice{}
	for i, l := range nodes {
		d, err := l.DueAlerts(ctx, clock.Now(), 10)
		if err != nil {
			t.Fatal(err)
		}
		due[i] = d
	}
	if n := len(due[0]) + len(due[1]); n != 1 {
		t.Fatalf("alerts handed out: node a %d, node b %d; want 1 in all", len(due[0]), len(due[1]))
	}

	// Both nodes sweep at once: every hold expires once.
	clock.Advance(2 * time.Minute)
	var expired atomic.Int64
	var swg sync.WaitGroup
	for i := 0; i < 4; i++ {
		swg.Add(1)
		go func(l *postgres.Ledger) {
			defer swg.Done()
			for {
				n, err := l.ExpireDue(ctx, clock.Now(), 7)
				if err != nil {
					t.Error(err)
					return
				}
				expired.Add(int64(n))
				if n == 0 {
					return
				}
			}
		}(nodes[i%2])
	}
	swg.Wait()
	// A sweeper that found every due hold locked by another stops early:
	// a last pass picks up what is left.
	for {
		n, err := a.ExpireDue(ctx, clock.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		expired.Add(int64(n))
		if n == 0 {
			break
		}
	}
	if expired.Load() != credit {
		t.Fatalf("%d holds expired, want %d", expired.Load(), credit)
	}
	acct = storagetest.Audit(t, b, "sms", "hot")
	if acct.Available != cr(credit) || acct.Held != 0 {
		t.Fatalf("after the sweep: %+v", acct)
	}
	for _, tok := range tokens {
		tr, err := a.Transaction(ctx, tok)
		if err != nil || tr.State != storage.Expired {
			t.Fatalf("hold %s: %+v %v", tok, tr, err)
		}
	}
	// Vouchers and records raced from both nodes: each voucher redeemed
	// once, each record created once.
	var vs []storage.Voucher
	for i := 0; i < 20; i++ {
		vs = append(vs, storage.Voucher{CodeHash: storage.HashKey(fmt.Sprint("code-", i)), Service: "sms", Amount: cr(2)})
	}
	if err := a.CreateVouchers(ctx, vs); err != nil {
		t.Fatal(err)
	}
	var redeemed, created atomic.Int64
	var rwg sync.WaitGroup
	for w := 0; w < 8; w++ {
		rwg.Add(1)
		go func(w int, l *postgres.Ledger) {
			defer rwg.Done()
			for i, v := range vs {
				_, _, err := l.RedeemVoucher(ctx, v.CodeHash, "sms", storage.AccountToken(fmt.Sprint("buyer", w)), clock.Now())
				switch {
				case err == nil:
					redeemed.Add(1)
				case !storage.Is(err, storage.Conflict):
					t.Error(err)
				}
				_, made, err := l.PutRecordIfAbsent(ctx, "sms-uuid", fmt.Sprint("uuid-", i), []byte{byte(w)}, time.Time{})
				if err != nil {
					t.Error(err)
				}
				if made {
					created.Add(1)
				}
			}
		}(w, nodes[w%2])
	}
	rwg.Wait()
	if redeemed.Load() != int64(len(vs)) || created.Load() != int64(len(vs)) {
		t.Fatalf("%d redemptions and %d records created, want %d each", redeemed.Load(), created.Load(), len(vs))
	}
	var bought storage.Credits
	for w := 0; w < 8; w++ {
		if acct, err := b.LookupAccount(ctx, "sms", storage.AccountToken(fmt.Sprint("buyer", w))); err == nil {
			bought += storagetest.Audit(t, b, "sms", acct.Token).Recharged
		}
	}
	if bought != cr(2)*storage.Credits(len(vs)) {
		t.Fatalf("buyers got %s, want %s", bought, cr(2)*storage.Credits(len(vs)))
	}

	// A key rotated on one node stops working on the other once its
	// cache entry ages out (KeyCacheTTL), and at once on the node itself.
	old, next := [32]byte{1}, [32]byte{2}
	if err := a.SetServiceKey(ctx, "sms", old); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ServiceByKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := a.SetServiceKey(ctx, "sms", next); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ServiceByKey(ctx, old); !storage.Is(err, storage.Unauthorized) {
		t.Fatalf("old key on the rotating node: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := b.ServiceByKey(ctx, old)
		if storage.Is(err, storage.Unauthorized) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("old key on the other node: %v", err)
		}
	}
	if s, err := b.ServiceByKey(ctx, next); err != nil || s.Name != "sms" {
		t.Fatalf("new key on the other node: %+v %v", s, err)
	}

	r, err := a.Verify(ctx, 0)
	if err != nil || !r.Clean() || r.Warnings != 0 {
		t.Fatalf("verify: %+v %v", r, err)
	}
}

// TestSecretsNotEchoed: the URL's password is in no error and no redacted
// form of it.
func TestSecretsNotEchoed(t *testing.T) {
	const pw = "Sup3r-s3cret-pw"
	for _, u := range []string{
		"postgres://iapd:" + pw + "@127.0.0.1:1/iapd?connect_timeout=2",
		"postgres://iapd@127.0.0.1:1/iapd?password=" + pw + "&connect_timeout=2",
		"postgres://iapd:" + pw + "@127.0.0.1:1/iapd?bogus_param=%zz",
	} {
		if r := postgres.Redact(u); strings.Contains(r, pw) {
			t.Errorf("Redact(%q) = %q", u, r)
		}
		l, err := postgres.Open(context.Background(), postgres.Options{URL: u})
		if err == nil {
			l.Close()
			t.Fatalf("Open(%q) succeeded", u)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Open error shows the password: %v", err)
		}
		if !storage.Is(err, storage.Unavailable) && !storage.Is(err, storage.Invalid) {
			t.Errorf("Open(%q): %v (kind %v), want Unavailable or Invalid", u, err, storage.KindOf(err))
		}
	}
}

// TestConcurrentMigration: nodes starting together on an empty database
// migrate it once (the advisory lock) and all open.
func TestConcurrentMigration(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Schema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := postgres.Open(ctx, postgres.Options{URL: url})
			if err == nil {
				err = l.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, max int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM iapd_schema").Scan(&rows, &max); err != nil {
		t.Fatal(err)
	}
	if rows != postgres.SchemaVersion() || max != postgres.SchemaVersion() {
		t.Fatalf("iapd_schema: %d rows up to version %d, want each of %d once", rows, max, postgres.SchemaVersion())
	}
}
