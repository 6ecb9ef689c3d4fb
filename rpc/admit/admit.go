// Package admit decides who gets a new account and who gets trial
// credit. Every route that sees a token for the first time creates its
// account (PROTOCOL §4.1: Odoo has no other credential than a random
// token), so an anonymous caller could otherwise create accounts without
// end and farm trial credit with fresh tokens.
//
// Ledger wraps a storage.Ledger: Account on a token not yet known passes
// the creation limits (per client address, per dbuuid, in total) and the
// trial policy first; Authorize, whose caller proved a service key (a
// provider), only the trial policy's once-per-database rule; every other
// method, and every call on an existing account, goes straight through. A refused creation is a
// storage.Forbidden error (AccessError on the wire: Odoo shows -1 as the
// balance, and its generic IAP error on paid routes); nothing is created.
//
// Trial credit is granted once per database and service: the first
// account of a (service, dbuuid) claims it durably in storage.Records, and
// later tokens of that database are created without it (FirstSight
// NoTrial). A request without dbuuid gets no trial credit (every Odoo
// version sends its dbuuid). Trials are also bounded per client address
// and in total; an account refused its trial is still created, at 0.
//
// It imports storage and rpc/limit; cmd/iapd wires it between the ledger
// and the handlers.
package admit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
)

// TrialNamespace is the storage.Records namespace of the trial claims:
// one record per (service, SHA-256 of the dbuuid), holding a hash of the
// token that got it.
const TrialNamespace = "trial.granted"

// trialMemory is how long a trial claim is kept: for practical purposes
// for ever (a record expiry must be finite to be swept some day).
const trialMemory = 20 * 365 * 24 * time.Hour

// Table sizes: fixed, whatever the number of callers (24 bytes a slot).
const (
	addressSlots  = 16384
	databaseSlots = 16384
	knownSlots    = 16384
)

// knownFor is how long Authorize trusts that an account it found exists
// (accounts are never deleted; the bound only recycles the slots).
const knownFor = 24 * time.Hour

// Refusal reasons (iap_refusals_total{reason}).
const (
	ReasonAccountAddress  = "account_creation_address"
	ReasonAccountDatabase = "account_creation_database"
	ReasonAccountTotal    = "account_creation_total"
	ReasonTrialDatabase   = "trial_database"
	ReasonTrialNoDatabase = "trial_no_database"
	ReasonTrialAddress    = "trial_address"
	ReasonTrialTotal      = "trial_total"
)

// msgRefused is the error text of a refused creation (shown by Odoo
// versions that show AccessError texts, PROTOCOL §1.4 generation A).
const msgRefused = "Too many new IAP accounts from this address or database: try again later."

// Deps are the collaborators of a Ledger.
type Deps struct {
	Ledger  storage.Ledger  // required: the ledger wrapped
	Records storage.Records // required: where trial claims are kept
	Report  *limit.Reporter // optional: refusals counted and logged
	Now     func() time.Time
}

// Ledger is a storage.Ledger whose account creation and trial credit are
// limited as the package doc says. Safe for concurrent use.
type Ledger struct {
	storage.Ledger
	records storage.Records
	report  *limit.Reporter
	now     func() time.Time

	perAddress  *limit.Table
	perDatabase *limit.Table
	total       *limit.Bucket
	trialAddr   *limit.Table
	trialTotal  *limit.Bucket
	// known marks the accounts Authorize found (a spent bucket): the
	// next authorizes of an account go straight to the ledger, without
	// the lookup (which waits for the pending group commit).
	known *limit.Table
}

// New wraps d.Ledger with the limits of cfg (validated).
func New(cfg limit.Config, d Deps) *Ledger {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	return &Ledger{
		Ledger: d.Ledger, records: d.Records, report: d.Report, now: now,
		perAddress:  limit.NewTable(addressSlots, cfg.AccountsPerAddress),
		perDatabase: limit.NewTable(databaseSlots, cfg.AccountsPerDatabase),
		total:       limit.NewBucket(cfg.AccountsTotal),
		trialAddr:   limit.NewTable(addressSlots, cfg.TrialsPerAddress),
		trialTotal:  limit.NewBucket(cfg.TrialsTotal),
		known:       limit.NewTable(knownSlots, limit.Rate{Burst: 1, Per: knownFor}),
	}
}

