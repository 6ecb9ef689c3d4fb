package vonage

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"hash"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// SetSink implements providers.DeliveryReporter.
func (v *Vonage) SetSink(s providers.DeliverySink) { v.sink = s }

// StatusPath returns the path of the delivery-receipt callback of the
// instance named name: the SMS service gives <public_url><StatusPath> as
// SMS.StatusURL.
func StatusPath(name string) string { return "/providers/" + name + "/status" }

// CallbackRoutes implements providers.Callbacks: the delivery receipts.
func (v *Vonage) CallbackRoutes() []providers.Callback {
	return []providers.Callback{{Path: StatusPath(v.name), Handler: v.receipt}}
}

// MaxSkew is how far a signed receipt's timestamp may be from now
// (replay defence).
const MaxSkew = 5 * time.Minute

// receipt handles a delivery receipt: GET with the fields in the query,
// or POST form-encoded or JSON. It is verified (signature or token)
// before anything is read from it; a forged one is answered 403.
func (v *Vonage) receipt(ctx context.Context, req *providers.CallbackRequest) providers.CallbackResponse {
	params, err := receiptParams(req)
	if err != nil {
		return text(http.StatusBadRequest, "bad receipt")
	}
	if !v.authentic(params) {
		v.log.Warn("vonage receipt refused: bad signature or token", "remote", req.Remote)
		return text(http.StatusForbidden, "forbidden")
	}
	if k := params.Get("api-key"); k != "" && k != v.cfg.APIKey {
		return text(http.StatusForbidden, "wrong account")
	}
	id := params.Get("messageId")
	st, ok := mapStatus(params.Get("status"), params.Get("err-code"))
	if !ok || id == "" {
		v.log.Info("vonage receipt ignored", "status", params.Get("status"))
		return text(http.StatusOK, "")
	}
	if v.sink != nil {
		code := params.Get("err-code")
		if code == "0" {
			code = ""
		}
		v.sink(ctx, v.name, []providers.DeliveryReport{{ProviderID: id, Status: st, Code: code}})
	}
	return text(http.StatusOK, "")
}

// receiptParams collects a receipt's fields: the URL query, plus the body
// for a POST (form or JSON).
func receiptParams(req *providers.CallbackRequest) (url.Values, error) {
	u, err := url.Parse(req.URL)
	if err != nil {
		return nil, err
	}
	params := u.Query()
	if req.Method != http.MethodPost || len(req.Body) == 0 {
		return params, nil
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if ct == "application/json" {
		var m map[string]any
		if err := json.Unmarshal(req.Body, &m); err != nil {
			return nil, err
		}
		for k, x := range m {
			switch x := x.(type) {
			case string:
				params.Set(k, x)
			case float64:
				params.Set(k, strconv.FormatFloat(x, 'f', -1, 64))
			case bool:
				params.Set(k, strconv.FormatBool(x))
			}
		}
		return params, nil
	}
	body, err := url.ParseQuery(string(req.Body))
	if err != nil {
		return nil, err
	}
	for k, vs := range body {
		params[k] = vs
	}
	return params, nil
}

// authentic checks a receipt: with a signature secret, its sig over the
// other fields and a timestamp within MaxSkew; without, the token the
// callback URL carries. Both compared in constant time.
func (v *Vonage) authentic(params url.Values) bool {
	if v.cfg.SignatureSecret == "" {
		return vendorhttp.Equal(params.Get("iapd_token"), v.token) && v.token != ""
	}
	sig := params.Get("sig")
	ts, err := strconv.ParseInt(params.Get("timestamp"), 10, 64)
	if sig == "" || err != nil {
		return false
	}
	if d := v.now().Sub(time.Unix(ts, 0)); d > MaxSkew || d < -MaxSkew {
		return false
	}
	want := Sign(v.cfg.SignatureMethod, v.cfg.SignatureSecret, params)
	return vendorhttp.Equal(strings.ToLower(sig), strings.ToLower(want))
}

// Sign computes Vonage's signature of params (without "sig"): the
// parameters sorted by name, each as "&name=value" with "&" and "=" in
// values replaced by "_"; method "md5hash" is the MD5 of that string
// followed by the secret, the others the HMAC of the string keyed with
// the secret. Hex-encoded, lower case (Vonage sends either case).
func Sign(method, secret string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "sig" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	clean := strings.NewReplacer("&", "_", "=", "_")
	for _, k := range keys {
		b.WriteString("&" + k + "=" + clean.Replace(params.Get(k)))
	}
	if method == "md5hash" {
		sum := md5.Sum([]byte(b.String() + secret))
		return hex.EncodeToString(sum[:])
	}
	var h func() hash.Hash
	switch method {
	case "md5":
		h = md5.New
	case "sha1":
		h = sha1.New
	case "sha512":
		h = sha512.New
	default:
		h = sha256.New
	}
	mac := hmac.New(h, []byte(secret))
	mac.Write([]byte(b.String()))
	return hex.EncodeToString(mac.Sum(nil))
}

// mapStatus maps a receipt's status and err-code onto
// providers.SMSStatus; ok is false for "unknown" (the carrier said
// nothing usable: no report rather than a false failure).
func mapStatus(status, errCode string) (providers.SMSStatus, bool) {
	switch status {
	case "delivered":
		return providers.SMSDelivered, true
	case "accepted", "buffered":
		return providers.SMSAccepted, true
	case "expired":
		return providers.SMSExpired, true
	case "failed", "rejected":
		switch errCode {
		case "4", // call barred by user
			"6",  // anti-spam rejection
			"9",  // illegal number
			"10", // illegal message
			"11", // unroutable
			"13", // subscriber age restriction
			"14": // number blocked by carrier
			return providers.SMSRejected, true
		}
		if status == "rejected" {
			return providers.SMSRejected, true
		}
		return providers.SMSUndelivered, true
	}
	return "", false
}

func text(status int, body string) providers.CallbackResponse {
	return providers.CallbackResponse{Status: status, ContentType: "text/plain; charset=utf-8", Body: []byte(body)}
}
