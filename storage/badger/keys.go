package badger

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/iapd/iapd/storage"
)

// Key layout. Every key starts with one prefix byte naming its table; the
// parts after it are concatenated raw. A service name never contains 0x00
// (ValidServiceName) and neither does an account token (printable ASCII,
// ValidAccountToken), so 0x00 separates variable-length parts and keeps the
// (service, token) order of the key bytes equal to the order of the names.
//
//	's' service                                  → service record
//	'k' keyhash[32]                              → service name (index; one key per service)
//	'a' service 0x00 token                       → account record (holds Seq, the entry counter)
//	'i' token 0x00 service                       → empty (index for AccountsByToken)
//	't' txn[16]                                  → transaction record (the hold; txn is the token, hex-decoded)
//	'x' expiresAt[8] txn[16]                     → empty (open holds by expiry; deleted when the hold ends)
//	'e' service 0x00 token 0x00 seq[8]           → entry record (seq big-endian, 1, 2, …)
//	'r' service 0x00 token 0x00 ref              → entry seq, uvarint (recharge idempotency)
//	'c' codehash[32]                             → voucher record (vouchers.go)
//	'n' id[8]                                    → queued low-credit alert (alerts.go; id big-endian)
//	'd' namespace 0x00 key                       → bookkeeping record (kv.go: expiry and value)
//	'y' expires[8] namespace 0x00 key            → empty (records with an expiry, by expiry)
//	'h' sha1(token)[20] token                    → empty (hashed-token index; flat.go)
//	'g' service 0x00 slot[2]                     → a share of the service's aggregate figures (flat.go)
//
// expiresAt is UnixNano as big-endian uint64 with the sign bit flipped, so
// byte order is time order. There is no key every write touches: the entry
// counter lives in each account record.
const (
	pService   = 's'
	pKeyHash   = 'k'
	pAccount   = 'a'
	pTokenIdx  = 'i'
	pTxn       = 't'
	pExpiry    = 'x'
	pEntry     = 'e'
	pRechRef   = 'r'
	pVoucher   = 'c'
	pAlert     = 'n'
	pRecord    = 'd'
	pRecExpiry = 'y'
	txnIDBytes = 16
)

func serviceKey(name storage.ServiceName) []byte {
	k := make([]byte, 0, 1+len(name))
	k = append(k, pService)
	return append(k, name...)
}

func keyHashKey(h [32]byte) []byte {
	k := make([]byte, 0, 33)
	k = append(k, pKeyHash)
	return append(k, h[:]...)
}

// accountPrefix is 'a' service 0x00; with svc empty it is 'a' (all services).
func accountPrefix(svc storage.ServiceName) []byte {
	if svc == "" {
		return []byte{pAccount}
	}
	k := make([]byte, 0, 2+len(svc))
	k = append(k, pAccount)
	k = append(k, svc...)
	return append(k, 0)
}

func accountKey(svc storage.ServiceName, tok storage.AccountToken) []byte {
	k := make([]byte, 0, 2+len(svc)+len(tok))
	k = append(k, pAccount)
	k = append(k, svc...)
	k = append(k, 0)
	return append(k, tok...)
}

// parseAccountKey splits an account key; ok is false for a malformed key.
func parseAccountKey(k []byte) (storage.ServiceName, storage.AccountToken, bool) {
	if len(k) < 3 || k[0] != pAccount {
		return "", "", false
	}
	for i := 1; i < len(k); i++ {
		if k[i] == 0 {
			return storage.ServiceName(k[1:i]), storage.AccountToken(k[i+1:]), i > 1 && i+1 < len(k)
		}
	}
	return "", "", false
}

func tokenIdxPrefix(tok storage.AccountToken) []byte {
	k := make([]byte, 0, 2+len(tok))
	k = append(k, pTokenIdx)
	k = append(k, tok...)
	return append(k, 0)
}

func tokenIdxKey(tok storage.AccountToken, svc storage.ServiceName) []byte {
	return append(tokenIdxPrefix(tok), svc...)
}

func txnKey(id [txnIDBytes]byte) []byte {
	k := make([]byte, 0, 1+txnIDBytes)
	k = append(k, pTxn)
	return append(k, id[:]...)
}

// parseTxnToken decodes a transaction token (32 lowercase hex). ok is false
// for anything else, which the caller reports as NotFound.
func parseTxnToken(s string) (id [txnIDBytes]byte, ok bool) {
	if len(s) != 2*txnIDBytes {
		return id, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return id, false
		}
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

func timeKey(t time.Time) uint64 { return uint64(t.UnixNano()) ^ (1 << 63) }

func expiryKey(at time.Time, id [txnIDBytes]byte) []byte {
	k := make([]byte, 0, 1+8+txnIDBytes)
	k = append(k, pExpiry)
	k = binary.BigEndian.AppendUint64(k, timeKey(at))
	return append(k, id[:]...)
}

// parseExpiryKey returns the expiry time key and the transaction of an
// expiry index key.
func parseExpiryKey(k []byte) (at uint64, id [txnIDBytes]byte, ok bool) {
	if len(k) != 1+8+txnIDBytes || k[0] != pExpiry {
		return 0, id, false
	}
	copy(id[:], k[9:])
	return binary.BigEndian.Uint64(k[1:9]), id, true
}

// accountSubPrefix is p service 0x00 token 0x00, the prefix of an
// account's entries (p = pEntry) or recharge refs (p = pRechRef).
func accountSubPrefix(p byte, svc storage.ServiceName, tok storage.AccountToken, extra int) []byte {
	k := make([]byte, 0, 3+len(svc)+len(tok)+extra)
	k = append(k, p)
	k = append(k, svc...)
	k = append(k, 0)
	k = append(k, tok...)
	return append(k, 0)
}

func entryKey(svc storage.ServiceName, tok storage.AccountToken, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(accountSubPrefix(pEntry, svc, tok, 8), seq)
}

func refKey(svc storage.ServiceName, tok storage.AccountToken, ref string) []byte {
	return append(accountSubPrefix(pRechRef, svc, tok, len(ref)), ref...)
}

func voucherKey(h [32]byte) []byte {
	k := make([]byte, 0, 33)
	k = append(k, pVoucher)
	return append(k, h[:]...)
}

func alertKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pAlert}, id)
}

// recordPart is namespace 0x00 key, the part of a record's keys after the
// prefix (and, in the expiry index, after the time). A namespace never
// holds 0x00 (storage.ValidRecordNS), so the part splits unambiguously.
func recordPart(k []byte, ns, key string) []byte {
	k = append(k, ns...)
	k = append(k, 0)
	return append(k, key...)
}

func recordKey(ns, key string) []byte {
	k := make([]byte, 0, 2+len(ns)+len(key))
	k = append(k, pRecord)
	return recordPart(k, ns, key)
}

func recordExpiryKey(at time.Time, ns, key string) []byte {
	k := make([]byte, 0, 1+8+1+len(ns)+len(key))
	k = append(k, pRecExpiry)
	k = binary.BigEndian.AppendUint64(k, timeKey(at))
	return recordPart(k, ns, key)
}

// parseRecordPart splits namespace 0x00 key.
func parseRecordPart(p []byte) (ns, key string, ok bool) {
	i := bytes.IndexByte(p, 0)
	if i < 1 || i == len(p)-1 {
		return "", "", false
	}
	return string(p[:i]), string(p[i+1:]), true
}
