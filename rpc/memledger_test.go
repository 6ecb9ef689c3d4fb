package rpc

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iapd/iapd/storage"
)

// memLedger is a test-only storage.Ledger kept in memory, following the
// contract of storage.Ledger, for the tests that need determinism or speed
// rather than the real backend (golden files, the fuzz target) and for
// wrapping with failing methods. The end-to-end tests use Badger
// (testLedger).
type memLedger struct {
	mu       sync.Mutex
	now      func() time.Time
	services map[storage.ServiceName]storage.Service
	accounts map[storage.ServiceName]map[storage.AccountToken]*storage.Account
	txns     map[string]*storage.Transaction
	refs     map[string]storage.Entry
	closed   bool
}

func newMemLedger() *memLedger {
	return &memLedger{
		now:      time.Now,
		services: map[storage.ServiceName]storage.Service{},
		accounts: map[storage.ServiceName]map[storage.AccountToken]*storage.Account{},
		txns:     map[string]*storage.Transaction{},
		refs:     map[string]storage.Entry{},
	}
}

var _ storage.Ledger = (*memLedger)(nil)

func (l *memLedger) check(op string) error {
	if l.closed {
		return storage.E(op, storage.Unavailable, "closed")
	}
	return nil
}

func (l *memLedger) EnsureService(_ context.Context, s storage.Service) (storage.Service, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("ensure service"); err != nil {
		return storage.Service{}, err
	}
	if !storage.ValidServiceName(string(s.Name)) {
		return storage.Service{}, storage.E("ensure service", storage.Invalid, "bad name")
	}
	if old, ok := l.services[s.Name]; ok {
		s.KeyHash, s.HasKey, s.CreatedAt = old.KeyHash, old.HasKey, old.CreatedAt
	} else {
		s.KeyHash, s.HasKey, s.CreatedAt = [32]byte{}, false, l.now()
	}
	l.services[s.Name] = s
	return s, nil
}

func (l *memLedger) Service(_ context.Context, name storage.ServiceName) (storage.Service, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.services[name]
	if !ok {
		return s, storage.E("service", storage.NotFound, "unknown service")
	}
	return s, nil
}

func (l *memLedger) Services(context.Context) ([]storage.Service, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []storage.Service
	for _, s := range l.services {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b storage.Service) int { return strings.Compare(string(a.Name), string(b.Name)) })
	return out, nil
}

func (l *memLedger) SetServiceKey(_ context.Context, name storage.ServiceName, h [32]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.services[name]
	if !ok {
		return storage.E("set key", storage.NotFound, "unknown service")
	}
	for n, o := range l.services {
		if n != name && o.HasKey && o.KeyHash == h {
			return storage.E("set key", storage.Exists, "key in use")
		}
	}
	s.KeyHash, s.HasKey = h, true
	l.services[name] = s
	return nil
}

func (l *memLedger) ServiceByKey(_ context.Context, h [32]byte) (storage.Service, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("service by key"); err != nil {
		return storage.Service{}, err
	}
	for _, s := range l.services {
		if s.HasKey && s.KeyHash == h {
			return s, nil
		}
	}
	return storage.Service{}, storage.E("service by key", storage.Unauthorized, "no service has this key")
}

