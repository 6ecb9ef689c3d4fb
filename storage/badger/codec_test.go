package badger

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/iapd/iapd/storage"
)

func TestCodecRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	a := storage.Account{Service: "sms", Token: "tok", State: storage.Banned, Recharged: 10, Available: 3, Held: 2, Captured: 5,
		Alerts:     storage.Alerts{Enabled: true, Threshold: 7, Recipients: []storage.Recipient{{Email: "a@b", Lang: "fr"}, {Email: "c@d"}}},
		SenderName: "ACME", DBUUID: "db", Seq: 42, CreatedAt: at, UpdatedAt: at.Add(time.Hour)}
	for _, sent := range []bool{false, true} {
		r := acct{Account: a, alertSent: sent}
		b := encodeAccount(&r)
		r.figs = figsOf(&r.Account) // what a read records for the aggregates
		if got, err := decodeAcct(b, "sms", "tok"); err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("account: %+v, %v", got, err)
		}
		if got, err := decodeAccount(b, "sms", "tok"); err != nil || !reflect.DeepEqual(got, a) {
			t.Fatalf("account: %+v, %v", got, err)
		}
		// Record format 1 (before ledger format 2) is the same without
		// the flags: it decodes as armed.
		v1 := append([]byte{formatV1}, b[1:len(b)-1]...)
		if got, err := decodeAcct(v1, "sms", "tok"); err != nil || !reflect.DeepEqual(got, acct{Account: a, figs: figsOf(&a)}) {
			t.Fatalf("format 1 account: %+v, %v", got, err)
		}
		if _, err := decodeAcct(append(v1, 0), "sms", "tok"); err == nil {
			t.Fatal("format 1 account with a trailing byte accepted")
		}
	}
	bad := encodeAccount(&acct{Account: a})
	if _, err := decodeAcct(bad[:len(bad)-1], "sms", "tok"); err == nil {
		t.Fatal("format 2 account without flags accepted")
	}
	bad[len(bad)-1] = 2 // an unknown flag
	if _, err := decodeAcct(bad, "sms", "tok"); err == nil {
		t.Fatal("unknown account flag accepted")
	}
	v := storage.Voucher{CodeHash: storage.HashKey("code"), Service: "sms", Amount: 5, Batch: "b", CreatedAt: at,
		ExpiresAt: at.Add(time.Hour), RedeemedAt: at.Add(time.Minute), RedeemedBy: "tok", Entry: 3}
	if got, err := decodeVoucher(encodeVoucher(&v), v.CodeHash); err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("voucher: %+v, %v", got, err)
	}
	n := storage.AlertNotice{ID: 9, Service: "sms", Account: "tok", Available: 1, Threshold: 2,
		Recipients: []storage.Recipient{{Email: "a@b", Lang: "fr"}}, At: at, Attempts: 2, NextTry: at.Add(time.Minute), LastError: "smtp"}
	if got, err := decodeAlert(encodeAlert(&n), 9); err != nil || !reflect.DeepEqual(got, n) {
		t.Fatalf("alert: %+v, %v", got, err)
	}
	if exp, val, err := decodeRecord(encodeRecord(at, []byte("val"))); err != nil || !exp.Equal(at) || string(val) != "val" {
		t.Fatalf("record: %v %q %v", exp, val, err)
	}
	s := storage.Service{Name: "sms", KeyHash: storage.HashKey("k"), HasKey: true, AutoRegister: true, TrialCredits: 9,
		Description: "d", UnitName: "u", CreatedAt: at}
	if got, err := decodeService(encodeService(&s)); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("service: %+v, %v", got, err)
	}
	tx := storage.Transaction{Token: "00112233445566778899aabbccddeeff", Service: "sms", Account: "tok", State: storage.Captured,
		Amount: 5, Captured: 4, Description: "x", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	if got, err := decodeTxn(encodeTxn(&tx), tx.Token); err != nil || !reflect.DeepEqual(got, tx) {
		t.Fatalf("txn: %+v, %v", got, err)
	}
	en := storage.Entry{Seq: 3, Time: at, Service: "sms", Account: "tok", Kind: storage.EntryCapture,
		DRecharged: 0, DAvailable: -1, DHeld: -4, DCaptured: 5, Transaction: tx.Token, Ref: "r", Description: "d"}
	if got, err := decodeEntry(encodeEntry(&en), "sms", "tok", 3); err != nil || !reflect.DeepEqual(got, en) {
		t.Fatalf("entry: %+v, %v", got, err)
	}
	if v, err := decodeSeq(encodeSeq(77)); err != nil || v != 77 {
		t.Fatalf("seq: %d, %v", v, err)
	}
	if v, err := decodeName(encodeName("sms")); err != nil || v != "sms" {
		t.Fatalf("name: %q, %v", v, err)
	}
	// Another format byte or trailing bytes are refused, not misread.
	b := encodeEntry(&en)
	b[0] = 2
	if _, err := decodeEntry(b, "sms", "tok", 3); err == nil {
		t.Fatal("unknown format accepted")
	}
	if _, err := decodeEntry(append(encodeEntry(&en), 0), "sms", "tok", 3); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder: none may panic, and
// whatever decodes must encode back to something that decodes the same.
func FuzzDecode(f *testing.F) {
	a := acct{Account: storage.Account{State: storage.Registered, Alerts: storage.Alerts{Recipients: []storage.Recipient{{Email: "e"}}}, Seq: 1}, alertSent: true}
	v := storage.Voucher{Service: "sms", Amount: 1, RedeemedBy: "t"}
	n := storage.AlertNotice{Service: "sms", Account: "t", Recipients: []storage.Recipient{{Email: "e"}}}
	s := storage.Service{Name: "sms", HasKey: true}
	tx := storage.Transaction{Service: "sms", Account: "t", State: storage.Held}
	en := storage.Entry{Kind: storage.EntryHold, DHeld: 1, DAvailable: -1}
	for _, b := range [][]byte{encodeAccount(&a), encodeService(&s), encodeTxn(&tx), encodeEntry(&en), encodeSeq(5), encodeName("x"), {}, {1},
		encodeVoucher(&v), encodeAlert(&n), encodeRecord(time.Time{}, []byte("r"))} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := decodeAcct(b, "s", "t"); err == nil {
			if a2, err := decodeAcct(encodeAccount(&a), "s", "t"); err != nil || !reflect.DeepEqual(a, a2) {
				t.Fatalf("account round trip: %+v / %+v, %v", a, a2, err)
			}
		}
		var h [32]byte
		if v, err := decodeVoucher(b, h); err == nil {
			if v2, err := decodeVoucher(encodeVoucher(&v), h); err != nil || !reflect.DeepEqual(v, v2) {
				t.Fatalf("voucher round trip: %+v / %+v, %v", v, v2, err)
			}
		}
		if n, err := decodeAlert(b, 1); err == nil {
			if n2, err := decodeAlert(encodeAlert(&n), 1); err != nil || !reflect.DeepEqual(n, n2) {
				t.Fatalf("alert round trip: %+v / %+v, %v", n, n2, err)
			}
		}
		if exp, val, err := decodeRecord(b); err == nil {
			if exp2, val2, err := decodeRecord(encodeRecord(exp, val)); err != nil || !exp.Equal(exp2) || !bytes.Equal(val, val2) {
				t.Fatalf("record round trip: %v %q / %v %q, %v", exp, val, exp2, val2, err)
			}
		}
		if s, err := decodeService(b); err == nil {
			if s2, err := decodeService(encodeService(&s)); err != nil || !reflect.DeepEqual(s, s2) {
				t.Fatalf("service round trip: %+v / %+v, %v", s, s2, err)
			}
		}
		if tx, err := decodeTxn(b, "x"); err == nil {
			if tx2, err := decodeTxn(encodeTxn(&tx), "x"); err != nil || !reflect.DeepEqual(tx, tx2) {
				t.Fatalf("txn round trip: %+v / %+v, %v", tx, tx2, err)
			}
		}
		if en, err := decodeEntry(b, "s", "t", 1); err == nil {
			if en2, err := decodeEntry(encodeEntry(&en), "s", "t", 1); err != nil || !reflect.DeepEqual(en, en2) {
				t.Fatalf("entry round trip: %+v / %+v, %v", en, en2, err)
			}
		}
		_, _ = decodeSeq(b)
		_, _ = decodeName(b)
	})
}
