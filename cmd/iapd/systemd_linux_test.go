package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The systemd unit (docs/systemd) and what iapd does under it: readiness
// on the notify socket, the listener passed by socket activation, a port
// below 1024 with exactly CAP_NET_BIND_SERVICE. The processes are started
// with the unit's own ExecStart line (the binary and the configuration
// file replaced by the test's).

// unitFile is one systemd unit file: section → key → values in order.
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a unit line: %q", path, i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// last is the value of key in section that systemd applies (the last
// assignment), "" when unset.
func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

const (
	unitPath    = "../../docs/systemd/iapd.service"
	socketPath  = "../../docs/systemd/iapd.socket"
	dropInPath  = "../../docs/systemd/iapd.service.d/privileged-port.conf"
	unitBinary  = "/usr/local/bin/iapd"
	unitConfig  = "/etc/iapd/iapd.yaml"
	capNetBind  = 10 // CAP_NET_BIND_SERVICE
	nobodyUID   = 65534
	nogroupGID  = 65534
	readmeFile  = "../../README.md"
	startupWait = 60 * time.Second
)

// unitExec is the unit's ExecStart as argv with the binary and the
// configuration file replaced by bin and config; it fails the test when
// the line is not `/usr/local/bin/iapd serve -config /etc/iapd/iapd.yaml`
// (what the README installs).
func unitExec(t *testing.T, bin, config string) []string {
	t.Helper()
	u := readUnit(t, unitPath)
	argv := strings.Fields(u.last("Service", "ExecStart"))
	if want := []string{unitBinary, "serve", "-config", unitConfig}; !slices.Equal(argv, want) {
		t.Fatalf("ExecStart is %q, the tests run %q", argv, want)
	}
	return []string{bin, "serve", "-config", config}
}

// TestSystemdUnit checks the unit against what iapd does and what the
// README's configuration writes: Type=notify (iapd sends READY=1), the
// exec line the other tests run, and exactly the writable paths the
// README's configuration uses under ProtectSystem=strict.
func TestSystemdUnit(t *testing.T) {
	u := readUnit(t, unitPath)
	unitExec(t, "iapd", "iapd.yaml")
	for _, kv := range [][2]string{
		{"Type", "notify"}, {"NotifyAccess", "main"}, {"User", "iapd"}, {"ProtectSystem", "strict"},
		{"PrivateUsers", "yes"}, {"CapabilityBoundingSet", ""}, {"AmbientCapabilities", ""}, {"NoNewPrivileges", "yes"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"}, {"WatchdogSec", "30s"},
	} {
		if got := u.last("Service", kv[0]); got != kv[1] {
			t.Errorf("%s=%q, want %q", kv[0], got, kv[1])
		}
	}

	// The unit's writable places: StateDirectory and LogsDirectory
	// (/var/lib/NAME, /var/log/NAME) and ReadWritePaths.
	var writable []string
	for _, v := range u["Service"]["StateDirectory"] {
		writable = append(writable, "/var/lib/"+v)
	}
	for _, v := range u["Service"]["LogsDirectory"] {
		writable = append(writable, "/var/log/"+v)
	}
	for _, v := range u["Service"]["ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			writable = append(writable, strings.TrimPrefix(p, "-"))
		}
	}
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

	// The paths iapd writes in the README's configuration examples.
	readme, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	writes := regexp.MustCompile(`(?m)\b(?:data|dir|audit_log):\s+(/[^\s,}]+)`).FindAllSubmatch(readme, -1)
	if len(writes) < 3 {
		t.Fatalf("found %d written paths in the README (data, dir, audit_log); the pattern no longer matches it", len(writes))
	}
	used := map[string]bool{}
	for _, m := range writes {
		p := string(m[1])
		if strings.HasPrefix(p, "/run/") || strings.HasPrefix(p, "/tmp/") || strings.HasPrefix(p, "/backup") {
			continue // not a service path (the admin CLI's, or an example elsewhere)
		}
		i := slices.IndexFunc(writable, func(dir string) bool { return under(p, dir) })
		if i < 0 {
			t.Errorf("the README's configuration writes %s, read-only under the unit (writable: %q)", p, writable)
			continue
		}
		used[writable[i]] = true
	}
	for _, dir := range writable {
		if !used[dir] {
			t.Errorf("the unit makes %s writable, which no configuration in the README writes", dir)
		}
	}

	// Socket activation: the sockets are named as iapd's listeners.
	s := readUnit(t, socketPath)
	if n := s.last("Socket", "FileDescriptorName"); n != "public" {
		t.Errorf("iapd.socket: FileDescriptorName=%q, want public", n)
	}
	if l := s.last("Socket", "ListenStream"); l != "443" {
		t.Errorf("iapd.socket: ListenStream=%q, want 443", l)
	}
	// The drop-in grants exactly CAP_NET_BIND_SERVICE.
	d := readUnit(t, dropInPath)
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if got := d["Service"][k]; !slices.Equal(got, []string{"CAP_NET_BIND_SERVICE"}) {
			t.Errorf("drop-in: %s=%q, want exactly CAP_NET_BIND_SERVICE", k, got)
		}
	}
	if got := d.last("Service", "PrivateUsers"); got != "no" {
		t.Errorf("drop-in: PrivateUsers=%q; in a private user namespace the capability does not reach the host's network", got)
	}
}

