package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Finding 4 of issue 13: a full data volume killed iapd with SIGBUS
// (Badger writes its memtables and tables through mmap), and it could not
// start again. These tests fill a small volume through the public
// listener, as an anonymous caller would (new accounts), and check that
// iapd refuses new writes with an answer Odoo reads (PROTOCOL §1.3–1.4: a
// UserError, shown as a temporary server problem), keeps serving reads,
// captures and cancels, says why on /readyz, restarts on the full volume,
// refuses cleanly to start when even opening cannot fit, and resumes
// writes by itself when space returns. Never a SIGBUS.

// The abuse limits (account creation per address and in total) are
// raised: this test fills the disk from one address on purpose.
const diskConfig = `
disk_reserve: 0
limits:
  accounts_per_address: 10000000/1h
  accounts_total: 10000000/1h
services:
  geo:
    auto_register: true
    trial_credits: 100
`

// TestAbuseDiskTmpfs runs the scenario on a 16 MB tmpfs.
func TestAbuseDiskTmpfs(t *testing.T) {
	dir := mountForTest(t, "tmpfs", func(mnt string) []string {
		return []string{"mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt}
	})
	diskScenario(t, dir)
}

// TestAbuseDiskExt4 runs the scenario on a loop-mounted 32 MiB ext4.
func TestAbuseDiskExt4(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			needTool(t, tool+" is missing (install e2fsprogs / util-linux): the ext4 half of finding 4 is not tested")
		}
	}
	img := filepath.Join(t.TempDir(), "ext4.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(32 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	dir := mountForTest(t, "ext4", func(mnt string) []string {
		return []string{"mount", "-o", "loop", img, mnt}
	})
	diskScenario(t, dir)
}

// needTool skips (or, in CI, fails) a test that cannot run here.
func needTool(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// mountForTest mounts a file system (cmd gives the mount command for the
// mount point) and unmounts it at the end. Mounting needs root: outside CI
// the test is skipped without it; in CI (CI=true) a failure to mount fails.
func mountForTest(t *testing.T, kind string, cmd func(mnt string) []string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		needTool(t, "mounting a "+kind+" needs root")
	}
	mnt := t.TempDir()
	args := cmd(mnt)
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		needTool(t, fmt.Sprintf("cannot mount a %s: %v: %s", kind, err, out))
	}
	t.Cleanup(func() {
		// After the server (registered later, so cleaned up first).
		for i := 0; ; i++ {
			out, err := exec.Command("umount", mnt).CombinedOutput()
			if err == nil {
				return
			}
			if i == 50 {
				t.Errorf("umount %s: %v: %s; detaching it lazily", mnt, err, out)
				_ = exec.Command("umount", "-l", mnt).Run()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return mnt
}

// freeBytes is what iapd measures: statfs's blocks available times the
// block size.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill appends zeros to path until free space is at most target (0: until
// the volume refuses). It returns the bytes written.
func fill(t *testing.T, path string, mnt string, target int64) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		free := freeBytes(t, mnt)
		if target > 0 && free <= target {
			break
		}
		chunk := buf
		if target > 0 && free-target < int64(len(chunk)) {
			chunk = buf[:max(free-target, 4096)]
		}
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Fatal(err)
		}
	}
	return n
}

