package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// grow creates n accounts of service in iapd the way Odoo databases do:
// one /iap/1/balance call per new account token (PROTOCOL §2.1), which
// registers the account when the service auto-registers. The tokens are
// fresh for each call of grow (a random prefix, then a counter), so every
// successful call is one new account; each call names its own database
// (dbuuid), as a new Odoo database would. It calls from conns connections,
// prints a progress line at every tenth of n and a summary, and returns an
// error when any call failed (the errors by kind: an account-creation
// limit of iapd refuses with rpc_AccessError, say) or ctx ended first.
func grow(ctx context.Context, out *bytes.Buffer, flush func(), t *target, service string, n, conns int) error {
	var prefix [4]byte
	rand.Read(prefix[:])
	pre := hex.EncodeToString(prefix[:])
	svc, _ := json.Marshal(service)
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		errs       = map[string]int64{}
		wg         sync.WaitGroup
		step       = max(int64(n)/10, 1)
	)
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{t: t}
			defer c.close()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				c.params = fmt.Appendf(c.params[:0], `{"dbuuid": "iapload-%s%024x", "account_token": "%s%024x", "service_name": %s}`, pre, i, pre, i, svc)
				if _, kind := c.call("/iap/1/balance", c.params); kind != "" {
					mu.Lock()
					errs[kind]++
					mu.Unlock()
					continue
				}
				if d := done.Add(1); d%step == 0 && d < int64(n) {
					mu.Lock()
					fmt.Fprintf(out, "grow      %d accounts, %.0f/s\n", d, float64(d)/time.Since(start).Seconds())
					flush()
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	created := done.Load()
	fmt.Fprintf(out, "grow      %d new accounts of service %s in %.1f s (%.0f/s)", created, service, elapsed.Seconds(), float64(created)/elapsed.Seconds())
	var failed int64
	if len(errs) > 0 {
		kinds := make([]string, 0, len(errs))
		for k, v := range errs {
			kinds = append(kinds, k)
			failed += v
		}
		sort.Strings(kinds)
		fmt.Fprint(out, "  errors")
		for _, k := range kinds {
			fmt.Fprintf(out, " %s=%d", k, errs[k])
		}
	}
	fmt.Fprintln(out)
	flush()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("grow: stopped after %d of %d accounts: %w", created, n, err)
	}
	if failed > 0 {
		return fmt.Errorf("grow: %d of %d balance calls failed", failed, n)
	}
	return nil
}