// notifySocket listens on a unixgram socket as systemd's notify socket
// does: a path in dir, or an abstract name when dir is "". It returns the
// $NOTIFY_SOCKET value and the messages received.
func notifySocket(t *testing.T, dir string) (string, <-chan string) {
	t.Helper()
	name := "@iapd-test-notify-" + fmt.Sprint(os.Getpid(), "-", time.Now().UnixNano())
	if dir != "" {
		name = filepath.Join(dir, "notify")
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if dir != "" {
		if err := os.Chmod(name, 0o777); err != nil { // the iapd process may run as nobody
			t.Fatal(err)
		}
	}
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return name, msgs
}

// awaitNotify waits for a notify message holding line, failing the test
// on another first or after a minute.
func awaitNotify(t *testing.T, msgs <-chan string, line string, stderr *syncBuffer) string {
	t.Helper()
	select {
	case m := <-msgs:
		if !slices.Contains(strings.Split(m, "\n"), line) {
			t.Fatalf("notify socket: got %q, want %s\n%s", m, line, stderr.String())
		}
		return m
	case <-time.After(startupWait):
		t.Fatalf("notify socket: no %s\n%s", line, stderr.String())
	}
	return ""
}

// startUnitProc starts argv (environment: this process's plus env; extra
// files from fd 3) and waits for the two address lines (launchCmd). The
// process is killed when the test ends.
func startUnitProc(t *testing.T, argv, env []string, extra []*os.File) (cmd *exec.Cmd, exited chan error, public, ops string, stderr *syncBuffer) {
	t.Helper()
	stderr = &syncBuffer{}
	cmd = exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = extra
	exited, public, ops = launchCmd(t, cmd, stderr)
	return cmd, exited, public, ops, stderr
}

// stopUnitProc sends SIGTERM (systemctl stop) and waits for a clean exit.
func stopUnitProc(t *testing.T, cmd *exec.Cmd, exited chan error, stderr *syncBuffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	awaitCleanExit(t, exited, stderr)
}

// awaitCleanExit waits for the exit a SIGTERM asked for, and fails the
// test unless it is clean.
func awaitCleanExit(t *testing.T, exited chan error, stderr *syncBuffer) {
	t.Helper()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(startupWait):
		t.Fatalf("no exit after SIGTERM\n%s", stderr.String())
	}
}

