package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/iapd/iapd/storage"
)

// Values are a compact binary encoding: a leading format byte (formatV1)
// followed by the fields in a fixed order, integers as (zig-zag) varints,
// strings as a uvarint length and the bytes, times as a presence byte and
// the UnixNano varint. A later format gets a new leading byte and the
// decoders keep reading the old one, so migrations can be lazy.
//
// Account records are written in formatV2: the fields of formatV1 followed
// by a uvarint of flags (acctAlertSent). A formatV1 account record (written
// before ledger format 2) decodes with no flag set: its alert armed.
const (
	formatV1 byte = 1
	formatV2 byte = 2
)

// Account record flags (formatV2).
const (
	acctAlertSent = 1 << iota // acct.alertSent
	acctFlags     = acctAlertSent
)

var errCorrupt = errors.New("corrupt record")

type encoder struct{ b []byte }

func newEncoder(size int) *encoder {
	e := &encoder{b: make([]byte, 0, size)}
	e.b = append(e.b, formatV1)
	return e
}

func (e *encoder) uint(v uint64)             { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)               { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) credits(v storage.Credits) { e.int(int64(v)) }
func (e *encoder) str(v string) {
	e.uint(uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.int(t.UnixNano())
}

type decoder struct {
	b   []byte
	err error
}

func newDecoder(b []byte) *decoder { return newDecoderUpTo(b, formatV1) }

// newDecoderUpTo accepts the formats formatV1 to max; the caller reads the
// format from the value's first byte.
func newDecoderUpTo(b []byte, max byte) *decoder {
	d := &decoder{b: b}
	if len(b) == 0 {
		d.err = fmt.Errorf("%w: empty value", errCorrupt)
	} else if b[0] < formatV1 || b[0] > max {
		d.err = fmt.Errorf("%w: unknown format %d", errCorrupt, b[0])
	} else {
		d.b = b[1:]
	}
	return d
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) credits() storage.Credits { return storage.Credits(d.int()) }

func (d *decoder) str() string {
	n := d.uint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("string length")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bool")
	return false
}

func (d *decoder) time() time.Time {
	if !d.bool() {
		return time.Time{}
	}
	return time.Unix(0, d.int()).UTC()
}

// done reports the first error, or an error if bytes are left over.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return d.err
}

// Records. Each encodeX/decodeX pair is the whole format of one table's
// values; the key supplies the fields not stored (names, tokens, seq).

func encodeService(s *storage.Service) []byte {
	e := newEncoder(64 + len(s.Name) + len(s.Description) + len(s.UnitName))
	e.str(string(s.Name))
	e.bool(s.HasKey)
	if s.HasKey {
		e.b = append(e.b, s.KeyHash[:]...)
	}
	e.bool(s.AutoRegister)
	e.credits(s.TrialCredits)
	e.str(s.Description)
	e.str(s.UnitName)
	e.time(s.CreatedAt)
	return e.b
}

func decodeService(b []byte) (storage.Service, error) {
	d := newDecoder(b)
	var s storage.Service
	s.Name = storage.ServiceName(d.str())
	s.HasKey = d.bool()
	if s.HasKey {
		if d.err == nil && len(d.b) < 32 {
			d.fail("key hash")
		}
		if d.err == nil {
			copy(s.KeyHash[:], d.b[:32])
			d.b = d.b[32:]
		}
	}
	s.AutoRegister = d.bool()
	s.TrialCredits = d.credits()
	s.Description = d.str()
	s.UnitName = d.str()
	s.CreatedAt = d.time()
	return s, d.done()
}

func encodeAccount(a *acct) []byte {
	e := newEncoder(96 + len(a.SenderName) + len(a.DBUUID) + 32*len(a.Alerts.Recipients))
	e.b[0] = formatV2
	e.str(string(a.State))
	e.credits(a.Recharged)
	e.credits(a.Available)
	e.credits(a.Held)
	e.credits(a.Captured)
	e.bool(a.Alerts.Enabled)
	e.credits(a.Alerts.Threshold)
	e.uint(uint64(len(a.Alerts.Recipients)))
	for _, r := range a.Alerts.Recipients {
		e.str(r.Email)
		e.str(r.Lang)
	}
	e.str(a.SenderName)
	e.str(a.DBUUID)
	e.uint(a.Seq)
	e.time(a.CreatedAt)
	e.time(a.UpdatedAt)
	var flags uint64
	if a.alertSent {
		flags |= acctAlertSent
	}
	e.uint(flags)
	return e.b
}

