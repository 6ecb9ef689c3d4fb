package postgres

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/iapd/iapd/storage"
)

// AuthorizeClaims creates the claims that are absent and holds r.Amount
// plus the Price of every claim it creates, in one transaction: either all
// of it is committed or none of it. A claim whose (NS, Key) holds a live
// record, or repeats an earlier claim of the call, is not created; its
// result carries the value found. When no claim is created and r.Amount
// is 0, nothing is written and the Transaction is zero (Token "").
//
// Refusals are Authorize's (Forbidden, InsufficientCredit with Credit =
// the amount to hold), and then no claim is written (the account's
// creation on first sight is kept). Invalid as for Authorize and
// PutRecordIfAbsent, for an amount over MaxCredits, or for claims over
// 4 MiB of keys and values. storage/badger's AuthorizeClaims is the
// reference; storagetest's Claims subtests pin both.
//
// The claims are one INSERT … ON CONFLICT DO UPDATE … WHERE expired (the
// arbiter PutRecordIfAbsent uses: of concurrent callers on any node,
// exactly one creates a key), sent with the account's row lock: an
// existing account costs 2 round trips, as Authorize (docs/postgres.md).
func (l *Ledger) AuthorizeClaims(ctx context.Context, r storage.AuthorizeRequest, claims []storage.Claim) (storage.Transaction, []storage.ClaimResult, error) {
	const op = "authorize claims"
	if err := l.enter(op, ctx); err != nil {
		return storage.Transaction{}, nil, err
	}
	defer l.leave()
	if err := r.Check(op); err != nil {
		return storage.Transaction{}, nil, err
	}
	size := 0
	for i := range claims {
		c := &claims[i]
		if err := l.checkRecordPut(op, c.NS, c.Key, c.Value, c.Expires); err != nil {
			return storage.Transaction{}, nil, err
		}
		if err := storage.CheckAmount(op, c.Price); err != nil {
			return storage.Transaction{}, nil, err
		}
		size += len(c.Key) + len(c.Value)
	}
	if size > storage.MaxClaimBytes {
		return storage.Transaction{}, nil, storage.Ef(op, storage.Invalid, "claims of %d bytes exceed %d", size, storage.MaxClaimBytes)
	}
	cs := newClaimSet(claims)

	var out storage.Transaction
	var results []storage.ClaimResult
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		out, results = storage.Transaction{}, nil
		// The account's row lock first (every writer of an account takes
		// it first), then the claims' rows, in one round trip.
		a, found, got, err := cs.claim(tx, r, true, now)
		if err != nil {
			return nil, err
		}
		rs, amount, err := cs.tally(op, r.Amount, got)
		if err != nil {
			return nil, err
		}
		if !anyCreated(rs) && r.Amount == 0 {
			results = rs
			return nil, nil // every claim was there: the statements wrote nothing
		}
		created := false
		if !found {
			// First sight. A refusal must undo the claims and keep the
			// account, so start again in the order that allows it: the
			// account created, a savepoint, the claims (ROLLBACK TO
			// SAVEPOINT on a refusal). Only first sights take a savepoint.
			tx.restart()
			a, created, err = accountForWrite(ctx, op, tx, r.Service, r.Account, r.FirstSight, now)
			if err != nil {
				return nil, err
			}
			tx.queue(nil, "SAVEPOINT iapd_claims")
			if _, _, got, err = cs.claim(tx, r, false, now); err != nil {
				return nil, err
			}
			if rs, amount, err = cs.tally(op, r.Amount, got); err != nil {
				return nil, err
			}
			if !anyCreated(rs) && r.Amount == 0 {
				// Claimed meanwhile by another caller: write nothing, the
				// account included, as when they were found at once.
				tx.restart()
				results = rs
				return nil, nil
			}
		}
		if refusal := holdRefusal(op, &a, r.Service, amount); refusal != nil {
			if !created {
				return nil, refusal
			}
			tx.queue(nil, "ROLLBACK TO SAVEPOINT iapd_claims")
			return refusal, putAccount(ctx, tx, &a, true) // keep the first sight
		}
		h := r
		h.Amount = amount
		out, err = holdIn(ctx, tx, &a, h, now)
		if err != nil {
			return nil, err
		}
		results = rs
		return nil, putAccount(ctx, tx, &a, true)
	})
	if err != nil {
		return storage.Transaction{}, nil, err
	}
	return out, results, nil
}

