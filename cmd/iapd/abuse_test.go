package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The abuse suite (issue 13): each TestAbuse* runs the real iapd binary,
// built without -race so that its memory and CPU figures are the
// production ones, attacks it as an anonymous caller would, asserts the
// outcome (iapd keeps serving, money and limits hold) and prints its
// figures with abuseFigure. The figures are measurements, not timed
// asserts: a shared machine may be slower, never wrong.
//
// IAPD_ABUSE_REPORT names a file the figures are appended to (.ci/run
// prints it at the end).

var abuseBins struct {
	mu   sync.Mutex
	path map[string]string // by build tags
}

// abuseBinary builds iapd once per test binary and set of build tags
// ("" for the production build; "iapd_failpoints" for the crash tests),
// without -race, into a directory removed when the tests end (TestMain).
func abuseBinary(t testing.TB, tags string) string {
	t.Helper()
	abuseBins.mu.Lock()
	defer abuseBins.mu.Unlock()
	if p, ok := abuseBins.path[tags]; ok {
		return p
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the abuse suite builds the binary and needs the go command: %v", err)
	}
	dir, err := os.MkdirTemp("", "iapd-abuse-bin-")
	if err != nil {
		t.Fatal(err)
	}
	abuseCleanups = append(abuseCleanups, func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "iapd")
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	out, err := exec.Command(goBin, append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build (tags %q): %v\n%s", tags, err, out)
	}
	if abuseBins.path == nil {
		abuseBins.path = map[string]string{}
	}
	abuseBins.path[tags] = bin
	return bin
}

// abuseCleanups run after every test of the package (TestMain).
var abuseCleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range abuseCleanups {
		f()
	}
	os.Exit(code)
}

// abuseOpts says how to start one iapd of the abuse suite.
type abuseOpts struct {
	// Config is YAML written to a file passed as -config; empty passes
	// none. Listen addresses, data dir and log level are flags.
	Config string
	// Data is the data directory; empty makes a fresh one.
	Data string
	// Args are more flags for `iapd serve`.
	Args []string
	// Env are more KEY=VALUE environment variables.
	Env []string
	// NotReady: do not wait for /readyz to turn 200 (a server that is
	// expected to start degraded).
	NotReady bool
	// Tags are the build tags of the binary ("" the production build).
	Tags string
	// Bin runs this binary instead of building one (another build, to
	// compare).
	Bin string
}

// abuseProc is one running iapd of the abuse suite.
type abuseProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	exited chan error
	Stderr *syncBuffer
	Data   string
	Token  string // admin token
	Public string // http://127.0.0.1:port of the public listener
	Ops    string // http://127.0.0.1:port of the ops listener
	Admin  *adminClient
}

// startAbuse starts the binary and waits for its addresses (and /readyz,
// unless o.NotReady). The process is killed at the end of the test.
func startAbuse(t testing.TB, o abuseOpts) *abuseProc {
	t.Helper()
	bin := o.Bin
	if bin == "" {
		bin = abuseBinary(t, o.Tags)
	}
	p := &abuseProc{t: t, Data: o.Data, Token: randHex(16), Stderr: &syncBuffer{}}
	if p.Data == "" {
		p.Data = filepath.Join(t.TempDir(), "data")
	}
	args := []string{"serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0",
		"-data", p.Data, "-log-level", "warn"}
	if o.Config != "" {
		cfg := filepath.Join(t.TempDir(), "iapd.yaml")
		if err := os.WriteFile(cfg, []byte(o.Config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-config", cfg)
	}
	args = append(args, o.Args...)
	p.cmd, p.exited, p.Public, p.Ops = launch(t, bin, args, append([]string{"IAPD_ADMIN_TOKEN=" + p.Token}, o.Env...), p.Stderr)
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); err := <-p.exited; p.exited <- err })
	p.Admin = &adminClient{base: p.Ops, token: p.Token, hc: &http.Client{Timeout: 30 * time.Second}}
	if !o.NotReady {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, _ := p.Readyz()
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("iapd never became ready\n%s", p.Stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p
}

// Readyz returns /readyz's status code and body (0 if unreachable).
func (p *abuseProc) Readyz() (int, string) {
	resp, err := http.Get(p.Ops + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b)
}

// Pid is the server's process id.
func (p *abuseProc) Pid() int { return p.cmd.Process.Pid }

// Kill SIGKILLs the server and waits for it.
func (p *abuseProc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	err := <-p.exited
	p.exited <- err
}

// Stop sends SIGTERM and waits up to a minute; it fails the test if the
// server does not exit cleanly.
func (p *abuseProc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		if err != nil {
			p.t.Errorf("iapd did not exit cleanly on SIGTERM: %v\n%s", err, p.Stderr.String())
		}
	case <-time.After(60 * time.Second):
		p.t.Errorf("iapd did not stop on SIGTERM\n%s", p.Stderr.String())
		_ = p.cmd.Process.Kill()
	}
}

