package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgainstIapd runs iapload against a freshly started iapd (this
// repository's, built for the test, on its embedded defaults: Badger in a
// temp dir, the sandbox SMS outbox): every op of the mix succeeds, the
// figures and the ratio to the baseline are printed, and so is the CPU per
// request of both sides and the server's RSS (Linux).
func TestAgainstIapd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs iapd")
	}
	const token = "iapload-test-admin-token-0123456789"
	data := t.TempDir()
	addrs, cmd, stderr := startIapd(t, data, token, "")
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "IAPD_ADMIN_TOKEN" {
			return token
		}
		return ""
	}
	args := []string{"-url", "http://" + addrs["public"], "-ops", addrs["ops"], "-baseline", "-syncdir", t.TempDir(),
		"-c", "8", "-d", "1s", "-warmup", "200ms", "-accounts", "20",
		"-mix", "authcap=4,authcancel=1,balance=1,sms=2", "-pid", strconv.Itoa(cmd.Process.Pid)}
	if err := run(context.Background(), args, getenv, &out, &errOut); err != nil {
		t.Fatalf("iapload: %v\n%s%s\n%s", err, out.String(), errOut.String(), stderr.String())
	}
	report := out.String()
	t.Logf("iapload:\n%s", report)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^baseline +[0-9]+ req/s .* p99 `),
		regexp.MustCompile(`(?m)^durable +[0-9]+ req/s .* p99 `),
		regexp.MustCompile(`(?m)^ratio +durable / baseline = [0-9.]+, iapd / durable = [0-9.]+ \(req/s\)$`),
		regexp.MustCompile(`(?m)^iapd +[0-9]+ req/s +[0-9]+ ops/s +p50 .* p99 .* p999 .* requests [0-9]+$`),
		regexp.MustCompile(`(?m)^ratio +iapd / baseline = [0-9.]+ \(req/s\)$`),
		regexp.MustCompile(`(?m)^cpu +client [0-9.]+ µs/req, server [0-9.]+ µs/req$`),
		regexp.MustCompile(`(?m)^server +RSS [0-9.]+ MB \(peak [0-9.]+ MB\): anonymous [0-9.]+ MB, file [0-9.]+ MB$`),
	} {
		if !want.MatchString(report) {
			t.Errorf("report lacks %s", want)
		}
	}
	// No error of any kind: an "errors" column would follow the iapd line.
	for _, line := range strings.Split(report, "\n") {
		if strings.HasPrefix(line, "iapd ") && strings.Contains(line, "errors") {
			t.Errorf("iapd run had errors: %s", line)
		}
	}
	// The SMS went through the sandbox outbox (relative to iapd's
	// working directory, set to data above).
	var outbox []byte
	_ = filepath.WalkDir(data, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "sms.jsonl" {
			outbox, _ = os.ReadFile(path)
		}
		return nil
	})
	if bytes.Count(outbox, []byte("iapload")) == 0 {
		t.Errorf("no SMS of iapload in the sandbox outbox under %s", data)
	}
}

// startIapd builds this repository's iapd and starts it on data with the
// admin token and, unless empty, the YAML config; it returns its public
// and ops addresses (keys "public", "ops"), its process, killed at the end
// of the test, and its standard error.
func startIapd(t *testing.T, data, token, config string) (map[string]string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test builds iapd and needs the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "iapd")
	if out, err := exec.Command(goBin, "build", "-buildvcs=false", "-o", bin, "../iapd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	args := []string{"serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data, "-log-level", "warn"}
	if config != "" {
		cfg := filepath.Join(t.TempDir(), "iapd.yaml")
		if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-config", cfg)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = data // the sandbox outbox's default path is relative
	cmd.Env = append(os.Environ(), "IAPD_ADMIN_TOKEN="+token)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := regexp.MustCompile(`^iapd: (public|ops) http://(\S+)`)
	addrs := map[string]string{}
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	for len(addrs) < 2 && sc.Scan() {
		if m := addr.FindStringSubmatch(sc.Text()); m != nil {
			addrs[m[1]] = m[2]
		}
	}
	deadline.Stop()
	if len(addrs) < 2 {
		t.Fatalf("iapd did not print its addresses\n%s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }() // iapd must never block on a full pipe

	return addrs, cmd, stderr
}
