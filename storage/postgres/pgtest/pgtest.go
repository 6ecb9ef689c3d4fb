// Package pgtest gives tests a PostgreSQL server to run against:
// $IAPD_TEST_POSTGRES (a postgres:// URL of a server where the tests may
// create schemas), else a throwaway cluster it starts itself when initdb
// and pg_ctl are found (PATH, or Debian's /usr/lib/postgresql/*/bin): in a
// temporary folder, on a free port, as the postgres user when run as root.
// Without either, tests skip — and fail when CI=true or
// IAPD_TEST_POSTGRES_REQUIRED=1, so CI never passes without having run
// them.
//
// Package pgtest imports the standard library and github.com/jackc/pgx/v5
// only; it is for tests (storage/postgres, cmd/iapd).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable that points the tests at a server.
const EnvURL = "IAPD_TEST_POSTGRES"

// EnvRequired, "1", makes a missing PostgreSQL fail the tests as CI=true
// does (.ci/run sets it).
const EnvRequired = "IAPD_TEST_POSTGRES_REQUIRED"

var (
	once     sync.Once
	baseURL  string
	startErr error
	cluster  *Cluster
)

// server returns the base URL of the shared server, starting a cluster on
// first use.
func server() (string, error) {
	once.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			baseURL = u
			return
		}
		cluster, startErr = Start(os.TempDir())
		if startErr == nil {
			baseURL = cluster.URL
		}
	})
	return baseURL, startErr
}

// need skips t, or fails it under CI=true, when no server can be had.
func need(t testing.TB) string {
	t.Helper()
	u, err := server()
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv(EnvRequired) == "1" {
			t.Fatalf("PostgreSQL tests cannot run: %v (set %s, or install postgresql: .ci/run does)", err, EnvURL)
		}
		t.Skipf("no PostgreSQL: %v (set %s or install postgresql)", err, EnvURL)
	}
	return u
}

// Main runs the tests of a package and stops the cluster pgtest started,
// if any: call it from TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop stops the shared cluster pgtest started, if any (for a TestMain
// that does not call Main).
func Stop() {
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
		cluster = nil
	}
}

// Private starts a cluster of the test's own (stopped when t ends), for
// tests that stop and restart the server. It skips, or fails as the
// shared server does, when no cluster can be started here.
func Private(t testing.TB) *Cluster {
	t.Helper()
	c, err := Start(os.TempDir())
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv(EnvRequired) == "1" {
			t.Fatalf("cannot start a PostgreSQL cluster: %v", err)
		}
		t.Skipf("cannot start a PostgreSQL cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Log(err)
		}
	})
	return c
}

// Schema returns the URL of a fresh, empty schema on the test server (its
// search_path), dropped when t ends.
func Schema(t testing.TB) string {
	t.Helper()
	base := need(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: connecting: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if conn, err := pgx.Connect(ctx, base); err == nil {
			_, _ = conn.Exec(ctx, "DROP SCHEMA "+name+" CASCADE")
			_ = conn.Close(ctx)
		}
	})
	return WithParam(base, "search_path", name)
}

// WithParam returns u with the query parameter k set to v.
func WithParam(u, k, v string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	q.Set(k, v)
	p.RawQuery = q.Encode()
	return p.String()
}

// Cluster is a throwaway PostgreSQL cluster.
type Cluster struct {
	URL  string
	Dir  string
	Port int
	bin  string
	cred *syscall.Credential
}

// Start initialises and starts a cluster in a new folder under parent, on
// a free port of 127.0.0.1, as the postgres user when run as root. fsync
// is off: a test cluster dies with its folder.
func Start(parent string) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	root := os.Geteuid() == 0
	if root && !traversable(parent) {
		parent = "/tmp" // the postgres user must reach the folder
	}
	dir, err := os.MkdirTemp(parent, "iapd-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin}
	if root {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user to run the cluster as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "iapd", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.Port = port
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=on -c full_page_writes=off -c max_connections=400", port, dir)
		out, err := c.run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "120", "start")
		if err == nil {
			break
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
		}
	}
	c.URL = fmt.Sprintf("postgres://iapd@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	return c, nil
}

// Stop stops the cluster (fast shutdown) and removes its folder.
func (c *Cluster) Stop() error {
	if _, err := os.Stat(filepath.Join(c.Dir, "data", "postmaster.pid")); err == nil {
		out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "fast", "-w", "stop")
		if err != nil {
			return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
		}
	}
	return os.RemoveAll(c.Dir)
}

// Kill stops the server at once (immediate shutdown: like a crash, what
// was acknowledged survives); Restart starts it again on the same port.
func (c *Cluster) Kill() error {
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Restart starts a stopped cluster on its port.
func (c *Cluster) Restart() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400", c.Port, c.Dir)
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-o", opts, "-l", filepath.Join(c.Dir, "log"), "-w", "-t", "120", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

func (c *Cluster) run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, tool), args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

// findBin finds the folder of initdb and pg_ctl: PATH first, then the
// newest of Debian's /usr/lib/postgresql/*/bin.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return a > b
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found (PATH, /usr/lib/postgresql/*/bin)")
}

// traversable reports whether every folder from / to dir lets others
// through (the postgres user, when the tests run as root).
func traversable(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for d := abs; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
