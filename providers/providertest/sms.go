package providertest

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
)

// SMSHarness describes an SMSSender under test.
type SMSHarness struct {
	// New returns a fresh instance whose vendor accepts messages. It
	// registers the instance's Close with t.Cleanup.
	New func(t *testing.T) providers.SMSSender
	// Rejected is a well-formed E.164 number the vendor refuses for the
	// message (the adapter must report Invalid for it alone).
	Rejected string
	// Down returns an instance whose vendor cannot be reached: every
	// message must fail Unavailable (nothing was sent).
	Down func(t *testing.T) providers.SMSSender
	// Hung returns an instance whose vendor receives the request and
	// answers after the adapter's timeout: the first message must fail
	// Indeterminate, the rest Unavailable (not sent). Nil for an adapter
	// without a remote party (outbox), which cannot be indeterminate.
	Hung func(t *testing.T) providers.SMSSender
	// Callback, for a DeliveryReporter whose vendor calls back, returns
	// the callback request the vendor makes to report msg (sent with
	// result res) delivered, and the same request forged (bad or missing
	// signature or secret). Nil when ReportsItself.
	Callback func(t *testing.T, msg providers.SMS, res providers.SMSResult) (good, forged providers.CallbackRequest)
	// ReportsItself is set for a DeliveryReporter that reports to its sink
	// without a vendor callback (outbox).
	ReportsItself bool
	// StatusURL is the SMS.StatusURL the suite gives its messages.
	StatusURL string
}

