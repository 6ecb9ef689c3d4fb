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
const formatV1 byte = 1

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

func newDecoder(b []byte) *decoder {
	d := &decoder{b: b}
	if len(b) == 0 {
		d.err = fmt.Errorf("%w: empty value", errCorrupt)
	} else if b[0] != formatV1 {
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

func encodeAccount(a *storage.Account) []byte {
	e := newEncoder(96 + len(a.SenderName) + len(a.DBUUID) + 32*len(a.Alerts.Recipients))
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
	return e.b
}

// decodeAccount decodes an account record; svc and tok come from the key.
func decodeAccount(b []byte, svc storage.ServiceName, tok storage.AccountToken) (storage.Account, error) {
	d := newDecoder(b)
	a := storage.Account{Service: svc, Token: tok}
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