// metricValue reads one sample of /metrics (0 when absent).
func metricValue(t *testing.T, p *abuseProc, name string) float64 {
	t.Helper()
	resp, err := http.Get(p.Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// noFault fails the test if the server's output shows a crash.
func noFault(t *testing.T, stderr string) {
	t.Helper()
	for _, s := range []string{"SIGBUS", "unexpected fault address", "fatal error:", "panic:"} {
		if strings.Contains(stderr, s) {
			t.Fatalf("iapd crashed (%q):\n%s", s, stderr)
		}
	}
}

// isDiskRefusal reports whether an answer is the refusal of a write for
// lack of space: Odoo's UserError with the temporary-problem text.
func isDiskRefusal(e *rpcError) bool {
	return e != nil && strings.HasSuffix(e.Name, ".UserError") && strings.Contains(e.Message, "temporarily unavailable")
}

// isBalanceDiskRefusal is that refusal on an account route (a balance
// creating an account): AccessError, which get_credits catches (-1),
// never UserError, which Odoo 17–19 let escape there (PROTOCOL §4.1).
func isBalanceDiskRefusal(e *rpcError) bool {
	return e != nil && strings.HasSuffix(e.Name, ".AccessError") && strings.Contains(e.Message, "temporarily unavailable")
}

func diskScenario(t *testing.T, mnt string) {
	data := filepath.Join(mnt, "data")
	p := startAbuse(t, abuseOpts{Config: diskConfig, Data: data})
	ctx := context.Background()
	var key struct {
		Key string `json:"key"`
	}
	if err := p.Admin.call(ctx, "POST", "/v1/services/geo/key", nil, nil, &key); err != nil {
		t.Fatal(err)
	}
	// An account with holds taken while space is plentiful.
	holder, holderDB := randHex(16), randHex(16) // trial credit is granted once per database (dbuuid)
	var holds []string
	for range 4 {
		res, rerr, err := p.Call("/iap/1/authorize", map[string]any{"account_token": holder, "key": key.Key, "credit": 1, "ttl": 1, "dbuuid": holderDB}, 30*time.Second)
		if err != nil || rerr != nil {
			t.Fatalf("authorize: %v %v", rerr, err)
		}
		var txn string
		if err := json.Unmarshal(res, &txn); err != nil {
			t.Fatal(err)
		}
		holds = append(holds, txn)
	}

	// A filler leaves a few MB above the reserve; new accounts (each
	// created by a balance call with a random token) take the rest.
	reserve := int64(metricValue(t, p, "iap_disk_reserve_bytes"))
	if reserve <= 0 {
		t.Fatal("iap_disk_reserve_bytes not reported")
	}
	filler := filepath.Join(mnt, "filler")
	fill(t, filler, mnt, reserve+3<<20)
	t.Logf("free %d bytes, reserve %d: creating accounts", freeBytes(t, mnt), reserve)

	var (
		accepted, refused atomic.Int64
		freeAtRefusal     atomic.Int64
		other             atomic.Value
		wg                sync.WaitGroup
		stop              = make(chan struct{})
	)
	freeAtRefusal.Store(-1)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": randHex(16), "service_name": "geo"}, 30*time.Second)
				switch {
				case err != nil:
					other.CompareAndSwap(nil, err.Error())
				case rerr == nil:
					accepted.Add(1)
				case isBalanceDiskRefusal(rerr):
					if refused.Add(1) == 1 {
						var st syscall.Statfs_t
						if syscall.Statfs(mnt, &st) == nil {
							freeAtRefusal.Store(int64(st.Bavail) * int64(st.Bsize))
						}
					}
				default:
					other.CompareAndSwap(nil, rerr.Name+": "+rerr.Message)
				}
			}
		}()
	}
	deadline := time.Now().Add(3 * time.Minute)
	for refused.Load() < 200 && time.Now().Before(deadline) {
		if o := other.Load(); o != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // refusals go on: the process must stay up
	close(stop)
	wg.Wait()
	if o := other.Load(); o != nil {
		t.Fatalf("an answer that is neither success nor the disk refusal: %v\n%s", o, p.Stderr.String())
	}
	if refused.Load() == 0 {
		t.Fatalf("no refusal after %d accounts, %d bytes free", accepted.Load(), freeBytes(t, mnt))
	}
	if exited, err := p.Exited(); exited {
		t.Fatalf("iapd exited: %v\n%s", err, p.Stderr.String())
	}
	noFault(t, p.Stderr.String())
	abuseFigure(t, "%d accounts accepted, refusals started with %d bytes free (reserve %d), %d refused; %d bytes free after",
		accepted.Load(), freeAtRefusal.Load(), int64(metricValue(t, p, "iap_disk_reserve_bytes")), refused.Load(), freeBytes(t, mnt))
	if n := metricValue(t, p, `iap_refusals_total{reason="disk_full"}`); n < float64(refused.Load()) {
		t.Errorf("iap_refusals_total{reason=\"disk_full\"} = %v, want at least %d", n, refused.Load())
	}
	checkDegraded(t, p)

	// Reads, captures and cancels go on.
	if res, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": holder, "service_name": "geo"}, 30*time.Second); err != nil || rerr != nil || !balanceIs(res, 96) {
		t.Fatalf("balance of an existing account below the reserve: %s %v %v", res, rerr, err)
	}
	if _, rerr, err := p.Call("/iap/1/capture", map[string]any{"token": holds[0], "key": key.Key, "credit_to_capture": 1}, 30*time.Second); err != nil || rerr != nil {
		t.Fatalf("capture below the reserve: %v %v", rerr, err)
	}
	if _, rerr, err := p.Call("/iap/1/cancel", map[string]any{"token": holds[1], "key": key.Key}, 30*time.Second); err != nil || rerr != nil {
		t.Fatalf("cancel below the reserve: %v %v", rerr, err)
	}
	if _, rerr, err := p.Call("/iap/1/authorize", map[string]any{"account_token": holder, "key": key.Key, "credit": 1, "ttl": 1, "dbuuid": holderDB}, 30*time.Second); err != nil || !isDiskRefusal(rerr) {
		t.Fatalf("authorize below the reserve: %v %v (want the temporary-problem UserError, not InsufficientCreditError)", rerr, err)
	}

	// Something else fills the volume to the last byte while iapd is idle
	// (Badger's background work done): iapd stays up, serves reads, says
	// so, and stops cleanly, leaving what it cannot flush to the next
	// start.
	time.Sleep(2 * time.Second)
	filler2 := filepath.Join(mnt, "filler2")
	fill(t, filler2, mnt, 0)
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, body := p.Readyz()
		if code == 200 && strings.Contains(body, "disk space critical") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz on a full volume: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": holder, "service_name": "geo"}, 30*time.Second); err != nil || rerr != nil || !balanceIs(res, 97) {
		t.Fatalf("balance on a full volume: %s %v %v", res, rerr, err)
	}
	if _, rerr, err := p.Call("/iap/1/cancel", map[string]any{"token": holds[2], "key": key.Key}, 30*time.Second); err != nil || !isDiskRefusal(rerr) {
		t.Fatalf("cancel on a full volume: %v %v (want the temporary-problem refusal)", rerr, err)
	}
	reserveAtStop := int64(metricValue(t, p, "iap_disk_reserve_bytes"))
	p.Stop()
	noFault(t, p.Stderr.String())

	// On the full volume iapd refuses to start, naming the shortfall, and
	// does not fault.
	bin := abuseBinary(t, "")
	out, err := exec.Command(bin, "serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data, "-log-level", "warn").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("start on a volume with %d bytes free: %v (want a clean exit with an error)\n%s", freeBytes(t, mnt), err, out)
	}
	noFault(t, string(out))
	if !strings.Contains(string(out), "free at least") {
		t.Fatalf("the refusal to start does not name the shortfall:\n%s", out)
	}
	abuseFigure(t, "start with %d bytes free refused: %s", freeBytes(t, mnt), lastLine(string(out)))
	if err := os.Remove(filler2); err != nil {
		t.Fatal(err)
	}
	// Close deleted the journal, which holds every write since the last
	// rotation (the accounts created above among them): fill that space
	// again, so that the restart is below the reserve.
	fill(t, filler2, mnt, reserveAtStop-256<<10)

	// Restart below the reserve: it starts, refusing new writes, serving
	// reads.
	p = startAbuse(t, abuseOpts{Config: diskConfig, Data: data})
	checkDegraded(t, p)
	if _, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": randHex(16), "service_name": "geo"}, 30*time.Second); err != nil || !isBalanceDiskRefusal(rerr) {
		t.Fatalf("new account after a restart below the reserve: %v %v", rerr, err)
	}
	if res, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": holder, "service_name": "geo"}, 30*time.Second); err != nil || rerr != nil || !balanceIs(res, 97) {
		t.Fatalf("balance after a restart below the reserve: %s %v %v (want 97: 1 captured, 2 held)", res, rerr, err)
	}

	// Space returns: writes resume by themselves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		_, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": randHex(16), "service_name": "geo"}, 30*time.Second)
		if err == nil && rerr == nil {
			break
		}
		if err != nil || !isBalanceDiskRefusal(rerr) {
			t.Fatalf("after space returned: %v %v", rerr, err)
		}
		if time.Since(start) > time.Minute {
			t.Fatal("writes did not resume within a minute of space returning")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resumed := time.Since(start)
	if code, body := p.Readyz(); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Errorf("/readyz after space returned: %d %s", code, body)
	}
	abuseFigure(t, "writes resumed %.3f s after space was freed (%d bytes free)", resumed.Seconds(), freeBytes(t, mnt))
	p.Stop()
	noFault(t, p.Stderr.String())
}

// checkDegraded checks /readyz while writes are refused: 200 (reads are
// served) with the reason.
func checkDegraded(t *testing.T, p *abuseProc) {
	t.Helper()
	code, body := p.Readyz()
	if code != 200 || !strings.Contains(body, `"degraded"`) || !strings.Contains(body, "disk space") {
		t.Fatalf("/readyz below the reserve: %d %s", code, body)
	}
	t.Logf("/readyz: %s", strings.TrimSpace(body))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func balanceIs(res json.RawMessage, want float64) bool {
	var v float64
	return json.Unmarshal(res, &v) == nil && v == want
}
