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
	"hash/maphash"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

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

// limiterSlots is the fixed size of the failed-lookup table: addresses
// hash into it; two addresses in one slot share their bucket (the table
// never grows, whatever the number of clients).
const limiterSlots = 4096

// limiter limits failed lookups per client address: a token bucket per
// slot of a fixed table.
type limiter struct {
	mu    sync.Mutex
	seed  maphash.Seed
	rate  float64 // tokens per second
	burst float64
	slots [limiterSlots]struct {
		tokens float64
		last   int64 // unix nanos of the last refill; 0: never used (full)
	}
}

func newLimiter(perMinute, burst int) *limiter {
	return &limiter{seed: maphash.MakeSeed(), rate: float64(perMinute) / 60, burst: float64(burst)}
}

// slot returns the table index of a client address key.
func (l *limiter) slot(key string) int { return int(maphash.String(l.seed, key) % limiterSlots) }

// refill brings slot i up to now and returns its tokens. l.mu is held.
func (l *limiter) refill(i int, now time.Time) float64 {
	s := &l.slots[i]
	n := now.UnixNano()
	if s.last == 0 {
		s.tokens, s.last = l.burst, n
		return s.tokens
	}
	if d := float64(n-s.last) / 1e9; d > 0 {
		s.tokens = min(l.burst, s.tokens+d*l.rate)
		s.last = n
	}
	return s.tokens
}

// blocked reports whether the client has no failed lookup left, and how
// long until it has one.
func (l *limiter) blocked(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.refill(l.slot(key), now)
	if t >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - t) / l.rate * float64(time.Second))
}

// fail takes one failed lookup from the client's bucket.
func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.slot(key)
	l.refill(i, now)
	l.slots[i].tokens = max(0, l.slots[i].tokens-1)
}

// clientKey is the rate-limit key of a request: the client address (from
// header when set, else the peer), IPv6 addresses cut to their /64 (one
// host owns a whole /64).
func clientKey(ctx *fasthttp.RequestCtx, header string) string {
	ip := ctx.RemoteIP()
	if header != "" {
		if v := string(ctx.Request.Header.Peek(header)); v != "" {
			if i := strings.LastIndexByte(v, ','); i >= 0 {
				v = v[i+1:]
			}
			if p := net.ParseIP(strings.TrimSpace(v)); p != nil {
				ip = p
			}
		}
	}
	if v4 := ip.To4(); v4 != nil {
		return string(v4)
	}
	if len(ip) == net.IPv6len {
		return string(ip[:8])
	}
	return ip.String()
}

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
