package providertest

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
)

// LetterHarness describes a LetterSender under test.
type LetterHarness struct {
	// New returns a fresh instance whose vendor accepts letters. It
	// registers the instance's Close with t.Cleanup.
	New func(t *testing.T) providers.LetterSender
	// Refuse changes a letter so that the vendor refuses it (the adapter
	// must report Invalid), e.g. a recipient the vendor cannot deliver
	// to. Nil when the vendor never refuses a well-formed letter.
	Refuse func(l *providers.Letter)
	// Down returns an instance whose vendor cannot be reached: the
	// letter must fail Unavailable (nothing was posted).
	Down func(t *testing.T) providers.LetterSender
	// Hung returns an instance whose vendor receives the letter and
	// answers after the adapter's timeout: it must fail Indeterminate.
	// Nil for an adapter without a remote party (folder).
	Hung func(t *testing.T) providers.LetterSender
	// Holds reports whether the instance's vendor (or folder) holds the
	// letter sent with result res, for the suite to check that an
	// accepted letter was really handed over.
	Holds func(t *testing.T, s providers.LetterSender, l providers.Letter, res providers.LetterResult) bool
	// Callback, for a LetterReporter, returns the callback request the
	// vendor makes to report the letter sent with result res as posted,
	// and the same request forged (bad or missing signature).
	Callback func(t *testing.T, l providers.Letter, res providers.LetterResult) (good, forged providers.CallbackRequest)
}

// OnePagePDF is a minimal valid one-page A4 PDF for letters in tests.
var OnePagePDF = []byte("%PDF-1.4\n" +
	"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n" +
	"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n" +
	"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>\nendobj\n" +
	"trailer\n<< /Root 1 0 R >>\n%%EOF\n")

// Letter returns a well-formed letter numbered i.
func Letter(i int) providers.Letter {
	return providers.Letter{
		ID:    "letter-" + string(rune('a'+i%26)),
		PDF:   OnePagePDF,
		Pages: 1,
		Color: i%2 == 0,
		To: providers.Address{Name: "Letter Target", Street: "Rue Test 1", Zip: "1000", City: "Brussels",
			Country: "BE"},
		From: providers.Address{Name: "My Company", Street: "Chaussee de Namur 40", Zip: "1367",
			City: "Ramillies", Country: "BE"},
		Country: "BE",
	}
}

// TestLetterSender runs the LetterSender conformance suite.
func TestLetterSender(t *testing.T, h LetterHarness) {
	t.Helper()
	if h.New == nil || h.Down == nil || h.Holds == nil {
		t.Fatal("providertest: LetterHarness needs New, Down and Holds")
	}
	t.Run("Identity", func(t *testing.T) {
		s := h.New(t)
		if s.Name() == "" || s.Type() == "" {
			t.Errorf("Name() = %q, Type() = %q; want both set", s.Name(), s.Type())
		}
	})
	t.Run("Send", func(t *testing.T) {
		s := h.New(t)
		seen := map[string]bool{}
		for i := range 3 {
			l := Letter(i)
			res, err := s.SendLetter(letterCtx(t), l)
			if err != nil {
				t.Fatalf("letter %d: %v", i, err)
			}
			if res.ProviderID == "" || seen[res.ProviderID] {
				t.Fatalf("letter %d: provider id %q empty or repeated", i, res.ProviderID)
			}
			seen[res.ProviderID] = true
			if res.Status != providers.LetterAccepted && res.Status != providers.LetterSent {
				t.Errorf("letter %d: status %q, want accepted or sent", i, res.Status)
			}
			if !h.Holds(t, s, l, res) {
				t.Errorf("letter %d accepted (%s) but not handed over", i, res.ProviderID)
			}
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		s := h.New(t)
		noPDF := Letter(1)
		noPDF.PDF = nil
		_, err := s.SendLetter(letterCtx(t), noPDF)
		wantKind(t, "letter without a PDF", err, providers.Invalid)
		if h.Refuse != nil {
			l := Letter(2)
			h.Refuse(&l)
			_, err := s.SendLetter(letterCtx(t), l)
			wantKind(t, "letter the vendor refuses", err, providers.Invalid)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		c, cancel := context.WithCancel(letterCtx(t))
		cancel()
		_, err := h.New(t).SendLetter(c, Letter(3))
		wantKind(t, "cancelled context", err, providers.Unavailable)
	})
	t.Run("Down", func(t *testing.T) {
		_, err := h.Down(t).SendLetter(letterCtx(t), Letter(4))
		wantKind(t, "vendor down", err, providers.Unavailable)
	})
	if h.Hung != nil {
		t.Run("Hung", func(t *testing.T) {
			_, err := h.Hung(t).SendLetter(letterCtx(t), Letter(5))
			wantKind(t, "vendor hung after receiving", err, providers.Indeterminate)
		})
	}
	t.Run("StatusReports", func(t *testing.T) {
		s := h.New(t)
		lr, ok := s.(providers.LetterReporter)
		if !ok {
			if h.Callback != nil {
				t.Fatalf("%T is not a providers.LetterReporter but the harness has a Callback", s)
			}
			return
		}
		if h.Callback == nil {
			t.Fatal("a LetterReporter needs a Callback in its harness")
		}
		got := make(chan providers.LetterReport, 16)
		lr.SetLetterSink(func(_ context.Context, provider string, reports []providers.LetterReport) {
			if provider != s.Name() {
				t.Errorf("sink called for provider %q, want %q", provider, s.Name())
			}
			for _, r := range reports {
				got <- r
			}
		})
		l := Letter(6)
		res, err := s.SendLetter(letterCtx(t), l)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		good, forged := h.Callback(t, l, res)
		if resp := serveLetter(t, lr, forged); resp.Status != 403 {
			t.Errorf("forged callback answered %d, want 403", resp.Status)
		}
		select {
		case r := <-got:
			t.Fatalf("forged callback produced report %+v", r)
		default:
		}
		if resp := serveLetter(t, lr, good); resp.Status < 200 || resp.Status > 299 {
			t.Fatalf("authentic callback answered %d %s", resp.Status, resp.Body)
		}
		select {
		case r := <-got:
			if r.ProviderID != res.ProviderID || r.Status == "" {
				t.Errorf("report %+v, want one for %s", r, res.ProviderID)
			}
		default:
			t.Fatal("authentic callback produced no report")
		}
	})
}

func wantKind(t *testing.T, what string, err error, want providers.Kind) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want %s", what, want)
		return
	}
	if k := providers.KindOf(err); k != want {
		t.Errorf("%s: %v (%s), want %s", what, err, k, want)
	}
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Provider == "" {
		t.Errorf("%s: error %v is not a *providers.Error naming its provider", what, err)
	}
}

// letterCtx bounds a suite step.
func letterCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// serveLetter finds the callback route matching req's path and calls it.
func serveLetter(t *testing.T, c providers.Callbacks, req providers.CallbackRequest) providers.CallbackResponse {
	t.Helper()
	u, err := url.Parse(req.URL)
	if err != nil {
		t.Fatalf("callback URL %q: %v", req.URL, err)
	}
	for _, r := range c.CallbackRoutes() {
		if r.Path == u.Path {
			return r.Handler(letterCtx(t), &req)
		}
	}
	t.Fatalf("no callback route for %s", u.Path)
	return providers.CallbackResponse{}
}
