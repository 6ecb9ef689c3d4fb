package vendorhttp

import (
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/iapd/iapd/providers"
)

// Fail is the result of a message that failed with kind k.
func Fail(provider string, k providers.Kind, code, msg string) providers.SMSResult {
	return providers.SMSResult{Err: &providers.Error{Provider: provider, Kind: k, Code: code, Msg: msg}}
}

// CheckSMS returns the Invalid result of a message no vendor can send (a
// number that is not E.164: code wrong_number_format; an empty body:
// empty_body) and true, or false for a message that may be sent.
func CheckSMS(provider string, m providers.SMS) (providers.SMSResult, bool) {
	if !ValidE164(m.To) {
		return Fail(provider, providers.Invalid, "wrong_number_format", "number is not E.164"), true
	}
	if m.Body == "" {
		return Fail(provider, providers.Invalid, "empty_body", "empty message"), true
	}
	return providers.SMSResult{}, false
}

// CheckBaseURL sets *base to def when empty, checks that it is an http(s)
// URL without credentials (the error names base_url, never the value)
// and cuts its trailing slashes.
func CheckBaseURL(base *string, def string) error {
	if *base == "" {
		*base = def
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return errors.New("base_url: want an http(s) URL without credentials")
	}
	*base = strings.TrimRight(*base, "/")
	return nil
}

// CheckLimits sets a zero *timeout to 10s and a zero *concurrency to 4,
// and checks that the timeout is positive and the concurrency 1 to 64.
func CheckLimits(timeout *time.Duration, concurrency *int) error {
	if *timeout == 0 {
		*timeout = 10 * time.Second
	}
	if *timeout < 0 {
		return errors.New("timeout: must be positive")
	}
	if *concurrency == 0 {
		*concurrency = 4
	}
	if *concurrency < 1 || *concurrency > 64 {
		return errors.New("concurrency: want 1 to 64")
	}
	return nil
}
