package admin

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/rpc/portal/voucher"
	"github.com/iapd/iapd/storage"
)

// Voucher routes: POST /v1/vouchers issues top-up codes (shown once, in
// the answer), GET /v1/vouchers lists them (never with their codes: only
// their hashes are stored). They need a ledger that is also a
// storage.Vouchers; otherwise they answer 503.

// maxVouchersPerCall bounds one create call: it is one atomic write, and
// Badger takes about a thousand vouchers per write.
const maxVouchersPerCall = 500

// maxBatch bounds a batch label (the ledger's limit).
const maxBatch = 256

// IssuedVoucher is a voucher just created, with its code: the only time
// the code is shown.
type IssuedVoucher struct {
	Code      string              `json:"code"`
	Hash      string              `json:"hash"` // first 16 hex of the code hash: what the list shows
	Service   storage.ServiceName `json:"service"`
	Amount    storage.Credits     `json:"amount"`
	Batch     string              `json:"batch,omitempty"`
	ExpiresAt string              `json:"expires_at,omitempty"`
}

// IssuedVouchers is the answer of POST /v1/vouchers.
type IssuedVouchers struct {
	Vouchers []IssuedVoucher `json:"vouchers"`
}

// Voucher is a stored voucher as the list shows it.
type Voucher struct {
	Hash       string               `json:"hash"` // first 16 hex of the code hash
	Service    storage.ServiceName  `json:"service"`
	Amount     storage.Credits      `json:"amount"`
	Batch      string               `json:"batch,omitempty"`
	CreatedAt  string               `json:"created_at,omitempty"`
	ExpiresAt  string               `json:"expires_at,omitempty"`
	Redeemed   bool                 `json:"redeemed"`
	RedeemedAt string               `json:"redeemed_at,omitempty"`
	RedeemedBy storage.AccountToken `json:"redeemed_by,omitempty"`
	Entry      uint64               `json:"entry,omitempty"`
}

// VoucherList is a page of vouchers; Next, when set, is the "after" of
// the next page (the full hex hash of the last voucher).
type VoucherList struct {
	Vouchers []Voucher `json:"vouchers"`
	Next     string    `json:"next,omitempty"`
}

// createVouchersRequest is the body of POST /v1/vouchers.
type createVouchersRequest struct {
	Service   string      `json:"service"`
	Amount    json.Number `json:"amount"`
	Count     int         `json:"count"`      // 0: one
	ExpiresAt string      `json:"expires_at"` // RFC 3339; empty: never
	Batch     string      `json:"batch"`
}

func (s *server) voucherRoutes() {
	s.mux.HandleFunc("POST /v1/vouchers", s.createVouchers)
	s.mux.HandleFunc("GET /v1/vouchers", s.listVouchers)
}

func (s *server) vouchers(op string) (storage.Vouchers, error) {
	v, ok := s.ledger.(storage.Vouchers)
	if !ok {
		return nil, storage.E(op, storage.Unavailable, "this ledger does not store vouchers")
	}
	return v, nil
}

func (s *server) createVouchers(w http.ResponseWriter, r *http.Request) {
	const op = "create vouchers"
	store, err := s.vouchers(op)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req createVouchersRequest
	if err := decode(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	svc, err := parseService(op, req.Service)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Amount == "" {
		s.fail(w, r, storage.E(op, storage.Invalid, "missing amount"))
		return
	}
	amount, err := storage.ParseCredits(req.Amount.String())
	if err != nil || amount <= 0 {
		s.fail(w, r, storage.Ef(op, storage.Invalid, "amount must be a positive number of credits, got %s", req.Amount))
		return
	}
	n := req.Count
	if n == 0 {
		n = 1
	}
	if n < 0 || n > maxVouchersPerCall {
		s.fail(w, r, storage.Ef(op, storage.Invalid, "count must be from 1 to %d per call", maxVouchersPerCall))
		return
	}
	if len(req.Batch) > maxBatch || strings.ContainsFunc(req.Batch, func(r rune) bool { return r < ' ' }) {
		s.fail(w, r, storage.Ef(op, storage.Invalid, "batch: at most %d bytes, no control characters", maxBatch))
		return
	}
	now := time.Now().UTC()
	var expires time.Time
	if req.ExpiresAt != "" {
		if expires, err = time.Parse(time.RFC3339, req.ExpiresAt); err != nil {
			s.fail(w, r, storage.Ef(op, storage.Invalid, "expires_at must be an RFC 3339 time, got %q", req.ExpiresAt))
			return
		}
		if !expires.After(now) {
			s.fail(w, r, storage.E(op, storage.Invalid, "expires_at is in the past"))
			return
		}
		expires = expires.UTC()
	}
	vs := make([]storage.Voucher, n)
	out := IssuedVouchers{Vouchers: make([]IssuedVoucher, n)}
	for i := range vs {
		code, err := voucher.New()
		if err != nil {
			s.fail(w, r, storage.Wrap(op, storage.Internal, err))
			return
		}
		h, err := voucher.Hash(code)
		if err != nil {
			s.fail(w, r, storage.Wrap(op, storage.Internal, err))
			return
		}
		vs[i] = storage.Voucher{CodeHash: h, Service: svc, Amount: amount, Batch: req.Batch, CreatedAt: now, ExpiresAt: expires}
		out.Vouchers[i] = IssuedVoucher{Code: code, Hash: hex.EncodeToString(h[:8]), Service: svc, Amount: amount,
			Batch: req.Batch, ExpiresAt: stamp(expires)}
	}
	if err := store.CreateVouchers(r.Context(), vs); err != nil {
		s.fail(w, r, err)
		return
	}
	// The codes are in the answer only: never logged.
	s.log.Info("admin: vouchers created", "service", svc, "count", n, "amount", amount.String())
	s.reply(w, http.StatusOK, out)
}

func (s *server) listVouchers(w http.ResponseWriter, r *http.Request) {
	const op = "list vouchers"
	store, err := s.vouchers(op)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	limit, err := parseLimit(op, q.Get("limit"), 100, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := storage.VoucherFilter{Batch: q.Get("batch"), Limit: limit + 1}
	if raw := q.Get("service"); raw != "" {
		if f.Service, err = parseService(op, raw); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if raw := q.Get("redeemed"); raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			s.fail(w, r, storage.Ef(op, storage.Invalid, "redeemed must be true or false, got %q", raw))
			return
		}
		f.Redeemed = &b
	}
	if raw := q.Get("after"); raw != "" {
		b, err := hex.DecodeString(raw)
		if err != nil || len(b) != 32 {
			s.fail(w, r, storage.E(op, storage.Invalid, `"after" must be the "next" of a previous page`))
			return
		}
		copy(f.After[:], b)
	}
	vs, err := store.ListVouchers(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := VoucherList{Vouchers: make([]Voucher, 0, len(vs))}
	if len(vs) > limit {
		vs = vs[:limit]
		out.Next = hex.EncodeToString(vs[limit-1].CodeHash[:])
	}
	for _, v := range vs {
		out.Vouchers = append(out.Vouchers, Voucher{
			Hash: hex.EncodeToString(v.CodeHash[:8]), Service: v.Service, Amount: v.Amount, Batch: v.Batch,
			CreatedAt: stamp(v.CreatedAt), ExpiresAt: stamp(v.ExpiresAt), Redeemed: v.Redeemed(),
			RedeemedAt: stamp(v.RedeemedAt), RedeemedBy: v.RedeemedBy, Entry: v.Entry,
		})
	}
	s.reply(w, http.StatusOK, out)
}