// claimSet is a call's claims: distinct (NS, Key) in bytewise order (so
// that two calls lock shared keys in the same order), and for each claim
// the index of its first occurrence.
type claimSet struct {
	claims []storage.Claim
	first  []int // first[i]: the index of claim i's first occurrence
	nss    []string
	keys   [][]byte
	values [][]byte
	exps   []pgtype.Timestamptz
}

func newClaimSet(claims []storage.Claim) *claimSet {
	cs := &claimSet{claims: claims, first: make([]int, len(claims))}
	seen := make(map[string]int, len(claims))
	var uniq []int
	for i := range claims {
		k := claims[i].NS + "\x00" + claims[i].Key
		if j, ok := seen[k]; ok {
			cs.first[i] = j
			continue
		}
		seen[k] = i
		cs.first[i] = i
		uniq = append(uniq, i)
	}
	slices.SortFunc(uniq, func(i, j int) int {
		if c := strings.Compare(claims[i].NS, claims[j].NS); c != 0 {
			return c
		}
		return strings.Compare(claims[i].Key, claims[j].Key)
	})
	for _, i := range uniq {
		c := &claims[i]
		v := c.Value
		if v == nil {
			v = []byte{} // a nil element would be a NULL
		}
		e := expiresArg(c.Expires)
		ts := pgtype.Timestamptz{}
		if e != nil {
			ts = pgtype.Timestamptz{Time: *e, Valid: true}
		}
		cs.nss = append(cs.nss, c.NS)
		cs.keys = append(cs.keys, []byte(c.Key))
		cs.values = append(cs.values, v)
		cs.exps = append(cs.exps, ts)
	}
	return cs
}

// claimed is one distinct claim's row after the insert.
type claimed struct {
	value   []byte
	created bool
	read    bool
}

// claim runs, in one round trip (with BEGIN and the queued writes before
// them): with lock, the account's row lock; the claims' insert, which
// creates the absent or expired records and locks the live ones (ON
// CONFLICT DO UPDATE locks a conflicting row even when its WHERE is
// false); then the read of every claimed row, whose values the lock keeps
// as read until the transaction ends. Keyed by NS "\x00" Key.
func (cs *claimSet) claim(tx *wtx, r storage.AuthorizeRequest, lock bool, now time.Time) (a acct, found bool, got map[string]claimed, err error) {
	got = make(map[string]claimed, len(cs.nss))
	var qs []rowsQuery
	if lock {
		qs = append(qs, rowsQuery{
			sql:  "SELECT " + acctCols + " FROM iapd_accounts WHERE service = $1 AND token = $2 FOR UPDATE",
			args: []any{r.Service, r.Account},
			each: func(rows pgx.Rows) (err error) {
				a, err = scanAcct(rows)
				found = err == nil
				return err
			},
		})
	}
	if len(cs.nss) > 0 {
		qs = append(qs, rowsQuery{
			sql: `INSERT INTO iapd_records (ns, key, value, expires)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::timestamptz[])
ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires = excluded.expires
	WHERE iapd_records.expires IS NOT NULL AND iapd_records.expires <= $5
RETURNING ns, key`,
			args: []any{cs.nss, cs.keys, cs.values, cs.exps, now},
			each: func(rows pgx.Rows) error {
				var ns string
				var key []byte
				if err := rows.Scan(&ns, &key); err != nil {
					return err
				}
				got[ns+"\x00"+string(key)] = claimed{created: true}
				return nil
			},
		}, rowsQuery{
			sql:  "SELECT ns, key, value FROM iapd_records WHERE (ns, key) IN (SELECT * FROM unnest($1::text[], $2::bytea[]))",
			args: []any{cs.nss, cs.keys},
			each: func(rows pgx.Rows) error {
				var ns string
				var key, value []byte
				if err := rows.Scan(&ns, &key, &value); err != nil {
					return err
				}
				k := ns + "\x00" + string(key)
				if value == nil {
					value = []byte{}
				}
				c := got[k]
				c.value, c.read = value, true
				got[k] = c
				return nil
			},
		})
	}
	if len(qs) == 0 {
		return a, false, got, nil
	}
	return a, found, got, tx.queries(qs)
}

