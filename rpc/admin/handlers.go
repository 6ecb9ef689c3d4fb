package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/iapd/iapd/storage"
)

// Key length bounds for imported keys; generated keys are 32 random bytes
// in hex.
const (
	minKeyLen = 16
	maxKeyLen = 256
)

// Bounds on free text and references.
const (
	maxDescription = 512
	maxUnitName    = 64
	maxRef         = 128
)

func (s *server) listServices(w http.ResponseWriter, r *http.Request) {
	svcs, err := s.ledger.Services(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := struct {
		Services []Service `json:"services"`
	}{Services: make([]Service, 0, len(svcs))}
	for _, v := range svcs {
		out.Services = append(out.Services, serviceView(v))
	}
	s.reply(w, http.StatusOK, out)
}

func (s *server) showService(w http.ResponseWriter, r *http.Request) {
	name, err := parseService("show service", r.PathValue("service"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	svc, err := s.ledger.Service(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, http.StatusOK, serviceView(svc))
}

// createServiceRequest is the body of POST /v1/services.
type createServiceRequest struct {
	Name         string      `json:"name"`
	Key          string      `json:"key"`
	AutoRegister *bool       `json:"auto_register"`
	TrialCredits json.Number `json:"trial_credits"`
	Description  string      `json:"description"`
	UnitName     string      `json:"unit_name"`
}

func (s *server) createService(w http.ResponseWriter, r *http.Request) {
	const op = "create service"
	var req createServiceRequest
	if err := decode(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	name, err := parseService(op, req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	svc := storage.Service{
		Name:         name,
		AutoRegister: req.AutoRegister == nil || *req.AutoRegister,
		Description:  req.Description,
		UnitName:     req.UnitName,
	}
	if svc.UnitName == "" {
		svc.UnitName = "Credits"
	}
	if len(svc.Description) > maxDescription || len(svc.UnitName) > maxUnitName {
		s.fail(w, r, storage.Ef(op, storage.Invalid, "description is limited to %d bytes and unit_name to %d", maxDescription, maxUnitName))
		return
	}
	if req.TrialCredits != "" {
		c, err := storage.ParseCredits(req.TrialCredits.String())
		if err != nil {
			s.fail(w, r, storage.Ef(op, storage.Invalid, "trial_credits: %v", err))
			return
		}
		svc.TrialCredits = c
	}
	key, err := newKey(op, req.Key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hash := storage.HashKey(key)

	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := r.Context()
	if _, err := s.ledger.Service(ctx, name); err == nil {
		s.fail(w, r, storage.Ef(op, storage.Exists, "service %q exists already (rotate its key: iapd services rotate-key %s, or POST /v1/services/%s/key)", name, name, name))
		return
	} else if !storage.Is(err, storage.NotFound) {
		s.fail(w, r, err)
		return
	}
	if err := s.keyUnused(ctx, op, name, hash); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.ledger.EnsureService(ctx, svc); err != nil {
		s.fail(w, r, err)
		return
	}
	got, err := s.setKey(ctx, name, hash)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: service created", "service", name, "key_imported", req.Key != "")
	s.reply(w, http.StatusCreated, ServiceKey{Service: serviceView(got), Key: key})
}

// rotateKeyRequest is the (optional) body of POST /v1/services/{service}/key.
type rotateKeyRequest struct {
	Key string `json:"key"`
}

func (s *server) rotateKey(w http.ResponseWriter, r *http.Request) {
	const op = "rotate key"
	name, err := parseService(op, r.PathValue("service"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req rotateKeyRequest
	if err := decode(r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	key, err := newKey(op, req.Key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hash := storage.HashKey(key)

	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := r.Context()
	if _, err := s.ledger.Service(ctx, name); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.keyUnused(ctx, op, name, hash); err != nil {
		s.fail(w, r, err)
		return
	}
	got, err := s.setKey(ctx, name, hash)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("admin: service key rotated", "service", name, "key_imported", req.Key != "")
	s.reply(w, http.StatusOK, ServiceKey{Service: serviceView(got), Key: key})
}

// setKey gives service name the key that hashes to hash and returns the
// service as stored.
func (s *server) setKey(ctx context.Context, name storage.ServiceName, hash [32]byte) (storage.Service, error) {
	if err := s.ledger.SetServiceKey(ctx, name, hash); err != nil {
		return storage.Service{}, err
	}
	return s.ledger.Service(ctx, name)
}

// keyUnused refuses a key that another service already has (the key is
// what identifies the service on authorize/capture/cancel).
func (s *server) keyUnused(ctx context.Context, op string, name storage.ServiceName, hash [32]byte) error {
	other, err := s.ledger.ServiceByKey(ctx, hash)
	switch {
	case err == nil && other.Name != name:
		return storage.E(op, storage.Exists, "another service already has this key")
	case err == nil, storage.Is(err, storage.Unauthorized), storage.Is(err, storage.NotFound):
		return nil
	default:
		return err
	}
}

// newKey validates an imported key or generates one.
func newKey(op, imported string) (string, error) {
	if imported == "" {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", storage.Wrap(op, storage.Internal, err)
		}
		return hex.EncodeToString(b[:]), nil
	}
	if len(imported) < minKeyLen || len(imported) > maxKeyLen {
		return "", storage.Ef(op, storage.Invalid, "an imported key must be %d to %d characters long", minKeyLen, maxKeyLen)
	}
	for i := 0; i < len(imported); i++ {
		if c := imported[i]; c <= ' ' || c >= 0x7f {
			return "", storage.E(op, storage.Invalid, "an imported key must be printable ASCII without spaces")
		}
	}
	return imported, nil
}

func (s *server) listAccounts(w http.ResponseWriter, r *http.Request) {
	const op = "list accounts"
	q := r.URL.Query()
	limit, err := parseLimit(op, q.Get("limit"), 100, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	state := storage.AccountState(q.Get("state"))
	if state != "" && !state.Valid() {
		s.fail(w, r, storage.Ef(op, storage.Invalid, "state must be registered, unregistered or banned, got %q", state))
		return
	}
	ctx := r.Context()
	out := AccountList{Accounts: []Account{}}
	after := q.Get("after")

	if raw := q.Get("service"); raw != "" {
		name, err := parseService(op, raw)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if _, err := s.ledger.Service(ctx, name); err != nil {
			s.fail(w, r, err)
			return
		}
		accts, err := s.ledger.Accounts(ctx, storage.AccountFilter{
			Service: name, State: state, After: storage.AccountToken(after), Limit: limit + 1,
		})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if len(accts) > limit {
			accts = accts[:limit]
			out.Next = string(accts[limit-1].Token)
		}
		for _, a := range accts {
			out.Accounts = append(out.Accounts, accountView(a))
		}
		s.reply(w, http.StatusOK, out)
		return
	}

	// All services: the cursor is "service/token" (service names hold no
	// '/'), and services are walked in name order.
	var afterSvc storage.ServiceName
	var afterTok storage.AccountToken
	if after != "" {
		sv, tk, ok := strings.Cut(after, "/")
		if !ok || !storage.ValidServiceName(sv) {
			s.fail(w, r, storage.E(op, storage.Invalid, `without "service", "after" must be the "next" of a previous page`))
			return
		}
		afterSvc, afterTok = storage.ServiceName(sv), storage.AccountToken(tk)
	}
	svcs, err := s.ledger.Services(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var page []storage.Account
	for _, sv := range svcs {
		if sv.Name < afterSvc {
			continue
		}
		f := storage.AccountFilter{Service: sv.Name, State: state, Limit: limit + 1 - len(page)}
		if sv.Name == afterSvc {
			f.After = afterTok
		}
		accts, err := s.ledger.Accounts(ctx, f)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		page = append(page, accts...)
		if len(page) > limit {
			break
		}
	}
	if len(page) > limit {
		page = page[:limit]
		last := page[limit-1]
		out.Next = string(last.Service) + "/" + string(last.Token)
	}
	for _, a := range page {
		out.Accounts = append(out.Accounts, accountView(a))
	}
	s.reply(w, http.StatusOK, out)
}

// accountRef names one account in a request body.
type accountRef struct {
	Service string `json:"service"`
	Token   string `json:"token"`
}

func (ref accountRef) parse(op string) (storage.ServiceName, storage.AccountToken, error) {
	svc, err := parseService(op, ref.Service)
	if err != nil {
		return "", "", err
	}
	tok, err := parseToken(op, ref.Token)
	if err != nil {
		return "", "", err
	}
	return svc, tok, nil
}

func (s *server) showAccount(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	svc, tok, err := accountRef{Service: q.Get("service"), Token: q.Get("token")}.parse("show account")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.ledger.LookupAccount(r.Context(), svc, tok)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, http.StatusOK, accountView(a))
}

func (s *server) ban(w http.ResponseWriter, r *http.Request) {
	s.changeState(w, r, "ban", func(cur storage.AccountState) (storage.AccountState, error) {
		return storage.Banned, nil
	}, false)
}

func (s *server) unban(w http.ResponseWriter, r *http.Request) {
	s.changeState(w, r, "unban", func(cur storage.AccountState) (storage.AccountState, error) {
		if cur == storage.Unregistered {
			return "", storage.E("unban", storage.Conflict, "the account is not banned but unregistered: register it instead")
		}
		return storage.Registered, nil
	}, false)
}

func (s *server) register(w http.ResponseWriter, r *http.Request) {
	s.changeState(w, r, "register", func(cur storage.AccountState) (storage.AccountState, error) {
		if cur == storage.Banned {
			return "", storage.E("register", storage.Conflict, "the account is banned: unban it instead")
		}
		return storage.Registered, nil
	}, true)
}

// changeState moves an account to the state next returns. With create, an
// absent account is first created as Odoo's first contact would create it.
func (s *server) changeState(w http.ResponseWriter, r *http.Request, op string,
	next func(storage.AccountState) (storage.AccountState, error), create bool) {
	var ref accountRef
	if err := decode(r, &ref, false); err != nil {
		s.fail(w, r, err)
		return
	}
	svc, tok, err := ref.parse(op)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.ledger.LookupAccount(ctx, svc, tok)
	created := false
	if create && storage.Is(err, storage.NotFound) {
		a, err = s.ledger.Account(ctx, svc, tok, storage.FirstSight{})
		created = true
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	want, err := next(a.State)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	changed := created || want != a.State
	if want != a.State {
		if a, err = s.ledger.UpdateAccount(ctx, svc, tok, storage.AccountUpdate{State: &want}); err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.Info("admin: account state changed", "service", svc, "state", want)
	}
	s.reply(w, http.StatusOK, StateChange{Account: accountView(a), Changed: changed})
}

// creditRequest is the body of POST /v1/account/credit.
type creditRequest struct {
	Service     string      `json:"service"`
	Token       string      `json:"token"`
	Amount      json.Number `json:"amount"`
	Ref         string      `json:"ref"`
	Description string      `json:"description"`
}

func (s *server) credit(w http.ResponseWriter, r *http.Request) {
	const op = "credit"
	var req creditRequest
	if err := decode(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	svc, tok, err := accountRef{Service: req.Service, Token: req.Token}.parse(op)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Amount == "" {
		s.fail(w, r, storage.E(op, storage.Invalid, "missing amount"))
		return
	}
	amount, err := storage.ParseSignedCredits(req.Amount.String())
	if err != nil {
		s.fail(w, r, storage.Ef(op, storage.Invalid, "amount: %v", err))
		return
	}
	if amount == 0 {
		s.fail(w, r, storage.E(op, storage.Invalid, "amount must not be zero"))
		return
	}
	if len(req.Ref) > maxRef || len(req.Description) > maxDescription {
		s.fail(w, r, storage.Ef(op, storage.Invalid, "ref is limited to %d bytes and description to %d", maxRef, maxDescription))
		return
	}
	kind := storage.EntryRecharge
	if amount < 0 {
		kind = storage.EntryAdjustment
	}
	ctx := r.Context()
	// A repeated ref returns the entry it wrote first: older than the
	// account's last entry before this call. Only this handler writes
	// entries with a ref, and mu keeps two credits from interleaving, so
	// the comparison cannot be fooled by a concurrent retry.
	s.mu.Lock()
	defer s.mu.Unlock()
	var before uint64
	if req.Ref != "" {
		switch a, err := s.ledger.LookupAccount(ctx, svc, tok); {
		case err == nil:
			before = a.Seq
		case !storage.Is(err, storage.NotFound):
			s.fail(w, r, err)
			return
		}
	}
	e, err := s.ledger.Recharge(ctx, storage.RechargeRequest{
		Service: svc, Account: tok, Amount: amount, Kind: kind, Ref: req.Ref, Description: req.Description,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.ledger.LookupAccount(ctx, svc, tok)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	replayed := req.Ref != "" && e.Seq <= before
	s.log.Info("admin: credit", "service", svc, "kind", kind, "amount", amount.String(), "seq", e.Seq, "replayed", replayed)
	s.reply(w, http.StatusOK, Credit{Entry: entryView(e), Account: accountView(a), Replayed: replayed})
}

func (s *server) history(w http.ResponseWriter, r *http.Request) {
	const op = "history"
	q := r.URL.Query()
	svc, tok, err := accountRef{Service: q.Get("service"), Token: q.Get("token")}.parse(op)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := parseLimit(op, q.Get("limit"), 100, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var before uint64
	if raw := q.Get("before"); raw != "" {
		if before, err = strconv.ParseUint(raw, 10, 64); err != nil {
			s.fail(w, r, storage.Ef(op, storage.Invalid, "before must be an entry sequence number, got %q", raw))
			return
		}
	}
	ctx := r.Context()
	if _, err := s.ledger.LookupAccount(ctx, svc, tok); err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.ledger.History(ctx, svc, tok, storage.HistoryQuery{Before: before, Limit: limit + 1})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := History{Service: svc, Token: tok, Entries: make([]Entry, 0, len(entries))}
	if len(entries) > limit {
		entries = entries[:limit]
		out.Next = entries[limit-1].Seq
	}
	for _, e := range entries {
		out.Entries = append(out.Entries, entryView(e))
	}
	s.reply(w, http.StatusOK, out)
}

func (s *server) showTransaction(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("token")
	if raw == "" || len(raw) > 128 {
		s.fail(w, r, storage.E("show transaction", storage.Invalid, "missing or malformed transaction token"))
		return
	}
	t, err := s.ledger.Transaction(r.Context(), raw)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, http.StatusOK, transactionView(t))
}
