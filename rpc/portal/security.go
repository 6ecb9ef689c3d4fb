package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
)

// SecretSize is the size of the portal secret (CSRF tokens are HMACs
// keyed with it).
const SecretSize = 32

// LoadSecret returns the portal secret kept in dir/secret,
// creating it (random, mode 0600) on first use. A file of the wrong size
// is an error, never silently replaced: the operator decides.
func LoadSecret(dir string) ([]byte, error) {
	p := filepath.Join(dir, "secret")
	b, err := os.ReadFile(p) // #nosec G304 -- the operator's data directory
	if err == nil {
		if len(b) != SecretSize {
			return nil, fmt.Errorf("portal: %s holds %d bytes, want %d (delete it to make a new one)", p, len(b), SecretSize)
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("portal: reading the secret: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	b = make([]byte, SecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // #nosec G304 -- see above
	if err != nil {
		return nil, fmt.Errorf("portal: writing the secret: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("portal: writing the secret: %w", err)
	}
	return b, nil
}

// csrfWindow is the life of a CSRF token: a form stays valid for one to
// two windows.
const csrfWindow = 12 * time.Hour

// csrf makes and checks the CSRF tokens of the forms: an HMAC of the
// account (service and token) and the time window, so that a token taken
// from one account's page is worthless on another's.
type csrf struct{ key []byte }

func (c csrf) mac(svc storage.ServiceName, tok storage.AccountToken, window int64) []byte {
	m := hmac.New(sha256.New, c.key)
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(window))
	m.Write([]byte("iapd-portal-csrf\x00"))
	m.Write([]byte(svc))
	m.Write([]byte{0})
	m.Write([]byte(tok))
	m.Write([]byte{0})
	m.Write(w[:])
	return m.Sum(nil)[:24]
}

func (c csrf) token(svc storage.ServiceName, tok storage.AccountToken, now time.Time) string {
	return base64.RawURLEncoding.EncodeToString(c.mac(svc, tok, now.Unix()/int64(csrfWindow/time.Second)))
}

// valid checks a token in constant time against the current and the
// previous window.
func (c csrf) valid(got string, svc storage.ServiceName, tok storage.AccountToken, now time.Time) bool {
	b, err := base64.RawURLEncoding.DecodeString(got)
	if err != nil || len(b) != 24 {
		return false
	}
	w := now.Unix() / int64(csrfWindow/time.Second)
	ok := subtle.ConstantTimeCompare(b, c.mac(svc, tok, w))
	ok |= subtle.ConstantTimeCompare(b, c.mac(svc, tok, w-1))
	return ok == 1
}

// Table sizes of the failed-lookup limits (fixed: 24 bytes a slot).
const (
	limiterSlots = 16384
	goodSlots    = 16384
)

// goodFor is how long a page that was found stays open to its client
// when the client's failed lookups are spent.
const goodFor = 24 * time.Hour

// limiter limits failed lookups (unknown or wrong token or hash, wrong
// voucher code) per client address and in total. So that a bad actor
// sharing an address with customers (a reverse proxy without
// client_ip_header: every client has the proxy's address) does not lock
// them out, a client keeps the pages it opened successfully within
// goodFor (the pair of its address and the page's URI) while its address,
// or everyone, is limited: only new lookups wait. That reveals nothing:
// the exempted URIs are those the client was shown already.
type limiter struct {
	perAddress *limit.Table
	total      *limit.Bucket
	totalRate  limit.Rate
	good       *limit.Table // spent bucket: the (client, URI) was found recently
}

func newLimiter(perMinute, burst, totalPerMinute int) *limiter {
	tr := limit.Rate{Burst: 2 * totalPerMinute, Per: 2 * time.Minute}
	return &limiter{
		perAddress: limit.NewTable(limiterSlots, limit.Rate{Burst: burst, Per: time.Duration(float64(time.Minute) * float64(burst) / float64(perMinute))}),
		total:      limit.NewBucket(tr),
		totalRate:  tr,
		good:       limit.NewTable(goodSlots, limit.Rate{Burst: 1, Per: goodFor}),
	}
}

// goodKey is the key of a page a client opened.
func goodKey(client, uri string) string { return client + "\x00" + uri }

// blocked reports whether the client's or everyone's failed lookups are
// spent, how long to wait, and the refusal reason
// ("portal_failed_lookups" or "portal_failed_lookups_total"). The caller
// exempts the pages the client opened before (isGood).
func (l *limiter) blocked(client, uri string, now time.Time) (bool, time.Duration, string) {
	w := l.perAddress.Wait(client, now)
	reason := "portal_failed_lookups"
	if w == 0 && !l.totalHasRoom(now) {
		w, reason = time.Second, "portal_failed_lookups_total"
	}
	if w == 0 {
		return false, 0, ""
	}
	return true, w, reason
}

// isGood reports whether client opened uri successfully within goodFor.
func (l *limiter) isGood(client, uri string, now time.Time) bool {
	return l.good.Spent(goodKey(client, uri), now)
}

// totalHasRoom reports whether the global budget holds a failure (it
// takes nothing: failures take, in fail).
func (l *limiter) totalHasRoom(now time.Time) bool { return l.total.Tokens(now) >= 1 }

// fail takes one failed lookup from the client's bucket and the global
// one.
func (l *limiter) fail(client string, now time.Time) {
	l.perAddress.Take(client, now)
	l.total.Take(now)
}

// found remembers that client opened uri successfully.
func (l *limiter) found(client, uri string, now time.Time) {
	l.good.Take(goodKey(client, uri), now)
}

// clientKey is the rate-limit key of a request (limit.ClientKey).
func clientKey(ctx *fasthttp.RequestCtx, header string) string { return limit.ClientKey(ctx, header) }

// setSecurityHeaders sets the headers of every portal answer: nothing is
// loaded from elsewhere, no script runs, forms post only here, the page
// is never framed, and no Referer leaves (the URL holds a token).
func setSecurityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	h.Set("Cache-Control", "no-store")
	if ctx.IsTLS() {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}
