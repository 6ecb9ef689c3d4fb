package portal

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/iapd/iapd/rpc/limit"
	"github.com/iapd/iapd/storage"
)

// TestOneAddressCannotLockOutOthers (issue 13, finding 8): behind a
// reverse proxy without client_ip_header every client has the proxy's
// address (here all requests carry the same X-Test-IP). A bad actor
// spending the address's failed lookups no longer locks the customers
// out of the pages they opened before; only new lookups and voucher
// forms wait, with Retry-After. Each refusal is counted.
func TestOneAddressCannotLockOutOthers(t *testing.T) {
	e := newEnv(t, Config{FailedLookupsPerMinute: 1, FailedLookupsBurst: 3})
	c := &countRefusals{m: map[string]int{}}
	e.portal.refusals = newTestReporter(c)
	e.account(storage.SMS, tokA, "5")
	e.account(storage.SMS, tokB, "5")
	// A customer opens its page (Odoo's link), and once more with its
	// form's CSRF token for later.
	if st, _ := e.get(hashedLink("sms", tokA)); st != 200 {
		t.Fatalf("customer A: %d", st)
	}
	csrf := e.csrfFor(hashedLink("sms", tokA))
	// The bad actor, same address: 50 guesses.
	limited := 0
	for i := range 50 {
		st, _ := e.get(hashedLink("sms", fmt.Sprintf("%032x", i+1)))
		if st == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 47 {
		t.Fatalf("%d of 50 guesses limited, want 47", limited)
	}
	// Customer A still opens its page.
	for range 5 {
		if st, _ := e.get(hashedLink("sms", tokA)); st != 200 {
			t.Fatalf("customer A locked out by another client of its address: %d", st)
		}
	}
	// A voucher form (a guess could hide in it) waits.
	st, h, _ := e.do("POST", hashedLink("sms", tokA), redeemForm(tokA, csrf, "7K3QF-9ZC1M-T4WXA-0B8RD"), nil)
	if st != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("voucher form from a limited address: %d", st)
	}
	// A customer who never opened its page from here waits too (a new
	// lookup is indistinguishable from a guess), with Retry-After.
	st, h, _ = e.do("GET", hashedLink("sms", tokB), nil, nil)
	if st != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("new lookup from a limited address: %d", st)
	}
	// Another address is not affected.
	if st, _, _ := e.do("GET", hashedLink("sms", tokB), nil, map[string]string{"X-Test-IP": "198.51.100.9"}); st != 200 {
		t.Fatalf("another address: %d", st)
	}
	if c.get("portal_failed_lookups") != 49 {
		t.Fatalf("refusals counted: %v", c)
	}
}

// TestFailedLookupsGlobalBound: failures from many addresses spend the
// global budget; new lookups then wait everywhere, pages already opened
// stay open.
func TestFailedLookupsGlobalBound(t *testing.T) {
	e := newEnv(t, Config{FailedLookupsPerMinute: 10, FailedLookupsBurst: 20, FailedLookupsTotalPerMinute: 5})
	c := &countRefusals{m: map[string]int{}}
	e.portal.refusals = newTestReporter(c)
	e.account(storage.SMS, tokA, "5")
	e.account(storage.SMS, tokB, "5")
	if st, _ := e.get(hashedLink("sms", tokA)); st != 200 {
		t.Fatal(st)
	}
	for i := range 10 { // 10 addresses, one failure each: the total (10 at once) spent
		e.do("GET", hashedLink("sms", fmt.Sprintf("%032x", i+1)), nil, map[string]string{"X-Test-IP": fmt.Sprintf("203.0.113.%d", i+1)})
	}
	if st, _, _ := e.do("GET", hashedLink("sms", tokB), nil, map[string]string{"X-Test-IP": "198.51.100.77"}); st != http.StatusTooManyRequests {
		t.Fatalf("new lookup with the global budget spent: %d", st)
	}
	if st, _ := e.get(hashedLink("sms", tokA)); st != 200 {
		t.Fatalf("a page opened before, global budget spent: %d", st)
	}
	if c.get("portal_failed_lookups_total") != 1 {
		t.Fatalf("refusals: %v", c)
	}
}

// countRefusals counts refusals by reason (the handlers run on the
// server's goroutines).
type countRefusals struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *countRefusals) Refused(r string) { c.mu.Lock(); c.m[r]++; c.mu.Unlock() }
func (c *countRefusals) get(r string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.m[r] }

func newTestReporter(c *countRefusals) *limit.Reporter { return limit.NewReporter(c, nil, 0) }
