package twilio

import (
	"context"
	"net/http"
	"testing"

	"github.com/iapd/iapd/providers"
)

// FuzzStatus feeds arbitrary callbacks to the status handler: it never
// panics, and nothing without a valid signature reaches the sink.
func FuzzStatus(f *testing.F) {
	f.Add("POST", statusURL, "MessageSid=SM1&MessageStatus=delivered", "bad")
	f.Add("POST", statusURL, "%zz", "")
	f.Add("GET", statusURL+"?MessageSid=SM1", "", "x")
	f.Fuzz(func(t *testing.T, method, u, body, sig string) {
		tw := newTwilio(t, "http://127.0.0.1:1", "", nil)
		tw.SetSink(func(context.Context, string, []providers.DeliveryReport) { t.Fatal("forged callback reported") })
		req := providers.CallbackRequest{Method: method, URL: u, Header: http.Header{"X-Twilio-Signature": {sig}}, Body: []byte(body)}
		if resp := tw.status(context.Background(), &req); resp.Status == 200 {
			t.Fatal("unsigned callback answered 200")
		}
	})
}