// decodeAccount decodes an account record; svc and tok come from the key.
func decodeAccount(b []byte, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error) {
	a, err := decodeAcct(b, svc, tok)
	return a.Account, err
}

// decodeAcct decodes an account record with the ledger's own state.
func decodeAcct(b []byte, svc storage.ServiceName, tok storage.AccountToken) (acct, error) {
	d := newDecoderUpTo(b, formatV2)
	a := acct{Account: storage.Account{Service: svc, Token: tok}}
	a.State = storage.AccountState(d.str())
	a.Recharged = d.credits()
	a.Available = d.credits()
	a.Held = d.credits()
	a.Captured = d.credits()
	a.Alerts.Enabled = d.bool()
	a.Alerts.Threshold = d.credits()
	n := d.uint()
	if n > uint64(len(d.b)) { // each recipient takes at least two bytes
		d.fail("recipient count")
	}
	if d.err == nil && n > 0 {
		a.Alerts.Recipients = make([]storage.Recipient, n)
		for i := range a.Alerts.Recipients {
			a.Alerts.Recipients[i].Email = d.str()
			a.Alerts.Recipients[i].Lang = d.str()
		}
	}
	a.SenderName = d.str()
	a.DBUUID = d.str()
	a.Seq = d.uint()
	a.CreatedAt = d.time()
	a.UpdatedAt = d.time()
	if d.err == nil && b[0] == formatV2 {
		flags := d.uint()
		if flags&^acctFlags != 0 {
			d.fail("account flags")
		}
		a.alertSent = flags&acctAlertSent != 0
	}
	a.figs = figsOf(&a.Account) // flat.go
	return a, d.done()
}

func encodeTxn(t *storage.Transaction) []byte {
	e := newEncoder(80 + len(t.Service) + len(t.Account) + len(t.Description))
	e.str(string(t.Service))
	e.str(string(t.Account))
	e.str(string(t.State))
	e.credits(t.Amount)
	e.credits(t.Captured)
	e.str(t.Description)
	e.time(t.CreatedAt)
	e.time(t.ExpiresAt)
	e.time(t.EndedAt)
	return e.b
}

// decodeTxn decodes a transaction record; token comes from the key.
func decodeTxn(b []byte, token string) (storage.Transaction, error) {
	d := newDecoder(b)
	t := storage.Transaction{Token: token}
	t.Service = storage.ServiceName(d.str())
	t.Account = storage.AccountToken(d.str())
	t.State = storage.TransactionState(d.str())
	t.Amount = d.credits()
	t.Captured = d.credits()
	t.Description = d.str()
	t.CreatedAt = d.time()
	t.ExpiresAt = d.time()
	t.EndedAt = d.time()
	return t, d.done()
}

func encodeEntry(en *storage.Entry) []byte {
	e := newEncoder(64 + len(en.Transaction) + len(en.Ref) + len(en.Description))
	e.time(en.Time)
	e.str(string(en.Kind))
	e.credits(en.DRecharged)
	e.credits(en.DAvailable)
	e.credits(en.DHeld)
	e.credits(en.DCaptured)
	e.str(en.Transaction)
	e.str(en.Ref)
	e.str(en.Description)
	return e.b
}

// decodeEntry decodes an entry record; service, token and seq come from
// the key.
func decodeEntry(b []byte, svc storage.ServiceName, tok storage.AccountToken, seq uint64) (storage.Entry, error) {
	d := newDecoder(b)
	en := storage.Entry{Seq: seq, Service: svc, Account: tok}
	en.Time = d.time()
	en.Kind = storage.EntryKind(d.str())
	en.DRecharged = d.credits()
	en.DAvailable = d.credits()
	en.DHeld = d.credits()
	en.DCaptured = d.credits()
	en.Transaction = d.str()
	en.Ref = d.str()
	en.Description = d.str()
	return en, d.done()
}

