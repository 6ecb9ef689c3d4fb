// Package vendorhttp holds what the HTTP-speaking provider adapters
// (providers/twilio, providers/vonage, providers/httpsms, …) and the alert
// dispatcher's webhook (rpc/notify) share: one call
// to a vendor API with its failure classified by what became of the
// request (providers.Unavailable when it was never sent, Indeterminate when
// it was sent and the answer was lost), phone-number checks and redaction,
// constant-time secret comparison, and the SMS adapters' common checks of
// a message and of their configuration (sms.go).
//
// It imports only the standard library and providers. Errors it returns
// never carry the request URL (which may hold credentials, as Kannel's
// sendsms query does).
package vendorhttp

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/iapd/iapd/providers"
)

// MaxBody bounds the vendor answers read.
const MaxBody = 1 << 20

// Response is a vendor's answer, read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends req with client and reads the answer (at most MaxBody bytes).
// provider is the instance name the returned *providers.Error carries.
//
// Failures: ctx already done, or an error before the request was fully
// written (DNS, connection refused, TLS handshake) → Unavailable; an
// error after it was written (timeout waiting for the answer, connection
// reset) or an answer whose body cannot be read → Indeterminate. Any HTTP
// status is returned as a Response, not an error: the caller classifies
// it with its vendor's rules (see ClassifyStatus).
func Do(ctx context.Context, client *http.Client, provider string, req *http.Request) (*Response, *providers.Error) {
	if err := ctx.Err(); err != nil {
		return nil, &providers.Error{Provider: provider, Kind: providers.Unavailable, Msg: "not sent", Err: err}
	}
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	}
	req = req.WithContext(httptrace.WithClientTrace(ctx, trace))
	resp, err := client.Do(req)
	if err != nil {
		err = stripURL(err)
		if wrote.Load() {
			return nil, &providers.Error{Provider: provider, Kind: providers.Indeterminate, Msg: "sent, no answer", Err: err}
		}
		return nil, &providers.Error{Provider: provider, Kind: providers.Unavailable, Msg: "not sent", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return nil, &providers.Error{Provider: provider, Kind: providers.Indeterminate, Msg: "answer unreadable", Err: stripURL(err)}
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// stripURL drops the URL a *url.Error carries (it may hold credentials).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// ClassifyStatus returns the kind of a non-success HTTP status from a
// vendor that refused before accepting: 401, 403, 408, 429 and 5xx →
// Unavailable (nothing was done; another provider may do it), other 4xx
// → Invalid.
func ClassifyStatus(status int) providers.Kind {
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden,
		status == http.StatusRequestTimeout, status == http.StatusTooManyRequests,
		status >= 500:
		return providers.Unavailable
	}
	return providers.Invalid
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// ValidE164 reports whether s is an E.164 number ("+" and 7 to 15
// digits, no leading zero).
func ValidE164(s string) bool { return e164.MatchString(s) }

// Phone is a phone number that logs redacted (all but the country part
// and the last 3 digits masked).
type Phone string

// LogValue implements slog.LogValuer.
func (p Phone) LogValue() slog.Value { return slog.StringValue(RedactPhone(string(p))) }

// RedactPhone masks the middle of a phone number: "+32470123456" →
// "+32******456".
func RedactPhone(s string) string {
	if len(s) <= 6 {
		return strings.Repeat("*", len(s))
	}
	return s[:3] + strings.Repeat("*", len(s)-6) + s[len(s)-3:]
}

// Equal compares two secrets in constant time (for equal lengths; the
// length itself is not secret).
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// gsm7 is the GSM 03.38 default alphabet and its extension table (the
// characters a carrier sends without switching to UCS-2).
const gsm7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà" +
	"\f^{}\\[~]|€"

// IsGSM7 reports whether s can be sent in the GSM-7 alphabet; otherwise
// the message needs UCS-2 ("unicode").
func IsGSM7(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune(gsm7, r) {
			return false
		}
	}
	return true
}

// SendEach sends n messages with send, at most concurrency at a time,
// and returns their results in order. Messages are started in order; once
// one fails Unavailable or Indeterminate, those not yet started are not
// sent and get an Unavailable error (the SMSSender contract).
func SendEach(ctx context.Context, provider string, msgs []providers.SMS, concurrency int, send func(context.Context, providers.SMS) providers.SMSResult) []providers.SMSResult {
	if concurrency < 1 {
		concurrency = 1
	}
	out := make([]providers.SMSResult, len(msgs))
	var stop atomic.Bool
	sem := make(chan struct{}, concurrency)
	done := make(chan struct{})
	pending := atomic.Int64{}
	pending.Store(int64(len(msgs)))
	if len(msgs) == 0 {
		return out
	}
	finish := func() {
		if pending.Add(-1) == 0 {
			close(done)
		}
	}
	for i, m := range msgs {
		sem <- struct{}{}
		if stop.Load() || ctx.Err() != nil {
			<-sem
			out[i] = providers.SMSResult{ID: m.ID, Err: &providers.Error{Provider: provider, Kind: providers.Unavailable, Msg: "not sent: an earlier message of the batch failed or the batch was cancelled"}}
			finish()
			continue
		}
		go func() {
			defer finish()
			defer func() { <-sem }()
			r := send(ctx, m)
			r.ID = m.ID
			if r.Err != nil && (r.Err.Kind == providers.Unavailable || r.Err.Kind == providers.Indeterminate) {
				stop.Store(true)
			}
			out[i] = r
		}()
	}
	<-done
	return out
}

// Host returns the host (and port, if explicit) of a base URL, for
// providers.Endpoints.
func Host(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return u.Host
}