// Exited reports whether the process has ended (and how), without waiting.
func (p *abuseProc) Exited() (bool, error) {
	select {
	case err := <-p.exited:
		p.exited <- err
		return true, err
	default:
		return false, nil
	}
}

// Call posts one JSON-RPC request as Odoo's iap_jsonrpc does and returns
// the result or the answered error; err is a transport failure.
func (p *abuseProc) Call(path string, params any, timeout time.Duration) (json.RawMessage, *rpcError, error) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
	return p.Post(path, body, timeout)
}

// Post sends a raw body to a JSON-RPC path and decodes the envelope.
func (p *abuseProc) Post(path string, body []byte, timeout time.Duration) (json.RawMessage, *rpcError, error) {
	hc := &http.Client{Timeout: timeout}
	resp, err := hc.Post(p.Public+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != 200 {
		return nil, nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, raw)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Data struct {
				Name    string `json:"name"`
				Message string `json:"message"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, nil, fmt.Errorf("not a JSON-RPC answer: %v: %.200s", err, raw)
	}
	if env.Error != nil {
		return nil, &rpcError{Name: env.Error.Data.Name, Message: env.Error.Data.Message}, nil
	}
	return env.Result, nil, nil
}

// Memory is the server's resident set from /proc/<pid>/status, in bytes:
// anonymous (the Go heap and stacks) and file-backed (the binary,
// Badger's mapped tables).
type Memory struct{ RSS, Anon, File int64 }

func (m Memory) String() string {
	return fmt.Sprintf("RSS %.1f MB (anonymous %.1f MB, file %.1f MB)", mb(m.RSS), mb(m.Anon), mb(m.File))
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// Memory reads the server's resident set now.
func (p *abuseProc) Memory() Memory {
	p.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		p.t.Fatalf("reading the server's status: %v", err)
	}
	return parseProcStatus(b)
}

// parseProcStatus reads VmRSS, RssAnon and RssFile (kB) from a
// /proc/<pid>/status text; missing or garbled fields read 0.
func parseProcStatus(b []byte) Memory {
	var m Memory
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.RSS = n << 10
		case "RssAnon":
			m.Anon = n << 10
		case "RssFile":
			m.File = n << 10
		}
	}
	return m
}

// CPUTime is the server's user+system CPU time so far.
func (p *abuseProc) CPUTime() time.Duration {
	p.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		p.t.Fatalf("reading the server's stat: %v", err)
	}
	// Fields after the command name (which is in parentheses): utime is
	// the 14th field of the line, stime the 15th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// abuseFigure logs one figure of the abuse suite and appends it to
// $IAPD_ABUSE_REPORT, prefixed with the test's name.
func abuseFigure(t testing.TB, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf("%s: %s", t.Name(), fmt.Sprintf(format, args...))
	t.Log(line)
	f := os.Getenv("IAPD_ABUSE_REPORT")
	if f == "" {
		return
	}
	abuseReportMu.Lock()
	defer abuseReportMu.Unlock()
	fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("writing the abuse report: %v", err)
		return
	}
	defer fh.Close()
	if _, err := fmt.Fprintln(fh, line); err != nil {
		t.Errorf("writing the abuse report: %v", err)
	}
}

var abuseReportMu sync.Mutex

func TestParseProcStatus(t *testing.T) {
	m := parseProcStatus([]byte("Name:\tiapd\nVmRSS:\t  2048 kB\nRssAnon:\t 1024 kB\nRssFile:\t 1000 kB\nRssShmem: x\n"))
	if m != (Memory{RSS: 2048 << 10, Anon: 1024 << 10, File: 1000 << 10}) {
		t.Errorf("parsed %+v", m)
	}
	if m := parseProcStatus([]byte("VmRSS: garbled kB\n")); m != (Memory{}) {
		t.Errorf("garbled: %+v", m)
	}
}

// TestAbuseHarness starts the real binary, reads its memory and CPU and
// answers a balance call: the suite's own instruments work.
func TestAbuseHarness(t *testing.T) {
	p := startAbuse(t, abuseOpts{})
	m := p.Memory()
	if m.RSS <= 0 || m.Anon <= 0 {
		t.Fatalf("memory of a running server: %+v", m)
	}
	if _, rerr, err := p.Call("/iap/1/balance", map[string]any{"account_token": randHex(16), "service_name": "sms"}, 10*time.Second); err != nil || rerr != nil {
		t.Fatalf("balance: %v %v", rerr, err)
	}
	if p.CPUTime() < 0 {
		t.Fatal("negative CPU time")
	}
	p.Stop()
	abuseFigure(t, "idle server %s", m)
}