// encodeSeq and decodeSeq are the value of a recharge-ref index key.
func encodeSeq(seq uint64) []byte {
	e := newEncoder(11)
	e.uint(seq)
	return e.b
}

func decodeSeq(b []byte) (uint64, error) {
	d := newDecoder(b)
	v := d.uint()
	if d.err == nil && (v == 0 || v == math.MaxUint64) {
		d.fail("seq")
	}
	return v, d.done()
}

// encodeName and decodeName are the value of a key-hash index key.
func encodeName(name storage.ServiceName) []byte {
	e := newEncoder(2 + len(name))
	e.str(string(name))
	return e.b
}

func decodeName(b []byte) (storage.ServiceName, error) {
	d := newDecoder(b)
	s := d.str()
	return storage.ServiceName(s), d.done()
}

// encodeRecord and decodeRecord are the value of a bookkeeping record
// (kv.go): its expiry (zero: never) and the caller's bytes.
func encodeRecord(expires time.Time, value []byte) []byte {
	e := newEncoder(16 + len(value))
	e.time(expires)
	e.uint(uint64(len(value)))
	e.b = append(e.b, value...)
	return e.b
}

// decodeRecord decodes a record; value is a fresh slice (never nil).
func decodeRecord(b []byte) (expires time.Time, value []byte, err error) {
	d := newDecoder(b)
	expires = d.time()
	n := d.uint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("value length")
	}
	if d.err == nil {
		value = append(make([]byte, 0, n), d.b[:n]...)
		d.b = d.b[n:]
	}
	return expires, value, d.done()
}

func encodeVoucher(v *storage.Voucher) []byte {
	e := newEncoder(64 + len(v.Service) + len(v.Batch) + len(v.RedeemedBy))
	e.str(string(v.Service))
	e.credits(v.Amount)
	e.str(v.Batch)
	e.time(v.CreatedAt)
	e.time(v.ExpiresAt)
	e.time(v.RedeemedAt)
	e.str(string(v.RedeemedBy))
	e.uint(v.Entry)
	return e.b
}

// decodeVoucher decodes a voucher record; the code hash comes from the key.
func decodeVoucher(b []byte, h [32]byte) (storage.Voucher, error) {
	d := newDecoder(b)
	v := storage.Voucher{CodeHash: h}
	v.Service = storage.ServiceName(d.str())
	v.Amount = d.credits()
	v.Batch = d.str()
	v.CreatedAt = d.time()
	v.ExpiresAt = d.time()
	v.RedeemedAt = d.time()
	v.RedeemedBy = storage.AccountToken(d.str())
	v.Entry = d.uint()
	return v, d.done()
}

// encodeAlert and decodeAlert are the value of a queued alert; the id
// comes from the key.
func encodeAlert(n *storage.AlertNotice) []byte {
	e := newEncoder(64 + len(n.Service) + len(n.Account) + len(n.LastError) + 32*len(n.Recipients))
	e.str(string(n.Service))
	e.str(string(n.Account))
	e.credits(n.Available)
	e.credits(n.Threshold)
	e.uint(uint64(len(n.Recipients)))
	for _, r := range n.Recipients {
		e.str(r.Email)
		e.str(r.Lang)
	}
	e.time(n.At)
	e.uint(uint64(n.Attempts))
	e.time(n.NextTry)
	e.str(n.LastError)
	return e.b
}

func decodeAlert(b []byte, id uint64) (storage.AlertNotice, error) {
	d := newDecoder(b)
	n := storage.AlertNotice{ID: id}
	n.Service = storage.ServiceName(d.str())
	n.Account = storage.AccountToken(d.str())
	n.Available = d.credits()
	n.Threshold = d.credits()
	c := d.uint()
	if c > uint64(len(d.b)) { // each recipient takes at least two bytes
		d.fail("recipient count")
	}
	if d.err == nil && c > 0 {
		n.Recipients = make([]storage.Recipient, c)
		for i := range n.Recipients {
			n.Recipients[i].Email = d.str()
			n.Recipients[i].Lang = d.str()
		}
	}
	n.At = d.time()
	attempts := d.uint()
	if attempts > math.MaxInt32 {
		d.fail("attempts")
	}
	n.Attempts = int(attempts)
	n.NextTry = d.time()
	n.LastError = d.str()
	return n, d.done()
}
