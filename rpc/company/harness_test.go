package company

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// harness is an rpc.Server with the company services on an in-memory
// ledger, listening on a loopback port.
type harness struct {
	t      *testing.T
	url    string
	ledger *badger.Ledger
}

func newHarness(t *testing.T, ac AutocompleteConfig, lc LeadsConfig, ps ...providers.Provider) *harness {
	t.Helper()
	l, err := badger.Open(badger.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ctx := context.Background()
	for _, svc := range []storage.ServiceName{storage.PartnerAutocomplete, storage.Reveal} {
		if _, err := l.EnsureService(ctx, storage.Service{Name: svc, AutoRegister: true, UnitName: "Credits"}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := rpc.New(rpc.Config{Ledger: l, PublicURL: "https://iap.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{Ledger: l}
	a, err := NewAutocomplete(ac, ps, deps)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := NewLeads(lc, ps, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := Register(s, a, ld); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: s.Handler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &harness{t: t, url: "http://" + ln.Addr().String(), ledger: l}
}

// answer is a decoded JSON-RPC answer.
type answer struct {
	Raw     []byte
	Result  json.RawMessage
	ErrName string
	ErrMsg  string
}

// call posts params to path and checks the envelope Odoo needs.
func (h *harness) call(path string, params map[string]any) answer {
	h.t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": "abc", "params": params})
	resp, err := http.Post(h.url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		h.t.Fatalf("%s: HTTP %d %s", path, resp.StatusCode, raw)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(raw, &env); err != nil {
		h.t.Fatalf("%s: not JSON: %s", path, raw)
	}
	a := answer{Raw: raw, Result: env["result"]}
	if e, ok := env["error"]; ok {
		var eo struct {
			Data struct {
				Name    string `json:"name"`
				Message string `json:"message"`
			} `json:"data"`
		}
		if err := json.Unmarshal(e, &eo); err != nil || eo.Data.Name == "" {
			h.t.Fatalf("%s: error without data.name: %s", path, raw)
		}
		a.ErrName, a.ErrMsg = eo.Data.Name[strings.LastIndexByte(eo.Data.Name, '.')+1:], eo.Data.Message
		if a.Result != nil {
			h.t.Fatalf("%s: both result and error: %s", path, raw)
		}
	} else if a.Result == nil {
		h.t.Fatalf("%s: no result: %s", path, raw)
	}
	return a
}

func (h *harness) credit(svc storage.ServiceName, tok string, credits int64) {
	h.t.Helper()
	if _, err := h.ledger.Recharge(context.Background(), storage.RechargeRequest{
		Service: svc, Account: storage.AccountToken(tok), Amount: storage.Credits(credits * storage.Scale), Kind: storage.EntryRecharge,
	}); err != nil {
		h.t.Fatal(err)
	}
}

// account returns the account and checks the ledger invariant.
func (h *harness) account(svc storage.ServiceName, tok string) storage.Account {
	h.t.Helper()
	a, err := h.ledger.LookupAccount(context.Background(), svc, storage.AccountToken(tok))
	if err != nil {
		h.t.Fatal(err)
	}
	if a.Recharged != a.Available+a.Held+a.Captured {
		h.t.Fatalf("invariant broken: %+v", a)
	}
	return a
}

func credits(n int64) storage.Credits { return storage.Credits(n * storage.Scale) }

// fake is a scripted provider with every company capability.
type fake struct {
	name      string
	companies []providers.Company
	fail      providers.Kind // 0: answer
	mu        sync.Mutex
	calls     int
}

func (f *fake) Name() string { return f.name }
func (f *fake) Type() string { return "fake" }
func (f *fake) Close() error { return nil }

func (f *fake) err() error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.fail == 0 {
		return nil
	}
	return &providers.Error{Provider: f.name, Kind: f.fail, Msg: "scripted"}
}

func (f *fake) first(match func(*providers.Company) bool) (*providers.Company, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	for i := range f.companies {
		if match(&f.companies[i]) {
			c := f.companies[i]
			return &c, nil
		}
	}
	return nil, nil
}

func (f *fake) CompaniesByName(_ context.Context, q providers.NameQuery) ([]providers.Company, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	var out []providers.Company
	for _, c := range f.companies {
		if strings.Contains(strings.ToLower(c.Name), strings.ToLower(q.Name)) {
			out = append(out, c)
		}
	}
	return out, nil
}
func (f *fake) CompanyByVAT(_ context.Context, vat string) (*providers.Company, error) {
	return f.first(func(c *providers.Company) bool { return c.VAT == vat })
}
func (f *fake) CompanyByDomain(_ context.Context, d string) (*providers.Company, error) {
	return f.first(func(c *providers.Company) bool { return c.Domain == d })
}
func (f *fake) CompanyByID(_ context.Context, id string) (*providers.Company, error) {
	return f.first(func(c *providers.Company) bool { return c.ID == id })
}
func (f *fake) CompanyByIP(_ context.Context, ip netip.Addr) (*providers.Company, error) {
	return f.first(func(c *providers.Company) bool { return c.Website == ip.String() }) // tests put the IP in Website
}
func (f *fake) SearchCompanies(_ context.Context, cr providers.Criteria) ([]providers.Company, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	var out []providers.Company
	for _, c := range f.companies {
		if len(out) == cr.Limit {
			break
		}
		if len(cr.Countries) > 0 && !containsFold(cr.Countries, c.Country) {
			continue
		}
		c.Contacts = providers.SelectContacts(c.Contacts, cr.ContactsPerCompany, cr.Roles, cr.Seniorities)
		out = append(out, c)
	}
	return out, nil
}

// testCompanies are what the fakes know.
func testCompanies() []providers.Company {
	var out []providers.Company
	for i := 1; i <= 4; i++ {
		out = append(out, providers.Company{
			ID: fmt.Sprintf("90000000%d", i), Name: fmt.Sprintf("Fake Co %d", i), Domain: fmt.Sprintf("fake%d.example", i),
			VAT: fmt.Sprintf("BE000000000%d", i), Country: "BE", City: "Brussels", Employees: 50, IndustryID: "86",
			Website: fmt.Sprintf("198.51.100.%d", i),
			Contacts: []providers.Contact{
				{Name: "No Phone", Email: fmt.Sprintf("ceo@fake%d.example", i), Title: "CEO", Role: "CEO", Seniority: "executive"},
				{Name: "Has Phone", Phone: "+32 470 00 00 00", Title: "CTO", Role: "information_technology", Seniority: "executive"},
			},
		})
	}
	return out
}

const (
	tokA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	tokB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)
