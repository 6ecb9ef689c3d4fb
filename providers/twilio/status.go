package twilio

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"sort"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// SetSink implements providers.DeliveryReporter.
func (t *Twilio) SetSink(s providers.DeliverySink) { t.sink = s }

// StatusPath returns the path of the status callback of the instance
// named name: the SMS service gives <public_url><StatusPath> as
// SMS.StatusURL.
func StatusPath(name string) string { return "/providers/" + name + "/status" }

// CallbackRoutes implements providers.Callbacks: the status callback.
func (t *Twilio) CallbackRoutes() []providers.Callback {
	return []providers.Callback{{Path: StatusPath(t.name), Handler: t.status}}
}

// status handles a Twilio status callback: POST, form-encoded, with
// MessageSid, MessageStatus and ErrorCode among the parameters, signed in
// X-Twilio-Signature. A request without a valid signature is answered 403
// and ignored.
func (t *Twilio) status(ctx context.Context, req *providers.CallbackRequest) providers.CallbackResponse {
	if req.Method != http.MethodPost {
		return text(http.StatusMethodNotAllowed, "POST only")
	}
	params, err := url.ParseQuery(string(req.Body))
	if err != nil {
		return text(http.StatusBadRequest, "bad form")
	}
	if t.cfg.AuthToken == "" || !ValidSignature(t.cfg.AuthToken, req.URL, params, req.Header.Get("X-Twilio-Signature")) {
		t.log.Warn("twilio callback refused: bad signature", "remote", req.Remote)
		return text(http.StatusForbidden, "bad signature")
	}
	if sid := params.Get("AccountSid"); sid != "" && sid != t.cfg.AccountSID {
		return text(http.StatusForbidden, "wrong account")
	}
	msgStatus := params.Get("MessageStatus")
	if msgStatus == "" {
		msgStatus = params.Get("SmsStatus")
	}
	sid := params.Get("MessageSid")
	if sid == "" {
		sid = params.Get("SmsSid")
	}
	st, ok := mapStatus(msgStatus, params.Get("ErrorCode"))
	if !ok || sid == "" {
		t.log.Info("twilio callback ignored", "status", msgStatus)
		return text(http.StatusOK, "")
	}
	if t.sink != nil {
		t.sink(ctx, t.name, []providers.DeliveryReport{{ProviderID: sid, Status: st, Code: params.Get("ErrorCode")}})
	}
	return text(http.StatusOK, "")
}

func text(status int, body string) providers.CallbackResponse {
	return providers.CallbackResponse{Status: status, ContentType: "text/plain; charset=utf-8", Body: []byte(body)}
}

// Signature computes Twilio's request signature: base64 of the
// HMAC-SHA1, keyed with the Auth Token, of the full URL followed by each
// POST parameter's name and value, sorted by name (then value).
func Signature(authToken, fullURL string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(fullURL))
	for _, k := range keys {
		vs := append([]string(nil), params[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			mac.Write([]byte(k))
			mac.Write([]byte(v))
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ValidSignature reports, in constant time, whether sig is Twilio's
// signature of the request. Like Twilio's own validators it accepts the
// URL with and without the scheme's default port, since a proxy in front
// may have added or removed it.
func ValidSignature(authToken, fullURL string, params url.Values, sig string) bool {
	if sig == "" {
		return false
	}
	ok := false
	for _, u := range urlVariants(fullURL) {
		// every variant is compared, so the time does not tell which matched
		if vendorhttp.Equal(Signature(authToken, u, params), sig) {
			ok = true
		}
	}
	return ok
}

func urlVariants(s string) []string {
	u, err := url.Parse(s)
	if err != nil {
		return []string{s}
	}
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if def == "" {
		return []string{s}
	}
	host, port, err := net.SplitHostPort(u.Host)
	v := *u
	switch {
	case err != nil: // no port: try with the default one
		v.Host = net.JoinHostPort(u.Host, def)
	case port == def:
		v.Host = host
		if net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
			v.Host = "[" + host + "]"
		}
	default:
		return []string{s}
	}
	return []string{s, v.String()}
}

// mapStatus maps Twilio's MessageStatus (and ErrorCode for failures) onto
// providers.SMSStatus; ok is false for statuses that say nothing of an
// outbound message's delivery (receiving, received, unknown values).
func mapStatus(status, errorCode string) (providers.SMSStatus, bool) {
	switch status {
	case "accepted", "scheduled", "queued", "sending", "sent":
		return providers.SMSAccepted, true
	case "delivered", "read":
		return providers.SMSDelivered, true
	case "undelivered", "failed", "canceled":
		switch errorCode {
		case "30004", // message blocked
			"30005", // unknown destination handset
			"30006", // landline or unreachable carrier
			"30007", // message filtered
			"30034", // unregistered US A2P 10DLC sender
			"21211", "21610", "21612", "21614":
			return providers.SMSRejected, true
		case "30036": // validity period expired
			return providers.SMSExpired, true
		}
		return providers.SMSUndelivered, true
	}
	return "", false
}
