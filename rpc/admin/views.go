package admin

import (
	"time"

	"github.com/iapd/iapd/storage"
)

// The JSON shapes of the admin API. Amounts are exact JSON numbers
// (storage.Credits marshals itself); times are RFC 3339 in UTC, omitted
// when unset.

// Service is a service as the admin API shows it. The key is never shown
// here (only once, by create and rotate).
type Service struct {
	Name         storage.ServiceName `json:"name"`
	HasKey       bool                `json:"has_key"`
	AutoRegister bool                `json:"auto_register"`
	TrialCredits storage.Credits     `json:"trial_credits"`
	Description  string              `json:"description"`
	UnitName     string              `json:"unit_name"`
	CreatedAt    string              `json:"created_at,omitempty"`
}

// ServiceKey is the answer of create and rotate: the service and its key,
// shown this once.
type ServiceKey struct {
	Service Service `json:"service"`
	Key     string  `json:"key"`
}

// Alerts are an account's low-credit alert settings.
type Alerts struct {
	Enabled    bool                `json:"enabled"`
	Threshold  storage.Credits     `json:"threshold"`
	Recipients []storage.Recipient `json:"recipients"`
}

// Account is an account and its figures:
// recharged = available + held + captured.
type Account struct {
	Service    storage.ServiceName  `json:"service"`
	Token      storage.AccountToken `json:"token"`
	State      storage.AccountState `json:"state"`
	Recharged  storage.Credits      `json:"recharged"`
	Available  storage.Credits      `json:"available"`
	Held       storage.Credits      `json:"held"`
	Captured   storage.Credits      `json:"captured"`
	Alerts     Alerts               `json:"alerts"`
	SenderName string               `json:"sender_name,omitempty"`
	DBUUID     string               `json:"db_uuid,omitempty"`
	Seq        uint64               `json:"seq"`
	CreatedAt  string               `json:"created_at,omitempty"`
	UpdatedAt  string               `json:"updated_at,omitempty"`
}

// AccountList is a page of accounts; Next, when set, is the "after" of the
// next page.
type AccountList struct {
	Accounts []Account `json:"accounts"`
	Next     string    `json:"next,omitempty"`
}

// Entry is one immutable ledger line. Amount is its effect as a customer
// reads it (storage.Entry.Amount); the four deltas obey
// d_recharged = d_available + d_held + d_captured.
type Entry struct {
	Seq         uint64            `json:"seq"`
	Time        string            `json:"time,omitempty"`
	Kind        storage.EntryKind `json:"kind"`
	Amount      storage.Credits   `json:"amount"`
	DRecharged  storage.Credits   `json:"d_recharged"`
	DAvailable  storage.Credits   `json:"d_available"`
	DHeld       storage.Credits   `json:"d_held"`
	DCaptured   storage.Credits   `json:"d_captured"`
	Transaction string            `json:"transaction,omitempty"`
	Ref         string            `json:"ref,omitempty"`
	Description string            `json:"description,omitempty"`
}

// History is a page of entries, newest first; Next, when non-zero, is the
// "before" of the next (older) page.
type History struct {
	Service storage.ServiceName  `json:"service"`
	Token   storage.AccountToken `json:"token"`
	Entries []Entry              `json:"entries"`
	Next    uint64               `json:"next,omitempty"`
}

// Credit is the answer of POST /v1/account/credit: the entry written (or
// found, for a repeated ref: Replayed, and nothing was changed) and the
// account after it.
type Credit struct {
	Entry    Entry   `json:"entry"`
	Account  Account `json:"account"`
	Replayed bool    `json:"replayed"`
}

// StateChange is the answer of POST /v1/account/{ban,unban,register}: the
// account, and whether this call changed its state (false: it was in that
// state already).
type StateChange struct {
	Account
	Changed bool `json:"changed"`
}

// Transaction is a hold and its outcome.
type Transaction struct {
	Token       string                   `json:"token"`
	Service     storage.ServiceName      `json:"service"`
	Account     storage.AccountToken     `json:"account"`
	State       storage.TransactionState `json:"state"`
	Amount      storage.Credits          `json:"amount"`
	Captured    storage.Credits          `json:"captured"`
	Description string                   `json:"description,omitempty"`
	CreatedAt   string                   `json:"created_at,omitempty"`
	ExpiresAt   string                   `json:"expires_at,omitempty"`
	EndedAt     string                   `json:"ended_at,omitempty"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func serviceView(s storage.Service) Service {
	return Service{
		Name:         s.Name,
		HasKey:       s.HasKey,
		AutoRegister: s.AutoRegister,
		TrialCredits: s.TrialCredits,
		Description:  s.Description,
		UnitName:     s.UnitName,
		CreatedAt:    stamp(s.CreatedAt),
	}
}

func accountView(a storage.Account) Account {
	rec := a.Alerts.Recipients
	if rec == nil {
		rec = []storage.Recipient{}
	}
	return Account{
		Service:    a.Service,
		Token:      a.Token,
		State:      a.State,
		Recharged:  a.Recharged,
		Available:  a.Available,
		Held:       a.Held,
		Captured:   a.Captured,
		Alerts:     Alerts{Enabled: a.Alerts.Enabled, Threshold: a.Alerts.Threshold, Recipients: rec},
		SenderName: a.SenderName,
		DBUUID:     a.DBUUID,
		Seq:        a.Seq,
		CreatedAt:  stamp(a.CreatedAt),
		UpdatedAt:  stamp(a.UpdatedAt),
	}
}

func entryView(e storage.Entry) Entry {
	return Entry{
		Seq:         e.Seq,
		Time:        stamp(e.Time),
		Kind:        e.Kind,
		Amount:      e.Amount(),
		DRecharged:  e.DRecharged,
		DAvailable:  e.DAvailable,
		DHeld:       e.DHeld,
		DCaptured:   e.DCaptured,
		Transaction: e.Transaction,
		Ref:         e.Ref,
		Description: e.Description,
	}
}

func transactionView(t storage.Transaction) Transaction {
	return Transaction{
		Token:       t.Token,
		Service:     t.Service,
		Account:     t.Account,
		State:       t.State,
		Amount:      t.Amount,
		Captured:    t.Captured,
		Description: t.Description,
		CreatedAt:   stamp(t.CreatedAt),
		ExpiresAt:   stamp(t.ExpiresAt),
		EndedAt:     stamp(t.EndedAt),
	}
}
