package httpsms

import (
	"context"
	"net/http"
	"testing"

	"github.com/iapd/iapd/providers"
)

// FuzzReport feeds arbitrary delivery reports to the callback: it never
// panics, and nothing without the secret reaches the sink.
func FuzzReport(f *testing.F) {
	f.Add("GET", statusURL+"?token=x&id=1&status=1", "")
	f.Add("POST", statusURL, "token=dlr-shared-secret-012345678&id=1&status=1")
	f.Add("GET", "%zz", "")
	f.Fuzz(func(t *testing.T, method, u, body string) {
		g := newGateway(t, kannelConfig("http://127.0.0.1:1", ""), nil)
		g.SetSink(func(context.Context, string, []providers.DeliveryReport) { t.Fatal("forged report reported") })
		req := providers.CallbackRequest{Method: method, URL: u, Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte(body)}
		if resp := g.report(context.Background(), &req); resp.Status == 200 {
			t.Fatal("report without the secret answered 200")
		}
	})
}