// serviceDir makes a directory the unprivileged user can use: the binary,
// the configuration (YAML cfg, "DIR" replaced by the directory), a TLS
// certificate of a site CA for Odoo's host names, a data directory owned
// by uid (when root). It returns the directory, the binary and the
// configuration file, and the CA's pool.
func serviceDir(t *testing.T, cfg string) (dir, bin, config string, pool *x509.CertPool) {
	t.Helper()
	dir, err := os.MkdirTemp("", "iapd-systemd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(abuseBinary(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "iapd")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	ca.issue(t, 1, filepath.Join(dir, "iapd.crt"), filepath.Join(dir, "iapd.key"))
	config = filepath.Join(dir, "iapd.yaml")
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(cfg, "DIR", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		for _, f := range []string{"data", "iapd.key", "iapd.crt"} {
			if err := os.Chown(filepath.Join(dir, f), nobodyUID, nogroupGID); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir, bin, config, ca.pool
}

// asNobody is the setpriv prefix running a command as nobody with exactly
// the capabilities caps (setpriv's names, e.g. "net_bind_service"), none
// when caps is "": no other in the bounding, inheritable or ambient set.
func asNobody(caps string) []string {
	set := "-all"
	if caps != "" {
		set += ",+" + caps
	}
	args := []string{"setpriv", "--reuid=" + fmt.Sprint(nobodyUID), "--regid=" + fmt.Sprint(nogroupGID), "--clear-groups",
		"--inh-caps=" + set, "--bounding-set=" + set}
	if caps != "" {
		args = append(args, "--ambient-caps=+"+caps)
	}
	return append(args, "--")
}

// procCaps reads the uid and the effective and bounding capability sets
// of process pid.
func procCaps(t *testing.T, pid int) (uid string, eff, bnd uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "Uid":
			uid = strings.Fields(v)[0]
		case "CapEff":
			fmt.Sscanf(v, "%x", &eff)
		case "CapBnd":
			fmt.Sscanf(v, "%x", &bnd)
		}
	}
	return uid, eff, bnd
}

// httpsClient trusts pool and reaches iapd whatever the host name (as the
// site's DNS would), through dial.
func httpsClient(pool *x509.CertPool, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:       dial,
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
	}}
}

// checkBalance calls /iap/1/balance as Odoo does on https://iap.odoo.com
// without an account token, and checks the JSON-RPC answer Odoo reads.
func checkBalance(t *testing.T, c *http.Client) {
	t.Helper()
	code, body := proxyPost(t, c, "https://iap.odoo.com/iap/1/balance",
		[]byte(`{"jsonrpc":"2.0","method":"call","params":{"service_name":"sms"},"id":1}`))
	if code != 200 {
		t.Fatalf("balance over TLS: HTTP %d %s", code, body)
	}
	if _, name := odooReadable(t, "balance", body); name == "" || !bytes.Contains(body, []byte("account_token")) {
		t.Fatalf("balance without a token: want a JSON-RPC error about account_token, got %s", body)
	}
}

// TestSystemdNotify runs the unit's exec line with $NOTIFY_SOCKET (a path,
// then an abstract name) as systemd's Type=notify does: READY=1 arrives
// once /readyz answers 200, STOPPING=1 when SIGTERM starts the shutdown.
func TestSystemdNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprint("abstract=", abstract), func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "iapd.yaml")
			if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nops_listen: 127.0.0.1:0\ndata: "+filepath.Join(dir, "data")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			sockDir := dir
			if abstract {
				sockDir = ""
			}
			notify, msgs := notifySocket(t, sockDir)
			cmd, exited, _, ops, stderr := startUnitProc(t, unitExec(t, abuseBinary(t, ""), cfg), []string{"NOTIFY_SOCKET=" + notify}, nil)
			m := awaitNotify(t, msgs, "READY=1", stderr)
			if code, body := get(t, ops+"/readyz", ""); code != 200 {
				t.Fatalf("READY=1 (%q) sent while /readyz answers %d %s", m, code, body)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			awaitNotify(t, msgs, "STOPPING=1", stderr)
			awaitCleanExit(t, exited, stderr)
		})
	}
}