// tally turns the rows claim read into the call's results and the amount
// to hold: base plus the prices of the claims created.
func (cs *claimSet) tally(op string, base storage.Credits, got map[string]claimed) ([]storage.ClaimResult, storage.Credits, error) {
	rs := make([]storage.ClaimResult, len(cs.claims))
	amount := base
	for i := range cs.claims {
		c := &cs.claims[i]
		if j := cs.first[i]; j != i {
			rs[i] = storage.ClaimResult{Stored: rs[j].Stored}
			continue
		}
		g, ok := got[c.NS+"\x00"+c.Key]
		if !ok || !g.read {
			return nil, 0, errors.New("a claimed record was not read back")
		}
		rs[i] = storage.ClaimResult{Stored: g.value, Created: g.created}
		if g.created {
			if !bytes.Equal(g.value, c.Value) {
				return nil, 0, errors.New("a created claim reads back another value")
			}
			if amount += c.Price; amount > storage.MaxCredits {
				return nil, 0, storage.Ef(op, storage.Invalid, "amount %s out of range", amount)
			}
		}
	}
	return rs, amount, nil
}

func anyCreated(rs []storage.ClaimResult) bool {
	for _, r := range rs {
		if r.Created {
			return true
		}
	}
	return false
}

// holdRefusal is Authorize's decision on the locked account: Forbidden
// for a banned or unregistered account, InsufficientCredit (Credit: the
// amount to hold) when Available is short; nil to hold.
func holdRefusal(op string, a *acct, svc storage.ServiceName, amount storage.Credits) error {
	switch {
	case a.State == storage.Banned:
		return storage.E(op, storage.Forbidden, "account is banned")
	case a.State != storage.Registered:
		return storage.E(op, storage.Forbidden, "account is not registered")
	case a.Available < amount:
		return &storage.Error{Op: op, Kind: storage.InsufficientCredit,
			Msg: "not enough credit", Service: svc, Credit: amount}
	}
	return nil
}

// newHold is the open hold r asks for at now, with a fresh token: what
// every Authorize path stores.
func newHold(r storage.AuthorizeRequest, now time.Time) storage.Transaction {
	return storage.Transaction{
		Token:       newTxnToken(now),
		Service:     r.Service,
		Account:     r.Account,
		State:       storage.Held,
		Amount:      r.Amount,
		Description: r.Description,
		CreatedAt:   now,
		ExpiresAt:   micro(now.Add(r.TTL)),
	}
}

// holdIn queues the hold of r.Amount on the locked account a: the hold's
// row and its entry (Authorize's writes); the caller writes a.
func holdIn(ctx context.Context, tx *wtx, a *acct, r storage.AuthorizeRequest, now time.Time) (storage.Transaction, error) {
	t := newHold(r, now)
	tx.queue(nil, `INSERT INTO iapd_transactions (`+txnCols+`)
VALUES ($1, $2, $3, 'held', $4, 0, $5, $6, $7, NULL)`, t.Token, t.Service, t.Account, t.Amount, t.Description, t.CreatedAt, t.ExpiresAt)
	if _, err := appendEntry(ctx, tx, a, storage.Entry{
		Kind: storage.EntryHold, DAvailable: -r.Amount, DHeld: r.Amount,
		Transaction: t.Token, Description: r.Description,
	}, now); err != nil {
		return t, err
	}
	a.holds++
	return t, nil
}

// restart rolls back what the transaction did so far and drops the queued
// writes: the next statement begins a new transaction on the same
// connection.
func (w *wtx) restart() {
	w.rollback()
	w.begun = false
	w.pending = nil
}