// TestSMSSender runs the SMSSender conformance suite.
func TestSMSSender(t *testing.T, h SMSHarness) {
	t.Helper()
	if h.New == nil || h.Down == nil || h.Rejected == "" {
		t.Fatal("providertest: SMSHarness needs New, Down and Rejected")
	}
	t.Run("Identity", func(t *testing.T) {
		s := h.New(t)
		if s.Name() == "" || s.Type() == "" {
			t.Errorf("Name() = %q, Type() = %q; want both set", s.Name(), s.Type())
		}
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		res, err := h.New(t).SendSMS(ctx(t), nil)
		if err != nil || len(res) != 0 {
			t.Errorf("SendSMS(nil) = %v, %v; want no results, no error", res, err)
		}
	})
	t.Run("Batch", func(t *testing.T) {
		msgs := []providers.SMS{
			h.msg(1, "+32470000001", "Your order is ready"),
			h.msg(2, "+33612345678", "Ünïcödé ✓ 😀 — ça marche"),
			h.msg(3, "+4915123456789", strings.Repeat("Long message, several segments. ", 12)),
		}
		res := send(t, h.New(t), msgs)
		seen := map[string]bool{}
		for i, r := range res {
			if r.Err != nil {
				t.Errorf("message %d: %v", i, r.Err)
				continue
			}
			if r.Status != providers.SMSAccepted && r.Status != providers.SMSDelivered {
				t.Errorf("message %d: status %q, want accepted or delivered", i, r.Status)
			}
			if r.ProviderID == "" || seen[r.ProviderID] {
				t.Errorf("message %d: provider id %q empty or repeated", i, r.ProviderID)
			}
			seen[r.ProviderID] = true
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		msgs := []providers.SMS{
			h.msg(1, "+32470000001", "first"),
			h.msg(2, "0470 12 34 56", "not E.164"),
			h.msg(3, h.Rejected, "refused by the vendor"),
			h.msg(4, "+32470000004", ""),
			h.msg(5, "+32470000005", "last"),
		}
		res := send(t, h.New(t), msgs)
		for i, want := range []providers.Kind{0, providers.Invalid, providers.Invalid, providers.Invalid, 0} {
			checkKind(t, i, res[i], want)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		c, cancel := context.WithCancel(ctx(t))
		cancel()
		res, err := h.New(t).SendSMS(c, []providers.SMS{h.msg(1, "+32470000001", "x"), h.msg(2, "+32470000002", "y")})
		allKind(t, res, err, 2, providers.Unavailable)
	})
	t.Run("Down", func(t *testing.T) {
		res, err := h.Down(t).SendSMS(ctx(t), []providers.SMS{h.msg(1, "+32470000001", "x"), h.msg(2, "+32470000002", "y")})
		allKind(t, res, err, 2, providers.Unavailable)
	})
	if h.Hung != nil {
		t.Run("Hung", func(t *testing.T) {
			msgs := []providers.SMS{h.msg(1, "+32470000001", "x"), h.msg(2, "+32470000002", "y"), h.msg(3, "+32470000003", "z")}
			res := send(t, h.Hung(t), msgs)
			checkKind(t, 0, res[0], providers.Indeterminate)
			checkKind(t, 1, res[1], providers.Unavailable)
			checkKind(t, 2, res[2], providers.Unavailable)
		})
	}
	t.Run("DeliveryReports", func(t *testing.T) {
		s := h.New(t)
		dr, ok := s.(providers.DeliveryReporter)
		if !ok {
			if h.Callback != nil || h.ReportsItself {
				t.Fatalf("%T is not a providers.DeliveryReporter but the harness describes delivery reports", s)
			}
			return
		}
		if h.Callback == nil && !h.ReportsItself {
			t.Fatal("a DeliveryReporter needs Callback or ReportsItself in its harness")
		}
		got := make(chan providers.DeliveryReport, 16)
		dr.SetSink(func(_ context.Context, provider string, reports []providers.DeliveryReport) {
			if provider != s.Name() {
				t.Errorf("sink called for provider %q, want %q", provider, s.Name())
			}
			for _, r := range reports {
				got <- r
			}
		})
		m := h.msg(1, "+32470000001", "report me")
		res := send(t, s, []providers.SMS{m})
		if res[0].Err != nil {
			t.Fatalf("send: %v", res[0].Err)
		}
		if h.ReportsItself {
			select {
			case r := <-got:
				if r.ProviderID != res[0].ProviderID || r.Status != providers.SMSDelivered {
					t.Errorf("report %+v, want %s delivered", r, res[0].ProviderID)
				}
			case <-ctx(t).Done():
				t.Fatal("no delivery report")
			}
			return
		}
		good, forged := h.Callback(t, m, res[0])
		resp := serve(t, dr, forged)
		if resp.Status != 403 {
			t.Errorf("forged callback answered %d, want 403", resp.Status)
		}
		select {
		case r := <-got:
			t.Fatalf("forged callback produced report %+v", r)
		default:
		}
		resp = serve(t, dr, good)
		if resp.Status < 200 || resp.Status > 299 {
			t.Fatalf("authentic callback answered %d %s", resp.Status, resp.Body)
		}
		select {
		case r := <-got:
			if r.ProviderID != res[0].ProviderID || r.Status != providers.SMSDelivered {
				t.Errorf("report %+v, want %s delivered", r, res[0].ProviderID)
			}
		default:
			t.Fatal("authentic callback produced no report")
		}
	})
}

func (h SMSHarness) msg(i int, to, body string) providers.SMS {
	return providers.SMS{ID: fmt.Sprintf("%032x", i+0xc0ffee), To: to, Body: body, StatusURL: h.StatusURL}
}

// serve finds the callback route matching req's path and calls it.
func serve(t *testing.T, c providers.Callbacks, req providers.CallbackRequest) providers.CallbackResponse {
	t.Helper()
	u, err := url.Parse(req.URL)
	if err != nil {
		t.Fatalf("callback URL %q: %v", req.URL, err)
	}
	for _, r := range c.CallbackRoutes() {
		if r.Path == u.Path {
			return r.Handler(ctx(t), &req)
		}
	}
	t.Fatalf("no callback route for %s (routes: %v)", u.Path, c.CallbackRoutes())
	return providers.CallbackResponse{}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func send(t *testing.T, s providers.SMSSender, msgs []providers.SMS) []providers.SMSResult {
	t.Helper()
	res, err := s.SendSMS(ctx(t), msgs)
	if err != nil {
		t.Fatalf("SendSMS: %v", err)
	}
	if len(res) != len(msgs) {
		t.Fatalf("SendSMS returned %d results for %d messages", len(res), len(msgs))
	}
	for i := range msgs {
		if res[i].ID != msgs[i].ID {
			t.Fatalf("result %d has ID %q, want %q (results in order)", i, res[i].ID, msgs[i].ID)
		}
	}
	return res
}

func checkKind(t *testing.T, i int, r providers.SMSResult, want providers.Kind) {
	t.Helper()
	switch {
	case want == 0 && r.Err != nil:
		t.Errorf("message %d: unexpected failure %v", i, r.Err)
	case want == 0 && r.ProviderID == "":
		t.Errorf("message %d: sent without a provider id", i)
	case want != 0 && r.Err == nil:
		t.Errorf("message %d: succeeded (%s), want %s", i, r.Status, want)
	case want != 0 && r.Err.Kind != want:
		t.Errorf("message %d: %v, want %s", i, r.Err, want)
	case want != 0 && r.Err.Provider == "":
		t.Errorf("message %d: error without the provider name: %v", i, r.Err)
	}
}

// allKind checks that a whole batch met failures of kind want, reported
// either per message or as the batch error.
func allKind(t *testing.T, res []providers.SMSResult, err error, n int, want providers.Kind) {
	t.Helper()
	if err != nil {
		if k := providers.KindOf(err); k != want {
			t.Errorf("batch error %v, want %s", err, want)
		}
		return
	}
	if len(res) != n {
		t.Fatalf("%d results, want %d", len(res), n)
	}
	for i, r := range res {
		checkKind(t, i, r, want)
	}
}
