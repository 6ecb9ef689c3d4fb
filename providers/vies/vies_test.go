package vies

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/providertest"
)

// fakeVIES speaks the VIES REST API: POST /check-vat-number with
// {"countryCode","vatNumber"}; a verdict, or the error envelope
// {"actionSucceed":false,"errorWrappers":[{"error":…}]}. Numbers starting
// with a code script the answer.
type fakeVIES struct {
	mu   sync.Mutex
	reqs []request
	hang chan struct{} // closed at cleanup: unblocks hung calls
}

func (f *fakeVIES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/rest-api/check-vat-number" || r.Header.Get("Content-Type") != "application/json" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	var req request
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	wrapped := func(status int, code string) {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"actionSucceed":false,"errorWrappers":[{"error":%q,"message":"detail"}]}`, code)
	}
	switch {
	case strings.HasPrefix(req.VATNumber, "400"):
		wrapped(http.StatusBadRequest, "INVALID_INPUT")
	case strings.HasPrefix(req.VATNumber, "201"):
		wrapped(http.StatusOK, "MS_UNAVAILABLE")
	case strings.HasPrefix(req.VATNumber, "202"):
		fmt.Fprintf(w, `{"countryCode":%q,"vatNumber":%q,"valid":false,"userError":"MS_MAX_CONCURRENT_REQ","name":"---","address":"---"}`, req.CountryCode, req.VATNumber)
	case strings.HasPrefix(req.VATNumber, "500"):
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "<html>oops</html>")
	case strings.HasPrefix(req.VATNumber, "203"):
		_, _ = io.WriteString(w, `{"countryCode":`) // cut short
	case strings.HasPrefix(req.VATNumber, "999"):
		select { // the answer never comes in time
		case <-f.hang:
		case <-r.Context().Done():
		}
	case strings.HasPrefix(req.VATNumber, "0"):
		fmt.Fprintf(w, `{"countryCode":%q,"vatNumber":%q,"requestDate":"2026-11-28T10:00:00.000Z","valid":true,"requestIdentifier":"","name":"EXAMPLE VIES SA","address":"RUE DE L'EXEMPLE 1\nBOITE 2\n1000 BRUXELLES","traderName":"---"}`, req.CountryCode, req.VATNumber)
	default:
		fmt.Fprintf(w, `{"countryCode":%q,"vatNumber":%q,"requestDate":"2026-11-28T10:00:00.000Z","valid":false,"name":"---","address":"---"}`, req.CountryCode, req.VATNumber)
	}
}

func newFake(t *testing.T) (*fakeVIES, *httptest.Server) {
	f := &fakeVIES{hang: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(func() { close(f.hang); srv.Close() })
	return f, srv
}

func newVIES(t *testing.T, base string) *VIES {
	t.Helper()
	v, err := (&Config{BaseURL: base + "/rest-api", Timeout: 300 * time.Millisecond}).New("eu-vies", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCompanyByVAT(t *testing.T) {
	f, srv := newFake(t)
	v := newVIES(t, srv.URL)
	ctx := context.Background()

	c, err := v.CompanyByVAT(ctx, "be 0000.000.097")
	if err != nil || c == nil {
		t.Fatalf("valid number: %+v, %v", c, err)
	}
	if c.Name != "EXAMPLE VIES SA" || c.VAT != "BE0000000097" || c.Country != "BE" || c.Street != "RUE DE L'EXEMPLE 1" ||
		c.Street2 != "BOITE 2" || c.Zip != "1000" || c.City != "BRUXELLES" || c.Valid == nil || !*c.Valid {
		t.Errorf("mapped %+v", c)
	}
	if f.reqs[0] != (request{CountryCode: "BE", VATNumber: "0000000097"}) {
		t.Errorf("request %+v", f.reqs[0])
	}
	if c, err := v.CompanyByVAT(ctx, "GR0123"); err != nil || c == nil || c.Country != "GR" || f.reqs[1].CountryCode != "EL" {
		t.Errorf("Greece is EL in VIES: %+v, %v, %+v", c, err, f.reqs[1])
	}
	if c, err := v.CompanyByVAT(ctx, "FR55123456789"); c != nil || err != nil {
		t.Errorf("not registered: %+v, %v; want nil, nil", c, err)
	}
	before := len(f.reqs)
	if c, err := v.CompanyByVAT(ctx, "US123456789"); c != nil || err != nil {
		t.Errorf("a country VIES does not cover: %+v, %v; want a miss", c, err)
	}
	for _, bad := range []string{"", "B", "BE!!!", "BE1234567890123456"} {
		if _, err := v.CompanyByVAT(ctx, bad); providers.KindOf(err) != providers.Invalid || err == nil {
			t.Errorf("%q: %v, want Invalid", bad, err)
		}
	}
	if len(f.reqs) != before {
		t.Errorf("malformed or foreign numbers must not be sent to VIES")
	}

	for _, c := range []struct {
		vat  string
		want providers.Kind
		code string
	}{
		{"DE400000000", providers.Invalid, "INVALID_INPUT"},
		{"DE201000000", providers.Unavailable, "MS_UNAVAILABLE"},
		{"DE202000000", providers.Unavailable, "MS_MAX_CONCURRENT_REQ"},
		{"DE500000000", providers.Unavailable, "500"},
		{"DE203000000", providers.Unavailable, ""},
		{"DE999000000", providers.Indeterminate, ""},
	} {
		_, err := v.CompanyByVAT(ctx, c.vat)
		var pe *providers.Error
		if err == nil || providers.KindOf(err) != c.want {
			t.Errorf("%s: %v, want %s", c.vat, err, c.want)
			continue
		}
		if c.code != "" && (!errorAs(err, &pe) || pe.Code != c.code) {
			t.Errorf("%s: code %q, want %q", c.vat, pe.Code, c.code)
		}
		if strings.Contains(err.Error(), "detail") {
			t.Errorf("%s: the vendor's message text reached the error: %v", c.vat, err)
		}
	}
}

func errorAs(err error, pe **providers.Error) bool {
	e, ok := err.(*providers.Error)
	*pe = e
	return ok
}

func TestDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // connection refused: nothing was sent
	if _, err := newVIES(t, srv.URL).CompanyByVAT(context.Background(), "BE0000000097"); providers.KindOf(err) != providers.Unavailable {
		t.Fatalf("%v, want Unavailable", err)
	}
}

func TestConformance(t *testing.T) {
	providertest.TestCompanyProvider(t, providertest.CompanyHarness{
		New: func(t *testing.T) providers.Provider {
			_, srv := newFake(t)
			return newVIES(t, srv.URL)
		},
		Known: providers.Company{VAT: "BE0000000097", Name: "EXAMPLE VIES SA", Country: "BE"},
		Down: func(t *testing.T) providers.Provider {
			srv := httptest.NewServer(http.NotFoundHandler())
			srv.Close()
			return newVIES(t, srv.URL)
		},
		Hung: func(t *testing.T) providers.Provider {
			f := &fakeVIES{hang: make(chan struct{})}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Body = io.NopCloser(strings.NewReader(`{"countryCode":"BE","vatNumber":"999"}`))
				f.ServeHTTP(w, r)
			}))
			t.Cleanup(func() { close(f.hang); srv.Close() })
			return newVIES(t, srv.URL)
		},
	})
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{BaseURL: "ftp://x"}, {BaseURL: "https://user:pw@x"}, {Timeout: -1}, {Timeout: time.Hour}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	v, err := (&Config{}).New("v", nil, nil)
	if err != nil || v.base != DefaultBaseURL || v.timeout != DefaultTimeout || v.Type() != "vies" {
		t.Fatalf("defaults: %+v, %v", v, err)
	}
}