// TestSystemdSocketActivation plays systemd with iapd.socket: it binds
// the listener and passes it as fd 3 ($LISTEN_FDS=1, $LISTEN_FDNAMES as
// the socket unit's FileDescriptorName, $LISTEN_PID set by a shell that
// then execs the unit's exec line, as systemd sets it in the service's
// process). The configuration says listen: 0.0.0.0:443, which the
// process, nobody without any capability (when the test runs as root),
// could not bind: iapd serves TLS on the passed socket instead.
func TestSystemdSocketActivation(t *testing.T) {
	s := readUnit(t, socketPath)
	name := s.last("Socket", "FileDescriptorName")
	_, bin, config, pool := serviceDir(t, "listen: 0.0.0.0:443\nops_listen: 127.0.0.1:0\ndata: DIR/data\n"+
		"tls_cert_file: DIR/iapd.crt\ntls_key_file: DIR/iapd.key\npublic_url: https://iap.odoo.com\n")
	argv := unitExec(t, bin, config)
	if os.Getuid() == 0 {
		argv = append(asNobody(""), argv...)
	}
	withPID := append([]string{"sh", "-c", `LISTEN_PID=$$ exec "$@"`, "sh"}, argv...)

	listen := func(t *testing.T) (*net.TCPListener, *os.File) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return ln.(*net.TCPListener), f
	}

	t.Run("served", func(t *testing.T) {
		ln, f := listen(t)
		notify, msgs := notifySocket(t, "")
		cmd, exited, public, _, stderr := startUnitProc(t, withPID,
			[]string{"LISTEN_FDS=1", "LISTEN_FDNAMES=" + name, "NOTIFY_SOCKET=" + notify}, []*os.File{f})
		if want := "https://" + ln.Addr().String(); public != want {
			t.Fatalf("public listener %s, want the passed socket %s", public, want)
		}
		awaitNotify(t, msgs, "READY=1", stderr)
		if os.Getuid() == 0 {
			if uid, eff, bnd := procCaps(t, cmd.Process.Pid); uid != fmt.Sprint(nobodyUID) || eff != 0 || bnd != 0 {
				t.Fatalf("iapd runs as uid %s with capabilities eff %#x bnd %#x, want nobody with none", uid, eff, bnd)
			}
		}
		checkBalance(t, httpsClient(pool, func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
		}))
		if !strings.Contains(stderr.String(), "public listener from systemd") {
			t.Errorf("no log line says the listener came from systemd:\n%s", stderr.String())
		}
		stopUnitProc(t, cmd, exited, stderr)

		// A restart: the socket stays open in systemd (here, the test), so
		// a call made while no iapd runs is not refused: it waits in the
		// backlog and the next iapd answers it.
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		if err != nil {
			t.Fatalf("a call between two iapd processes: %v", err)
		}
		defer conn.Close()
		type answer struct {
			code int
			body []byte
			err  error
		}
		answered := make(chan answer, 1)
		go func() {
			tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "iap.odoo.com"})
			req, _ := http.NewRequest("POST", "https://iap.odoo.com/iap/1/balance",
				strings.NewReader(`{"jsonrpc":"2.0","method":"call","params":{"service_name":"sms"},"id":2}`))
			req.Header.Set("Content-Type", "application/json")
			if err := req.Write(tc); err != nil {
				answered <- answer{err: err}
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(tc), req)
			if err != nil {
				answered <- answer{err: err}
				return
			}
			body, err := io.ReadAll(resp.Body)
			answered <- answer{resp.StatusCode, body, err}
		}()
		cmd, exited, _, _, stderr = startUnitProc(t, withPID, []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=" + name}, []*os.File{f})
		select {
		case a := <-answered:
			if a.err != nil || a.code != 200 || !bytes.Contains(a.body, []byte("account_token")) {
				t.Fatalf("the call made during the restart: HTTP %d %s %v\n%s", a.code, a.body, a.err, stderr.String())
			}
		case <-time.After(startupWait):
			t.Fatalf("the call made during the restart was not answered\n%s", stderr.String())
		}
		stopUnitProc(t, cmd, exited, stderr)
	})

	// Another process's variables (LISTEN_PID not iapd's) are ignored:
	// iapd binds listen itself, which nobody may not (in a network
	// namespace of its own: a container's may let anyone bind 443).
	t.Run("other pid", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("binding 443 is refused only to an unprivileged process; this test runs as uid", os.Getuid())
		}
		needNetns(t)
		_, f := listen(t)
		argv := inNetns(argv)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES="+name, "LISTEN_PID=1")
		cmd.ExtraFiles = []*os.File{f}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "bind: permission denied") {
			t.Fatalf("LISTEN_PID of another process: want iapd to bind 443 itself and be refused, got %v\n%s", err, out)
		}
	})

	// A socket named for no listener is refused at start-up.
	t.Run("unknown name", func(t *testing.T) {
		_, f := listen(t)
		cmd := exec.Command(withPID[0], withPID[1:]...)
		cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=https")
		cmd.ExtraFiles = []*os.File{f}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), `fd 3 is named "https"`) {
			t.Fatalf("want start-up refused for a socket named https, got %v\n%s", err, out)
		}
	})
}