// Account returns the account, creating it on first sight if the limits
// allow (Forbidden otherwise), with trial credit if the trial policy
// allows. Errors otherwise as storage.Ledger's.
func (l *Ledger) Account(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, fs storage.FirstSight) (storage.Account, error) {
	a, err := l.Ledger.LookupAccount(ctx, svc, tok)
	if !storage.Is(err, storage.NotFound) {
		return a, err // found, or an error the wrapped Account gives too
	}
	s, err := l.Ledger.Service(ctx, svc)
	if err != nil {
		return storage.Account{}, err // NotFound: unknown service, as Account
	}
	fs, err = l.admit(ctx, s, tok, fs, false)
	if err != nil {
		return storage.Account{}, err
	}
	a, err = l.Ledger.Account(ctx, svc, tok, fs)
	if err != nil && !fs.NoTrial {
		l.unclaim(ctx, svc, tok, fs.DBUUID)
	}
	return a, err
}

// unclaim gives a database its trial claim back when the account that
// claimed it was not created (the creation failed): the claim is removed
// if the account is certainly absent, kept otherwise (never a second
// trial).
func (l *Ledger) unclaim(ctx context.Context, svc storage.ServiceName, tok storage.AccountToken, dbuuid string) {
	if _, err := l.Ledger.LookupAccount(ctx, svc, tok); !storage.Is(err, storage.NotFound) {
		return
	}
	_ = l.records.DeleteRecord(ctx, TrialNamespace, trialKey(svc, dbuuid)) // best effort: kept, the database has no trial
}

// trialKey is the Records key of a database's trial claim for a service.
func trialKey(svc storage.ServiceName, dbuuid string) string {
	sum := sha256.Sum256([]byte(dbuuid))
	return string(svc) + "/" + hex.EncodeToString(sum[:16])
}

// claimant is the value of a trial claim: a hash of the token that made
// it (never the token).
func claimant(tok storage.AccountToken) []byte {
	sum := sha256.Sum256([]byte("iapd-trial\x00" + string(tok)))
	return sum[:16]
}

// Authorize holds credit as storage.Ledger's Authorize does. Its caller
// proved the service key (PROTOCOL §5.1: a service provider, one address
// for all its customers), so an account it creates passes no creation
// limit or trial budget; its trial credit is still once per database, and
// none without dbuuid.
func (l *Ledger) Authorize(ctx context.Context, r storage.AuthorizeRequest) (storage.Transaction, error) {
	var txn storage.Transaction
	err := l.admitted(ctx, r, func(r storage.AuthorizeRequest) (err error) {
		txn, err = l.Ledger.Authorize(ctx, r)
		return err
	})
	return txn, err
}

// claimHolder is the wrapped ledger's AuthorizeClaims (rpc/sendflow's
// ClaimHolder; storage/badger has it).
type claimHolder interface {
	AuthorizeClaims(ctx context.Context, r storage.AuthorizeRequest, claims []storage.Claim) (storage.Transaction, []storage.ClaimResult, error)
}

// AuthorizeClaims is the wrapped ledger's AuthorizeClaims (claims and
// their hold in one change), admitted as Authorize is. Invalid when the
// wrapped ledger has none.
func (l *Ledger) AuthorizeClaims(ctx context.Context, r storage.AuthorizeRequest, claims []storage.Claim) (storage.Transaction, []storage.ClaimResult, error) {
	ch, ok := l.Ledger.(claimHolder)
	if !ok {
		return storage.Transaction{}, nil, storage.E("authorize claims", storage.Invalid, "the ledger cannot hold claims")
	}
	var txn storage.Transaction
	var rs []storage.ClaimResult
	err := l.admitted(ctx, r, func(r storage.AuthorizeRequest) (err error) {
		txn, rs, err = ch.AuthorizeClaims(ctx, r, claims)
		return err
	})
	return txn, rs, err
}

// Unwrap returns the wrapped ledger.
func (l *Ledger) Unwrap() storage.Ledger { return l.Ledger }

