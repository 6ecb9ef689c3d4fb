package vonage

import (
	"context"
	"net/http"
	"testing"

	"github.com/iapd/iapd/providers"
)

// FuzzReceipt feeds arbitrary receipts to the callback: it never panics,
// and nothing unsigned reaches the sink.
func FuzzReceipt(f *testing.F) {
	f.Add("GET", "https://iapd.example.com/providers/vonage-test/status?messageId=1&status=delivered", "", []byte(nil))
	f.Add("POST", "https://iapd.example.com/providers/vonage-test/status", "application/json", []byte(`{"messageId":"1","status":"delivered","sig":"x","timestamp":1}`))
	f.Add("POST", "https://iapd.example.com/providers/vonage-test/status", "application/x-www-form-urlencoded", []byte("messageId=1&status=delivered&sig=%zz"))
	f.Fuzz(func(t *testing.T, method, u, ct string, body []byte) {
		v := newVonage(t, "http://127.0.0.1:1", "signature_secret: "+testSig, nil)
		v.SetSink(func(context.Context, string, []providers.DeliveryReport) { t.Fatal("forged receipt reported") })
		req := providers.CallbackRequest{Method: method, URL: u, Header: http.Header{"Content-Type": {ct}}, Body: body}
		if resp := v.receipt(context.Background(), &req); resp.Status == 200 {
			t.Fatalf("unsigned receipt answered 200")
		}
	})
}