// TestSystemdPrivilegedPort runs the unit's exec line with the drop-in
// privileged-port.conf as systemd would: as nobody with exactly the
// capabilities the drop-in grants (ambient and bounding), in a network
// namespace of its own, serving TLS on 443. The same without the
// capability is refused the port.
func TestSystemdPrivilegedPort(t *testing.T) {
	needNetns(t)
	d := readUnit(t, dropInPath)
	var caps []string
	for _, c := range d["Service"]["AmbientCapabilities"] {
		caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if len(caps) != 1 || caps[0] != "net_bind_service" {
		t.Fatalf("the drop-in grants %q; this test runs exactly net_bind_service", caps)
	}
	_, bin, config, pool := serviceDir(t, "listen: 127.0.0.1:443\nops_listen: 127.0.0.1:9070\ndata: DIR/data\n"+
		"tls_cert_file: DIR/iapd.crt\ntls_key_file: DIR/iapd.key\npublic_url: https://iap.odoo.com\n")
	t.Run("without the capability", func(t *testing.T) {
		argv := inNetns(append(asNobody(""), unitExec(t, bin, config)...))
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "bind: permission denied") {
			t.Fatalf("nobody without CAP_NET_BIND_SERVICE: want bind refused, got %v\n%s", err, out)
		}
	})

	argv := inNetns(append(asNobody(caps[0]), unitExec(t, bin, config)...))
	cmd, exited, public, ops, stderr := startUnitProc(t, argv, nil, nil)
	if public != "https://127.0.0.1:443" {
		t.Fatalf("public listener %s, want https://127.0.0.1:443", public)
	}
	pid := cmd.Process.Pid
	if uid, eff, bnd := procCaps(t, pid); uid != fmt.Sprint(nobodyUID) || eff != 1<<capNetBind || bnd != 1<<capNetBind {
		t.Fatalf("iapd runs as uid %s with capabilities eff %#x bnd %#x, want nobody with exactly CAP_NET_BIND_SERVICE (%#x)",
			uid, eff, bnd, uint64(1)<<capNetBind)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialInNetns(ctx, pid, network, "127.0.0.1:"+portOf(addr))
	}
	// /readyz on the ops listener, inside the namespace.
	opsClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	resp, err := opsClient.Get(ops + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
	}
	checkBalance(t, httpsClient(pool, func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dial(ctx, network, "iap.odoo.com:443")
	}))
	stopUnitProc(t, cmd, exited, stderr)
}

// needNetns skips the test when the kernel refuses this process a network
// namespace (not root, or a sandbox that forbids it), saying why.
func needNetns(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("unshare", "-n", "true").CombinedOutput(); err != nil {
		t.Skipf("the kernel refuses a new network namespace here (unshare -n: %v %s); CI runs this as root", err, out)
	}
}

// inNetns runs argv in a network namespace of its own with loopback up (a
// new namespace lets only a process with CAP_NET_BIND_SERVICE bind below
// 1024). unshare keeps its pid through the exec of sh and argv: the
// process's /proc/PID/ns/net is the namespace.
func inNetns(argv []string) []string {
	return append([]string{"unshare", "-n", "--", "sh", "-c", `ip link set lo up && exec "$@"`, "sh"}, argv...)
}

func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if port == "https" {
		return "443"
	}
	return port
}

// dialInNetns dials addr from the network namespace of process pid: on
// an OS thread of its own moved into the namespace, which ends with the
// goroutine (it is never unlocked, so no other goroutine runs there).
func dialInNetns(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			res <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			res <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}

// analyzeSecurity runs `systemd-analyze security --offline=yes` on the
// unit (with the drop-ins given, copied beside it in iapd.service.d) and
// returns the overall exposure and the names of the failed checks.
func analyzeSecurity(t *testing.T, dropIns ...string) (exposure float64, failed []string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("systemd-analyze is needed to check the unit's hardening (apt-get install systemd; .ci/run does): %v", err)
	}
	dir := t.TempDir()
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(unitPath, filepath.Join(dir, "iapd.service"))
	for _, d := range dropIns {
		copyFile(d, filepath.Join(dir, "iapd.service.d", filepath.Base(d)))
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", filepath.Join(dir, "iapd.service")).Output()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for iapd.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "✗ "); ok {
			failed = append(failed, strings.Fields(rest)[0])
		}
	}
	exposure, err = strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return exposure, failed
}