// admitted runs hold (an authorize) with r admitted: the trial policy
// decided when the account is new.
func (l *Ledger) admitted(ctx context.Context, r storage.AuthorizeRequest, hold func(storage.AuthorizeRequest) error) error {
	key := string(r.Service) + "\x00" + string(r.Account)
	if !l.known.Spent(key, l.now()) {
		_, err := l.Ledger.LookupAccount(ctx, r.Service, r.Account)
		switch {
		case err == nil:
		case storage.Is(err, storage.NotFound):
			s, err := l.Ledger.Service(ctx, r.Service)
			if err != nil {
				return err
			}
			if r.FirstSight, err = l.admit(ctx, s, r.Account, r.FirstSight, true); err != nil {
				return err
			}
			err = hold(r)
			if err != nil && !r.FirstSight.NoTrial {
				l.unclaim(ctx, r.Service, r.Account, r.FirstSight.DBUUID)
			}
			if err == nil {
				l.known.Take(key, l.now())
			}
			return err
		default:
			return hold(r) // its own error, as without admission
		}
		l.known.Take(key, l.now())
	}
	return hold(r)
}

// admit applies the creation limits, then decides the trial: it returns
// fs with NoTrial set when no trial is to be given. keyed: the caller
// proved a service key (no creation limit, no trial budget).
func (l *Ledger) admit(ctx context.Context, s storage.Service, tok storage.AccountToken, fs storage.FirstSight, keyed bool) (storage.FirstSight, error) {
	const op = "account"
	now := l.now()
	addr := limit.Client(ctx)
	switch {
	case keyed:
	case !l.perAddress.Allow(addr, now):
		l.report.Refuse(ReasonAccountAddress, "account creation refused: too many from one address", "service", s.Name, "client", limit.KeyString(addr))
		return fs, storage.E(op, storage.Forbidden, msgRefused)
	case fs.DBUUID != "" && !l.perDatabase.Allow(fs.DBUUID, now):
		l.report.Refuse(ReasonAccountDatabase, "account creation refused: too many for one database", "service", s.Name, "dbuuid", short(fs.DBUUID), "client", limit.KeyString(addr))
		return fs, storage.E(op, storage.Forbidden, msgRefused)
	case !l.total.Allow(now):
		l.report.Refuse(ReasonAccountTotal, "account creation refused: the global bound is reached", "service", s.Name, "client", limit.KeyString(addr))
		return fs, storage.E(op, storage.Forbidden, msgRefused)
	}
	if !s.AutoRegister || s.TrialCredits <= 0 || fs.NoTrial {
		return fs, nil
	}
	fs.NoTrial = true
	if fs.DBUUID == "" {
		l.report.Refuse(ReasonTrialNoDatabase, "trial credit refused: no dbuuid", "service", s.Name)
		return fs, nil
	}
	// The claim: once per (service, dbuuid), durably. A database that had
	// its trial is told so before the address and global budgets are
	// spent; the same token claiming again (a concurrent first sight)
	// gets it: the ledger creates its account once.
	key, me := trialKey(s.Name, fs.DBUUID), claimant(tok)
	had := func(stored []byte) bool {
		if bytes.Equal(stored, me) {
			return false
		}
		l.report.Refuse(ReasonTrialDatabase, "trial credit refused: this database had its trial", "service", s.Name, "dbuuid", short(fs.DBUUID))
		return true
	}
	stored, err := l.records.GetRecord(ctx, TrialNamespace, key)
	switch {
	case err == nil:
		if had(stored) {
			return fs, nil
		}
	case !storage.Is(err, storage.NotFound):
		return fs, err
	}
	switch {
	case keyed:
	case !l.trialAddr.Allow(addr, now):
		l.report.Refuse(ReasonTrialAddress, "trial credit refused: too many from one address", "service", s.Name, "client", limit.KeyString(addr))
		return fs, nil
	case !l.trialTotal.Allow(now):
		// Before the claim: a database refused here keeps its trial for
		// later (the global bound is an emergency brake).
		l.report.Refuse(ReasonTrialTotal, "trial credit refused: the global bound is reached", "service", s.Name)
		return fs, nil
	}
	stored, created, err := l.records.PutRecordIfAbsent(ctx, TrialNamespace, key, me, now.Add(trialMemory))
	if err != nil {
		return fs, err
	}
	if !created && had(stored) {
		return fs, nil
	}
	fs.NoTrial = false
	return fs, nil
}

// short cuts a caller's dbuuid for a log line.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// LogValue keeps the wrapped ledger out of logs.
func (l *Ledger) LogValue() slog.Value { return slog.StringValue("admit.Ledger") }

var _ storage.Ledger = (*Ledger)(nil)
