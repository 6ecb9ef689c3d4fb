package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
)

const testAdminToken = "run-test-admin-token-0123456789"

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a running
// server and the reads of the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is an iapd started by run() in this process.
type testServer struct {
	public, ops string // http://host:port
	stdout      *syncBuffer
	stderr      *syncBuffer
	cancel      context.CancelFunc
	done        chan error
}

var addrLine = regexp.MustCompile(`(?m)^iapd: (public|ops) (https?://\S+)$`)

// startServer runs "iapd serve" with args (plus a temp data dir and port-0
// listeners unless args set them) until the test ends.
func startServer(t *testing.T, env map[string]string, args ...string) *testServer {
	t.Helper()
	s, err := tryStartServer(t, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tryStartServer(t *testing.T, env map[string]string, args ...string) (*testServer, error) {
	t.Helper()
	full := []string{"serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", filepath.Join(t.TempDir(), "data")}
	return startRun(t, env, append(full, args...)) // later flags win
}

// startRun calls run with exactly these arguments and waits for the two
// address lines.
func startRun(t *testing.T, env map[string]string, full []string) (*testServer, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	getenv := func(k string) string { return env[k] }
	go func() { s.done <- run(ctx, full, getenv, strings.NewReader(""), s.stdout, s.stderr) }()
	deadline := time.After(time.Minute)
	for {
		m := addrLine.FindAllStringSubmatch(s.stdout.String(), -1)
		for _, l := range m {
			if l[1] == "public" {
				s.public = l[2]
			} else {
				s.ops = l[2]
			}
		}
		if s.public != "" && s.ops != "" {
			break
		}
		select {
		case err := <-s.done:
			cancel()
			return nil, errorOrNil(err, s.stderr.String())
		case <-deadline:
			cancel()
			return nil, errors.New("iapd did not print its addresses in time; stderr:\n" + s.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Cleanup(func() { s.stop(t) })
	return s, nil
}

func errorOrNil(err error, stderr string) error {
	if err == nil {
		return errors.New("run returned nil before serving; stderr:\n" + stderr)
	}
	return err
}

// stop cancels run's context and waits for a clean return.
func (s *testServer) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("run did not return after its context was cancelled")
	}
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// cli runs one iapd admin command against s and returns its stdout.
func (s *testServer) cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken, "IAPD_OPS": strings.TrimPrefix(s.ops, "http://")}
	err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

func (s *testServer) mustCLI(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := s.cli(t, stdin, args...)
	if err != nil {
		t.Fatalf("iapd %s: %v\n%s\nserver log:\n%s", strings.Join(args, " "), err, out, s.stderr.String())
	}
	return out
}

func TestServeProbesAndAuth(t *testing.T) {
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})
	if code, body := get(t, s.ops+"/healthz", ""); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := get(t, s.ops+"/readyz", ""); code != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if code, _ := get(t, s.ops+"/v1/services", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := get(t, s.ops+"/v1/services", "wrong-token-0123456789"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	code, body := get(t, s.ops+"/v1/services", testAdminToken)
	if code != 200 {
		t.Fatalf("right token: %d %s", code, body)
	}
	for _, name := range []string{"sms", "snailmail", "partner_autocomplete", "reveal"} {
		if !strings.Contains(body, `"name":"`+name+`"`) {
			t.Errorf("built-in service %s missing: %s", name, body)
		}
	}
	// The admin API is not on the public listener.
	if code, _ := get(t, s.public+"/v1/services", testAdminToken); code == 200 {
		t.Fatal("the admin API answers on the public listener")
	}
	s.stop(t)
	if strings.Contains(s.stderr.String(), testAdminToken) || strings.Contains(s.stdout.String(), testAdminToken) {
		t.Fatal("the admin token was printed")
	}
	if !strings.Contains(s.stderr.String(), "stopped") {
		t.Fatalf("no clean shutdown in the log:\n%s", s.stderr.String())
	}
}

func TestServeWithoutAdminToken(t *testing.T) {
	s := startServer(t, nil)
	if code, _ := get(t, s.ops+"/v1/services", "anything-0123456789"); code != 401 {
		t.Fatalf("admin API without a configured token: %d", code)
	}
	if code, _ := get(t, s.ops+"/healthz", ""); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	if !strings.Contains(s.stderr.String(), "admin API is disabled") {
		t.Fatalf("no warning logged:\n%s", s.stderr.String())
	}
}

func TestServeIsTheDefaultCommand(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(cfg, []byte("admin_token_file: "+tokenFile+"\ndata: "+filepath.Join(dir, "data")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No sub-command: flags only.
	s, err := startRun(t, nil, []string{"-config", cfg, "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if out := s.mustCLI(t, "", "services", "list"); !strings.Contains(out, "snailmail") {
		t.Fatalf("admin token from admin_token_file not in force:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Fatalf("data directory from the config file not used: %v", err)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"open ops listener without token", nil, []string{"-ops-listen", "0.0.0.0:0"}, "not a loopback address"},
		{"unknown key", nil, []string{"-config", write("unknown.yaml", "listen: 127.0.0.1:0\nlisen: x\n")}, `unknown key "lisen"`},
		{"bad trial credits", nil, []string{"-config", write("trial.yaml", "services:\n  sms:\n    trial_credits: 0.00001\n")}, "decimals"},
		{"unset env", nil, []string{"-config", write("env.yaml", "admin_token: ${IAPD_TEST_UNSET}\n")}, "IAPD_TEST_UNSET is not set"},
		{"bad public url", nil, []string{"-public-url", "https://example.com/prefix"}, "root of a host"},
		{"bad log level", nil, []string{"-log-level", "loud"}, "log_level"},
		{"unknown flag", nil, []string{"-nope"}, "not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tryStartServer(t, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "iapd.yaml")
	src := `listen: 127.0.0.1:1
ops_listen: 127.0.0.1:0
admin_token: ${TOKEN}
public_url: https://iap.example.com
services:
  sms:
    trial_credits: 0.5
  geo:
    auto_register: false
    unit_name: Lookups
    description: Geocoding
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	// -listen on the command line overrides the file's port 1.
	s := startServer(t, map[string]string{"TOKEN": testAdminToken}, "-config", cfg, "-listen", "127.0.0.1:0")
	out := s.mustCLI(t, "", "services", "list", "-json")
	var list struct{ Services []admin.Service }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	got := map[storage.ServiceName]admin.Service{}
	for _, sv := range list.Services {
		got[sv.Name] = sv
	}
	if sms := got["sms"]; sms.TrialCredits != storage.Scale/2 || !sms.AutoRegister || sms.UnitName != "Credits" {
		t.Fatalf("sms policy: %+v", sms)
	}
	if geo := got["geo"]; geo.AutoRegister || geo.UnitName != "Lookups" || geo.Description != "Geocoding" || geo.HasKey {
		t.Fatalf("geo policy: %+v", geo)
	}
	if !strings.Contains(out, `"trial_credits": 0.5`) {
		t.Fatalf("trial credits not an exact JSON number: %s", out)
	}
}

func TestCLI(t *testing.T) {
	s := startServer(t, map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken})

	// version, help
	if out := s.mustCLI(t, "", "version"); !strings.HasPrefix(out, "iapd ") {
		t.Fatalf("version: %q", out)
	}
	if out := s.mustCLI(t, "", "help"); !strings.Contains(out, "iapd credit SERVICE TOKEN AMOUNT") {
		t.Fatalf("help: %q", out)
	}

	// services
	out := s.mustCLI(t, "", "services", "list")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "partner_autocomplete") || !strings.Contains(out, "Enrichments") {
		t.Fatalf("services list:\n%s", out)
	}
	out = s.mustCLI(t, "", "services", "create", "geo", "-trial", "2.5", "-auto-register=false", "-description", "Geocoding", "-unit", "Lookups")
	key := regexp.MustCompile(`(?m)^key: ([0-9a-f]{64})$`).FindStringSubmatch(out)
	if key == nil || !strings.Contains(out, "service geo created") {
		t.Fatalf("services create:\n%s", out)
	}
	out = s.mustCLI(t, "", "services", "list")
	if !regexp.MustCompile(`geo\s+set\s+no\s+2\.5\s+Lookups\s+Geocoding`).MatchString(out) {
		t.Fatalf("created service not listed as asked:\n%s", out)
	}
	if strings.Contains(out, key[1]) {
		t.Fatal("services list shows the key")
	}
	out = s.mustCLI(t, "imported-key-0123456789abcdef\n", "services", "create", "imp", "-key-stdin", "-json")
	var sk struct {
		Service struct{ Name string }
		Key     string
	}
	if err := json.Unmarshal([]byte(out), &sk); err != nil || sk.Key != "imported-key-0123456789abcdef" || sk.Service.Name != "imp" {
		t.Fatalf("create -key-stdin -json: %v\n%s", err, out)
	}
	if out, err := s.cli(t, "", "services", "create", "geo"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("duplicate create: %v\n%s", err, out)
	}
	if out, err := s.cli(t, "short\n", "services", "create", "x", "-key-stdin"); err == nil || !strings.Contains(err.Error(), "16") {
		t.Fatalf("short imported key: %v\n%s", err, out)
	}
	out = s.mustCLI(t, "", "services", "rotate-key", "geo")
	key2 := regexp.MustCompile(`(?m)^key: ([0-9a-f]{64})$`).FindStringSubmatch(out)
	if key2 == nil || key2[1] == key[1] {
		t.Fatalf("rotate-key:\n%s", out)
	}
	s.mustCLI(t, "sms-key-0123456789abcdef\n", "services", "rotate-key", "sms", "-key-stdin")
	if _, err := s.cli(t, "", "services", "rotate-key", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("rotate unknown: %v", err)
	}
	if _, err := s.cli(t, "", "services", "frobnicate"); err == nil {
		t.Fatal("unknown services sub-command accepted")
	}

	// credit creates registered accounts; -ref makes it idempotent.
	out = s.mustCLI(t, "", "credit", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "100.5", "-ref", "inv-1", "-description", "invoice 1")
	if !strings.Contains(out, "recharge of 100.5 on sms/a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1 (entry 1); available 100.5") {
		t.Fatalf("credit:\n%s", out)
	}
	// A repeated ref applies nothing and says so (exit status 0: what a
	// retrying script wanted holds), in the table and in -json.
	if out = s.mustCLI(t, "", "credit", "-ref", "inv-1", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "100.5"); !strings.HasPrefix(out, `nothing applied: ref "inv-1" was already applied as entry 1 (recharge of 100.5 on sms/a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1`) ||
		!strings.Contains(out, "available 100.5") {
		t.Fatalf("repeated credit:\n%s", out)
	}
	if out = s.mustCLI(t, "", "credit", "-ref", "inv-1", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "100.5", "-json"); !strings.Contains(out, `"replayed": true`) {
		t.Fatalf("repeated credit -json:\n%s", out)
	}
	// A token Odoo could not have generated creates nothing; the error
	// does not echo it. -any-token accepts it.
	for _, bad := range []string{"shorttoken", "A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1", "g1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a10"} {
		for _, args := range [][]string{{"credit", "sms", bad, "10"}, {"accounts", "register", "sms", bad}} {
			_, err := s.cli(t, "", args...)
			if err == nil || !strings.Contains(err.Error(), "not an account token Odoo generates") || !strings.Contains(err.Error(), "-any-token") || strings.Contains(err.Error(), bad) {
				t.Fatalf("%v: %v", args, err)
			}
		}
		if _, err := s.cli(t, "", "accounts", "show", "sms", bad); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("refused token %q created an account: %v", bad, err)
		}
	}
	if out = s.mustCLI(t, "", "credit", "imp", "legacy-token-1", "2", "-any-token"); !strings.Contains(out, "recharge of 2 on imp/legacy-token-1") {
		t.Fatalf("credit -any-token:\n%s", out)
	}
	if out = s.mustCLI(t, "", "credit", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1+disabled", "100.5", "-ref", "inv-1"); !strings.HasPrefix(out, "nothing applied") {
		t.Fatalf("token with +disabled suffix:\n%s", out)
	}
	if _, err := s.cli(t, "", "credit", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "7", "-ref", "inv-1"); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("ref reused: %v", err)
	}
	if out = s.mustCLI(t, "", "credit", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "-0.5"); !strings.Contains(out, "adjustment of -0.5") || !strings.Contains(out, "available 100") {
		t.Fatalf("negative credit:\n%s", out)
	}
	if _, err := s.cli(t, "", "credit", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "-1000"); err == nil || !strings.Contains(err.Error(), "insufficient credit") {
		t.Fatalf("adjustment below zero: %v", err)
	}
	if _, err := s.cli(t, "", "credit", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "0.00001"); err == nil || !strings.Contains(err.Error(), "decimals") {
		t.Fatalf("dust: %v", err)
	}
	if _, err := s.cli(t, "", "credit", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"); err == nil || !strings.Contains(err.Error(), "missing arguments") {
		t.Fatalf("missing amount: %v", err)
	}
	out = s.mustCLI(t, "", "credit", "sms", "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2", "3", "-json")
	var cr struct {
		Entry   struct{ Kind string }
		Account struct{ Available json.Number }
	}
	if err := json.Unmarshal([]byte(out), &cr); err != nil || cr.Entry.Kind != "recharge" || cr.Account.Available != "3" {
		t.Fatalf("credit -json: %v\n%s", err, out)
	}
	s.mustCLI(t, "", "credit", "geo", "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", "1")

	// accounts
	out = s.mustCLI(t, "", "accounts", "list")
	for _, want := range []string{"SERVICE", "sms  a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "sms  b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2", "geo  c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", "100"} {
		if !strings.Contains(out, want) {
			t.Fatalf("accounts list lacks %q:\n%s", want, out)
		}
	}
	out = s.mustCLI(t, "", "accounts", "list", "-service", "sms", "-json")
	var al struct{ Accounts []struct{ Token string } }
	if err := json.Unmarshal([]byte(out), &al); err != nil || len(al.Accounts) != 2 {
		t.Fatalf("accounts list -service -json: %v\n%s", err, out)
	}
	if out = s.mustCLI(t, "", "accounts", "list", "-limit", "1"); strings.Count(out, "\n") != 2 {
		t.Fatalf("accounts list -limit 1:\n%s", out)
	}
	out = s.mustCLI(t, "", "accounts", "show", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1")
	for _, want := range []string{"state", "registered", "available  100\n", "recharged  100\n", "entries    2\n", "alerts"} {
		if !strings.Contains(out, want) {
			t.Fatalf("accounts show lacks %q:\n%s", want, out)
		}
	}
	if out = s.mustCLI(t, "", "accounts", "ban", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"); !strings.Contains(out, "sms/a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1: banned") {
		t.Fatalf("ban:\n%s", out)
	}
	if out = s.mustCLI(t, "", "accounts", "ban", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"); !strings.Contains(out, "sms/a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1: banned already (nothing changed)") {
		t.Fatalf("ban again:\n%s", out)
	}
	if out = s.mustCLI(t, "", "accounts", "list", "-state", "banned"); !strings.Contains(out, "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1") || strings.Contains(out, "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2") {
		t.Fatalf("list -state banned:\n%s", out)
	}
	if _, err := s.cli(t, "", "accounts", "register", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"); err == nil || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("register a banned account: %v", err)
	}
	if out = s.mustCLI(t, "", "accounts", "unban", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"); !strings.Contains(out, "sms/a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1: registered") {
		t.Fatalf("unban:\n%s", out)
	}
	// geo does not auto-register: a first-seen account is unregistered
	// until registered.
	if out = s.mustCLI(t, "", "accounts", "register", "geo", "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4"); !strings.Contains(out, "geo/d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4: registered") {
		t.Fatalf("register:\n%s", out)
	}
	if _, err := s.cli(t, "", "accounts", "show", "sms", "nobody"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("show unknown: %v", err)
	}
	if _, err := s.cli(t, "", "accounts", "show", "sms"); err == nil {
		t.Fatal("show without token accepted")
	}

	// history
	out = s.mustCLI(t, "", "history", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1")
	if !strings.Contains(out, "SEQ") || !strings.Contains(out, "adjustment") || !strings.Contains(out, "inv-1") || !strings.Contains(out, "invoice 1") {
		t.Fatalf("history:\n%s", out)
	}
	out = s.mustCLI(t, "", "history", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "-limit", "1", "-json")
	var h struct {
		Entries []struct{ Seq int }
		Next    int
	}
	if err := json.Unmarshal([]byte(out), &h); err != nil || len(h.Entries) != 1 || h.Entries[0].Seq != 2 || h.Next != 2 {
		t.Fatalf("history -limit 1 -json: %v\n%s", err, out)
	}
	if out = s.mustCLI(t, "", "history", "sms", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "-before", "2"); !strings.Contains(out, "inv-1") || strings.Contains(out, "adjustment") {
		t.Fatalf("history -before:\n%s", out)
	}

	// A hold made the way an Odoo module makes it, with the key of "geo"
	// (rotated above), then looked up with "iapd transaction".
	s.mustCLI(t, "", "accounts", "register", "geo", "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3")
	body := `{"jsonrpc":"2.0","method":"call","id":"0123456789abcdef0123456789abcdef","params":{"account_token":"c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3","key":"` +
		key2[1] + `","credit":0.25,"description":"one lookup","ttl":1}}`
	resp, err := http.Post(s.public+"/iap/1/authorize", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Result string
		Error  json.RawMessage
	}
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if err != nil || ans.Result == "" || ans.Error != nil {
		t.Fatalf("authorize: %v %+v", err, ans)
	}
	out = s.mustCLI(t, "", "transaction", ans.Result)
	for _, want := range []string{"state        held", "amount       0.25", "account      c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3", "description  one lookup"} {
		if !strings.Contains(out, want) {
			t.Fatalf("transaction lacks %q:\n%s", want, out)
		}
	}
	if out = s.mustCLI(t, "", "history", "geo", "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"); !strings.Contains(out, "hold") || !strings.Contains(out, ans.Result) {
		t.Fatalf("history with a hold:\n%s", out)
	}
	if out = s.mustCLI(t, "", "accounts", "show", "geo", "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"); !strings.Contains(out, "available  0.75") || !strings.Contains(out, "held       0.25") {
		t.Fatalf("account with a hold:\n%s", out)
	}

	// transaction: unknown token
	if _, err := s.cli(t, "", "transaction", "0123456789abcdef0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("transaction unknown: %v", err)
	}

	// errors: unknown command, no token, unreachable ops
	if _, err := s.cli(t, "", "frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	var out2, errb bytes.Buffer
	err = run(context.Background(), []string{"services", "list", "-ops", strings.TrimPrefix(s.ops, "http://")},
		func(string) string { return "" }, nil, &out2, &errb)
	if err == nil || !strings.Contains(err.Error(), "IAPD_ADMIN_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
	err = run(context.Background(), []string{"services", "list", "-ops", strings.TrimPrefix(s.ops, "http://")},
		func(k string) string { return map[string]string{"IAPD_ADMIN_TOKEN": "wrong-token-0123456789"}[k] }, nil, &out2, &errb)
	if err == nil || !strings.Contains(err.Error(), "unauthorized") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	err = run(context.Background(), []string{"accounts", "show", "sms", "secret-account-token", "-ops", "127.0.0.1:1"},
		func(k string) string { return map[string]string{"IAPD_ADMIN_TOKEN": testAdminToken}[k] }, nil, &out2, &errb)
	if err == nil || !strings.Contains(err.Error(), "cannot reach") || strings.Contains(err.Error(), "secret-account-token") {
		t.Fatalf("unreachable: %v", err)
	}
}