// TestSystemdAnalyzeSecurity keeps the unit as strict as before socket
// activation and Type=notify (exposure 1.4), and the drop-in's cost to
// exactly what it grants: the capability and PrivateUsers=no (1.7).
func TestSystemdAnalyzeSecurity(t *testing.T) {
	exposure, base := analyzeSecurity(t)
	if exposure > 1.4 {
		t.Errorf("unit: exposure %.1f, want at most 1.4; failed checks %q", exposure, base)
	}
	for _, f := range base {
		if strings.HasPrefix(f, "CapabilityBoundingSet") || strings.HasPrefix(f, "AmbientCapabilities") ||
			strings.HasPrefix(f, "PrivateUsers") || strings.HasPrefix(f, "ProtectSystem") {
			t.Errorf("unit: %s fails", f)
		}
	}
	exposure, withDropIn := analyzeSecurity(t, dropInPath)
	if exposure > 1.7 {
		t.Errorf("unit with %s: exposure %.1f, want at most 1.7", filepath.Base(dropInPath), exposure)
	}
	var added []string
	for _, f := range withDropIn {
		if !slices.Contains(base, f) {
			added = append(added, f)
		}
	}
	slices.Sort(added)
	want := []string{"AmbientCapabilities=", "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)", "PrivateUsers="}
	if !slices.Equal(added, want) {
		t.Errorf("the drop-in fails %q more checks, want exactly %q", added, want)
	}
}

// TestSystemdSocketActivate443 runs the socket unit's port through
// systemd's own socket activation code: systemd-socket-activate (as root,
// in a network namespace of its own) binds 127.0.0.1:443 and, on the first
// connection, execs the unit's exec line as nobody without any
// capability, with the variables systemd sets (LISTEN_FDS, LISTEN_PID,
// LISTEN_FDNAMES from FileDescriptorName). That first call is answered
// over TLS.
func TestSystemdSocketActivate443(t *testing.T) {
	needNetns(t)
	if os.Getuid() != 0 {
		t.Skip("binding 443 for the socket needs root; this test runs as uid", os.Getuid())
	}
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Fatalf("systemd-socket-activate (package systemd; .ci/run installs it): %v", err)
	}
	s := readUnit(t, socketPath)
	_, bin, config, pool := serviceDir(t, "listen: 0.0.0.0:443\nops_listen: 127.0.0.1:9070\ndata: DIR/data\n"+
		"tls_cert_file: DIR/iapd.crt\ntls_key_file: DIR/iapd.key\npublic_url: https://iap.odoo.com\n")
	port := s.last("Socket", "ListenStream")
	argv := inNetns(append([]string{"systemd-socket-activate", "-l", "127.0.0.1:" + port,
		"--fdname=" + s.last("Socket", "FileDescriptorName"), "--"}, append(asNobody(""), unitExec(t, bin, config)...)...))
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(startupWait)
	for !strings.Contains(stderr.String(), "Listening on 127.0.0.1:"+port) {
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate is not listening:\n%s", stderr.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("systemd-socket-activate exited: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if strings.Contains(stdout.String(), "iapd:") {
		t.Fatalf("iapd started before the first connection:\n%s", stdout.String())
	}
	pid := cmd.Process.Pid
	// The first call starts iapd and is answered by it.
	checkBalance(t, httpsClient(pool, func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialInNetns(ctx, pid, network, "127.0.0.1:"+port)
	}))
	if want := "iapd: public https://127.0.0.1:" + port; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
	}
	if uid, eff, bnd := procCaps(t, pid); uid != fmt.Sprint(nobodyUID) || eff != 0 || bnd != 0 {
		t.Fatalf("iapd runs as uid %s with capabilities eff %#x bnd %#x, want nobody with none", uid, eff, bnd)
	}
	stopUnitProc(t, cmd, exited, stderr)
}