// account returns the account, creating it; l.mu held.
func (l *memLedger) account(op string, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (*storage.Account, error) {
	if err := l.check(op); err != nil {
		return nil, err
	}
	s, ok := l.services[svc]
	if !ok {
		return nil, storage.E(op, storage.NotFound, "unknown service")
	}
	m := l.accounts[svc]
	if m == nil {
		m = map[storage.AccountToken]*storage.Account{}
		l.accounts[svc] = m
	}
	if a := m[tok]; a != nil {
		return a, nil
	}
	now := l.now()
	a := &storage.Account{Service: svc, Token: tok, State: storage.Unregistered, DBUUID: fs.DBUUID, CreatedAt: now, UpdatedAt: now}
	if s.AutoRegister {
		a.State = storage.Registered
		if !fs.NoTrial {
			a.Recharged, a.Available = s.TrialCredits, s.TrialCredits
		}
	}
	m[tok] = a
	return a, nil
}

func (l *memLedger) Account(_ context.Context, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (storage.Account, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, err := l.account("account", svc, tok, fs)
	if err != nil {
		return storage.Account{}, err
	}
	return *a, nil
}

func (l *memLedger) LookupAccount(_ context.Context, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.accounts[svc][tok]
	if a == nil {
		return storage.Account{}, storage.E("lookup", storage.NotFound, "no account")
	}
	return *a, nil
}

func (l *memLedger) AccountsByToken(_ context.Context, tok storage.AccountToken) ([]storage.Account, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("accounts by token"); err != nil {
		return nil, err
	}
	var out []storage.Account
	for _, m := range l.accounts {
		if a := m[tok]; a != nil {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b storage.Account) int { return strings.Compare(string(a.Service), string(b.Service)) })
	return out, nil
}

func (l *memLedger) TokenByHash(_ context.Context, h [sha1.Size]byte) (storage.AccountToken, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("token by hash"); err != nil {
		return "", err
	}
	for _, m := range l.accounts {
		for tok := range m {
			if storage.HashToken(tok) == h {
				return tok, nil
			}
		}
	}
	return "", storage.E("token by hash", storage.NotFound, "no account")
}

func (l *memLedger) Accounts(_ context.Context, f storage.AccountFilter) ([]storage.Account, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []storage.Account
	for svc, m := range l.accounts {
		if f.Service != "" && svc != f.Service {
			continue
		}
		for _, a := range m {
			if f.State == "" || a.State == f.State {
				out = append(out, *a)
			}
		}
	}
	return out, nil
}

func (l *memLedger) UpdateAccount(_ context.Context, svc storage.ServiceName, tok storage.AccountToken, u storage.AccountUpdate) (storage.Account, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.accounts[svc][tok]
	if a == nil {
		return storage.Account{}, storage.E("update", storage.NotFound, "no account")
	}
	if u.State != nil {
		if !u.State.Valid() {
			return storage.Account{}, storage.E("update", storage.Invalid, "bad state")
		}
		a.State = *u.State
	}
	if u.Alerts != nil {
		a.Alerts = *u.Alerts
		a.Alerts.Recipients = slices.Clone(u.Alerts.Recipients)
	}
	if u.SenderName != nil {
		a.SenderName = *u.SenderName
	}
	a.UpdatedAt = l.now()
	return *a, nil
}

func (l *memLedger) Recharge(_ context.Context, r storage.RechargeRequest) (storage.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Ref != "" {
		if e, ok := l.refs[string(r.Service)+"/"+string(r.Account)+"/"+r.Ref]; ok {
			if e.DRecharged != r.Amount || e.Kind != r.Kind {
				return storage.Entry{}, storage.E("recharge", storage.Conflict, "ref reused")
			}
			return e, nil
		}
	}
	if r.Kind == "" {
		r.Kind = storage.EntryRecharge
	}
	if (r.Kind == storage.EntryRecharge && r.Amount <= 0) || r.Amount == 0 {
		return storage.Entry{}, storage.E("recharge", storage.Invalid, "bad amount")
	}
	a, err := l.account("recharge", r.Service, r.Account, storage.FirstSight{})
	if err != nil {
		return storage.Entry{}, err
	}
	if a.Available+r.Amount < 0 {
		return storage.Entry{}, &storage.Error{Op: "recharge", Kind: storage.InsufficientCredit, Service: r.Service, Credit: -r.Amount}
	}
	a.State = storage.Registered
	a.Recharged += r.Amount
	a.Available += r.Amount
	a.Seq++
	e := storage.Entry{Seq: a.Seq, Time: l.now(), Service: r.Service, Account: r.Account, Kind: r.Kind,
		DRecharged: r.Amount, DAvailable: r.Amount, Ref: r.Ref, Description: r.Description}
	if r.Ref != "" {
		l.refs[string(r.Service)+"/"+string(r.Account)+"/"+r.Ref] = e
	}
	return e, nil
}

func (l *memLedger) Authorize(_ context.Context, r storage.AuthorizeRequest) (storage.Transaction, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Amount < 0 || r.TTL <= 0 {
		return storage.Transaction{}, storage.E("authorize", storage.Invalid, "bad amount or ttl")
	}
	a, err := l.account("authorize", r.Service, r.Account, r.FirstSight)
	if err != nil {
		return storage.Transaction{}, err
	}
	if a.State != storage.Registered {
		return storage.Transaction{}, storage.E("authorize", storage.Forbidden, "account not registered")
	}
	if a.Available < r.Amount {
		return storage.Transaction{}, &storage.Error{Op: "authorize", Kind: storage.InsufficientCredit, Msg: "insufficient credit", Service: r.Service, Credit: r.Amount}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	now := l.now()
	t := &storage.Transaction{Token: hex.EncodeToString(b[:]), Service: r.Service, Account: r.Account, State: storage.Held,
		Amount: r.Amount, Description: r.Description, CreatedAt: now, ExpiresAt: now.Add(r.TTL)}
	a.Available -= r.Amount
	a.Held += r.Amount
	a.Seq++
	l.txns[t.Token] = t
	return *t, nil
}

// expireIfDue ends a held transaction past its expiry; l.mu held.
func (l *memLedger) expireIfDue(t *storage.Transaction, now time.Time) {
	if t.State == storage.Held && !now.Before(t.ExpiresAt) {
		a := l.accounts[t.Service][t.Account]
		a.Held -= t.Amount
		a.Available += t.Amount
		t.State, t.EndedAt = storage.Expired, now
	}
}

func (l *memLedger) Capture(_ context.Context, r storage.CaptureRequest) (storage.Transaction, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("capture"); err != nil {
		return storage.Transaction{}, err
	}
	t := l.txns[r.Transaction]
	if t == nil || t.Service != r.Service {
		return storage.Transaction{}, storage.E("capture", storage.NotFound, "")
	}
	l.expireIfDue(t, l.now())
	amount := t.Amount
	if r.Amount != nil {
		amount = *r.Amount
	}
	switch t.State {
	case storage.Captured:
		if t.Captured == amount {
			return *t, nil
		}
		return storage.Transaction{}, storage.E("capture", storage.Conflict, "")
	case storage.Cancelled, storage.Expired:
		return storage.Transaction{}, storage.E("capture", storage.Conflict, "")
	}
	a := l.accounts[t.Service][t.Account]
	if amount > t.Amount && a.State != storage.Registered {
		return storage.Transaction{}, storage.E("capture", storage.Forbidden, "account not registered: a capture may not exceed its hold")
	}
	if extra := amount - t.Amount; extra > a.Available {
		return storage.Transaction{}, &storage.Error{Op: "capture", Kind: storage.InsufficientCredit, Service: t.Service, Credit: amount}
	}
	a.Held -= t.Amount
	a.Available += t.Amount - amount
	a.Captured += amount
	t.State, t.Captured, t.EndedAt = storage.Captured, amount, l.now()
	return *t, nil
}

func (l *memLedger) Cancel(_ context.Context, svc storage.ServiceName, txn string) (storage.Transaction, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check("cancel"); err != nil {
		return storage.Transaction{}, err
	}
	t := l.txns[txn]
	if t == nil || t.Service != svc {
		return storage.Transaction{}, storage.E("cancel", storage.NotFound, "")
	}
	l.expireIfDue(t, l.now())
	switch t.State {
	case storage.Cancelled, storage.Expired:
		return *t, nil
	case storage.Captured:
		return storage.Transaction{}, storage.E("cancel", storage.Conflict, "")
	}
	a := l.accounts[t.Service][t.Account]
	a.Held -= t.Amount
	a.Available += t.Amount
	t.State, t.EndedAt = storage.Cancelled, l.now()
	return *t, nil
}

func (l *memLedger) Transaction(_ context.Context, txn string) (storage.Transaction, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.txns[txn]
	if t == nil {
		return storage.Transaction{}, storage.E("transaction", storage.NotFound, "")
	}
	return *t, nil
}

func (l *memLedger) ExpireDue(_ context.Context, now time.Time, max int) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, t := range l.txns {
		if n >= max {
			break
		}
		if t.State == storage.Held && !now.Before(t.ExpiresAt) {
			l.expireIfDue(t, now)
			n++
		}
	}
	return n, nil
}

func (l *memLedger) History(context.Context, storage.ServiceName, storage.AccountToken, storage.HistoryQuery) ([]storage.Entry, error) {
	return nil, nil
}

func (l *memLedger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}
