package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

// readmeBlock returns the first ```sh block of the README section headed
// "## "+section, as written.
func readmeBlock(t *testing.T, section string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+section+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", section)
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	start := strings.Index(s, "```sh\n")
	if start < 0 {
		t.Fatalf("README.md section %q has no ```sh block", section)
	}
	s = s[start+len("```sh\n"):]
	end := strings.Index(s, "```")
	if end < 0 {
		t.Fatalf("README.md section %q: unterminated block", section)
	}
	return s[:end]
}

// readmeServiceLine is how the README's blocks stop and start iapd.
var readmeServiceLine = regexp.MustCompile(`^systemctl (stop|start) iapd$`)

// TestReadmeRestoreProcedure runs the README's "Back up the ledger" and
// "Restore the ledger" blocks as written against the real binary serving a
// sandbox data directory (no configuration, as the sandbox tour): credit
// moved (credits, SMS sent: authorize and capture), backed up, changed,
// restored with -force over the served directory, served again. The
// balances must be the backed-up ones, the README's `iapd verify` clean,
// and portal/ and providers/ kept. Only the production paths are replaced
// (/var/lib/iapd, /backup/, /etc/iapd/admin-token); `systemctl stop|start
// iapd` stops and starts the test's iapd, `sudo -u USER` runs the command
// as the test's user, and IAPD_OPS names the test's ops listener.
func TestReadmeRestoreProcedure(t *testing.T) {
	backupBlock := readmeBlock(t, "Back up the ledger")
	restoreBlock := readmeBlock(t, "Restore the ledger")
	bin := buildIapd(t)

	tmp := t.TempDir()
	data, backups, shims := filepath.Join(tmp, "data"), filepath.Join(tmp, "backup"), filepath.Join(tmp, "bin")
	for _, d := range []string{backups, shims} {
		if err := os.Mkdir(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	token := randHex(16)
	tokenFile := filepath.Join(tmp, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(shims, "iapd")); err != nil {
		t.Fatal(err)
	}
	sudo := "#!/bin/sh\nwhile [ \"$1\" = -u ]; do shift 2; done\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(shims, "sudo"), []byte(sudo), 0o755); err != nil { // #nosec G306 -- an executable shim
		t.Fatal(err)
	}
	paths := strings.NewReplacer("/var/lib/iapd", data, "/backup/", backups+"/", "/etc/iapd/admin-token", tokenFile)

	p := startOpsProc(t, bin, data, token)
	// runBlock runs a README block: its systemctl lines here, the shell
	// lines between them as one sh -e script each.
	runBlock := func(name, block string) string {
		t.Helper()
		var out strings.Builder
		var script []string
		flush := func() {
			if len(script) == 0 {
				return
			}
			cmd := exec.Command("sh", "-ec", paths.Replace(strings.Join(script, "\n")))
			cmd.Env = append(os.Environ(), "PATH="+shims+string(os.PathListSeparator)+os.Getenv("PATH"), "IAPD_OPS="+p.ops, "IAPD_ADMIN_TOKEN=")
			b, err := cmd.CombinedOutput()
			out.Write(b)
			if err != nil {
				t.Fatalf("README %q block, lines\n%s\nfailed: %v\n%s", name, strings.Join(script, "\n"), err, b)
			}
			script = nil
		}
		sc := bufio.NewScanner(strings.NewReader(block))
		for sc.Scan() {
			line := sc.Text()
			m := readmeServiceLine.FindStringSubmatch(strings.TrimSpace(line))
			if m == nil {
				script = append(script, line)
				continue
			}
			flush()
			if m[1] == "stop" {
				p.stop()
			} else {
				p = startOpsProc(t, bin, data, token)
			}
		}
		flush()
		return out.String()
	}

	acct := randHex(16)
	hc := &http.Client{Timeout: 30 * time.Second}
	sendSMS := func() {
		t.Helper()
		res, err := rpcCall(hc, p.public, "/api/sms/3/send", map[string]any{
			"account_token": acct, "dbuuid": "demo", "webhook_url": "",
			"messages": []map[string]any{{"content": "Hello from iapd", "numbers": []map[string]any{{"number": "+32470123456", "uuid": randHex(16)}}}},
		})
		if err != nil || !strings.Contains(string(res), `"success"`) {
			t.Fatalf("SMS send: %s, %v", res, err)
		}
	}
	credit := func(amount string) {
		t.Helper()
		if out, err := p.cli("credit", "sms", acct, amount); err != nil {
			t.Fatalf("iapd credit: %v\n%s", err, out)
		}
	}
	balance := func() admin.Account {
		t.Helper()
		out, err := p.cli("accounts", "show", "sms", acct, "-json")
		if err != nil {
			t.Fatalf("iapd accounts show: %v\n%s", err, out)
		}
		var a admin.Account
		if err := json.Unmarshal([]byte(out), &a); err != nil {
			t.Fatalf("iapd accounts show -json: %v\n%s", err, out)
		}
		return a
	}
	figures := func(a admin.Account) string {
		return fmt.Sprintf("recharged %s, available %s, held %s, captured %s", a.Recharged, a.Available, a.Held, a.Captured)
	}

	credit("100")
	sendSMS()
	sendSMS()
	backedUp := balance()
	if backedUp.Captured != 2*storage.Scale || backedUp.Recharged != 100*storage.Scale {
		t.Fatalf("before the backup: %s; want 100 recharged, 2 captured", figures(backedUp))
	}
	out := runBlock("Back up the ledger", backupBlock)
	if !strings.Contains(out, "1 accounts") {
		t.Fatalf("backup's summary: %s", out)
	}
	secret, err := os.ReadFile(filepath.Join(data, "portal", "secret"))
	if err != nil {
		t.Fatalf("iapd serve made no portal secret: %v", err)
	}

	// Changes after the backup, which the restore takes back.
	credit("50")
	sendSMS()
	if a := balance(); a.Recharged != 150*storage.Scale || a.Captured != 3*storage.Scale {
		t.Fatalf("after the backup: %s; want 150 recharged, 3 captured", figures(a))
	}
	sent, err := os.ReadFile(filepath.Join(data, "providers", "outbox", "sms.jsonl"))
	if err != nil || strings.Count(string(sent), "\n") != 3 {
		t.Fatalf("sandbox outbox: %q, %v; want 3 messages", sent, err)
	}

	out = runBlock("Restore the ledger", restoreBlock)
	for _, want := range []string{"deleted the previous ledger", "kept portal/, providers/", "ok: no problem found"} {
		if !strings.Contains(out, want) {
			t.Errorf("the restore block's output lacks %q:\n%s", want, out)
		}
	}
	if got := balance(); figures(got) != figures(backedUp) {
		t.Fatalf("after the restore: %s; want the backed-up %s", figures(got), figures(backedUp))
	}
	if b, err := os.ReadFile(filepath.Join(data, "portal", "secret")); err != nil || string(b) != string(secret) {
		t.Errorf("portal secret after the restore: changed or gone (%v)", err)
	}
	if b, err := os.ReadFile(filepath.Join(data, "providers", "outbox", "sms.jsonl")); err != nil || string(b) != string(sent) {
		t.Errorf("sandbox outbox after the restore: %q, %v; want it kept", b, err)
	}
	// Served again on the restored ledger: it moves credit.
	sendSMS()
	if a := balance(); a.Captured != 3*storage.Scale || a.Available != backedUp.Available-storage.Scale {
		t.Fatalf("an SMS after the restore: %s", figures(a))
	}
	p.stop()
}