// awaitNotifyPast waits for a notify message holding line, counting the
// WATCHDOG=1 pings before it and failing on any other message first or
// after a minute. It returns the message's KEY=VALUE lines.
func awaitNotifyPast(t *testing.T, msgs <-chan string, line string, stderr *syncBuffer) (m map[string]string, pings int) {
	t.Helper()
	timeout := time.After(startupWait)
	for {
		select {
		case raw := <-msgs:
			lines := strings.Split(raw, "\n")
			if slices.Contains(lines, line) {
				m = map[string]string{}
				for _, l := range lines {
					k, v, _ := strings.Cut(l, "=")
					m[k] = v
				}
				return m, pings
			}
			if raw != "WATCHDOG=1" {
				t.Fatalf("notify socket: got %q, want %s\n%s", raw, line, stderr.String())
			}
			pings++
		case <-timeout:
			t.Fatalf("notify socket: no %s\n%s", line, stderr.String())
		}
	}
}

// TestSystemdReloadWatchdog runs the unit's exec line (as nobody when
// root) with $NOTIFY_SOCKET and $WATCHDOG_USEC=1s, as systemd does with
// WatchdogSec=: WATCHDOG=1 pings arrive (every 0.5s) once serving, also
// while /readyz says the disk is below its reserve (degraded but serving:
// not a reason to be restarted); SIGHUP (systemctl reload) sends
// RELOADING=1 with MONOTONIC_USEC, then READY=1 with STATUS=serving; with
// the certificate made unreadable the reload fails, says so in
// STATUS=reload failed: certificate: …, and the old certificate is still
// served.
func TestSystemdReloadWatchdog(t *testing.T) {
	dir, bin, config, pool := serviceDir(t, "listen: 127.0.0.1:0\nops_listen: 127.0.0.1:0\ndata: DIR/data\n"+
		"tls_cert_file: DIR/iapd.crt\ntls_key_file: DIR/iapd.key\npublic_url: https://iap.odoo.com\n"+
		"disk_reserve: 1000TiB\n")
	argv := unitExec(t, bin, config)
	if os.Getuid() == 0 {
		argv = append(asNobody(""), argv...)
	}
	notify, msgs := notifySocket(t, "")
	cmd, exited, public, ops, stderr := startUnitProc(t, argv, []string{"NOTIFY_SOCKET=" + notify, "WATCHDOG_USEC=1000000"}, nil)
	awaitNotifyPast(t, msgs, "READY=1", stderr)
	if code, body := get(t, ops+"/readyz", ""); code != 200 || !strings.Contains(string(body), "degraded") {
		t.Fatalf("/readyz with disk_reserve 1000TiB: %d %s, want degraded", code, body)
	}
	// Two pings in a row while degraded.
	for range 2 {
		select {
		case m := <-msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("notify socket: got %q, want WATCHDOG=1\n%s", m, stderr.String())
			}
		case <-time.After(startupWait):
			t.Fatalf("no WATCHDOG=1 while degraded but serving\n%s", stderr.String())
		}
	}

	reload := func() map[string]string {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		m, _ := awaitNotifyPast(t, msgs, "RELOADING=1", stderr)
		if usec, err := strconv.ParseInt(m["MONOTONIC_USEC"], 10, 64); err != nil || usec <= 0 {
			t.Fatalf("RELOADING=1 with MONOTONIC_USEC=%q, want a CLOCK_MONOTONIC time in µs", m["MONOTONIC_USEC"])
		}
		m, _ = awaitNotifyPast(t, msgs, "READY=1", stderr)
		return m
	}
	if m := reload(); m["STATUS"] != "serving" {
		t.Fatalf("after a reload: STATUS=%q, want serving", m["STATUS"])
	}

	crt := filepath.Join(dir, "iapd.crt")
	if err := os.Chmod(crt, 0); err != nil {
		t.Fatal(err)
	}
	m := reload()
	if st := m["STATUS"]; !strings.HasPrefix(st, "reload failed: certificate: ") || !strings.Contains(st, "permission denied") {
		t.Fatalf("after a reload with the certificate unreadable: STATUS=%q", st)
	}
	c := httpsClient(pool, func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, strings.TrimPrefix(public, "https://"))
	})
	checkBalance(t, c)
	if _, pings := awaitNotifyPast(t, msgs, "WATCHDOG=1", stderr); pings != 0 {
		t.Fatalf("counted %d pings before a ping", pings)
	}
	stopUnitProc(t, cmd, exited, stderr)
}
