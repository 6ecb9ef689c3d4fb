package main

import (
	"bytes"
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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
	"github.com/iapd/iapd/providers/registers/formats"
	"github.com/iapd/iapd/storage"
)

// onlineSyntheticN is how many synthetic companies the newer Companies
// House file carries, so that its import runs long enough for lookups
// and a second import to meet it (some seconds; the race detector's
// binary imports some 15 times slower, so fewer there).
func onlineSyntheticN() int {
	if raceEnabled {
		return 20_000
	}
	return 150_000
}

// TestDirectoryImportOnline: the real binary serves partner
// autocomplete (PROTOCOL §3) from registers imported offline; an online
// import of a newer Companies House file through the admin API runs
// while lookups keep answering, a second import meanwhile is refused
// with 409, and once it is done — without a restart — the company the
// newer file lacks is struck off (listed after the active ones) and a
// new one is found. Unauthenticated and bad-path requests are refused
// with a clear answer; iapd directory import without -data follows an
// online import to its end (exit 0) or failure (exit 1).
func TestDirectoryImportOnline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and imports 150 000 companies")
	}
	onlineSynthetic := int64(onlineSyntheticN())
	bin := buildIapd(t)
	data := filepath.Join(t.TempDir(), "data")
	chFile, err := filepath.Abs(filepath.Join(registerTestdata, "companies-house", "BasicCompanyDataAsOneFile-2026-12-01.csv"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := runDirectory(context.Background(), []string{"import", "-format", "companies-house", "-data", data, chFile},
		stdio{getenv: func(string) string { return "" }, stdout: &out, stderr: &errb}, formats.ReadFile); err != nil {
		t.Fatalf("offline first import: %v\n%s", err, errb.String())
	}

	// Next month's file: EXAMPLE SOFTWARE LTD gone, a new company and
	// many synthetic ones added.
	src, err := os.ReadFile(chFile)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var template string
	for _, line := range strings.SplitAfter(string(src), "\n") {
		switch {
		case strings.Contains(line, `"09876543"`):
			continue
		case strings.Contains(line, `"OC301234"`):
			template = line
		}
		b.WriteString(line)
	}
	if template == "" {
		t.Fatal("no EXAMPLE PARTNERS LLP row in the Companies House extract")
	}
	b.WriteString(strings.NewReplacer(`"EXAMPLE PARTNERS LLP"`, `"ZYLOPHONE HARBOUR LLP"`, `"OC301234"`, `"OC399999"`).Replace(template))
	for i := range onlineSynthetic {
		b.WriteString(strings.NewReplacer(`"EXAMPLE PARTNERS LLP"`, fmt.Sprintf(`"SYNTHETIC WIDGETS %d LLP"`, i), `"OC301234"`, fmt.Sprintf(`"%08d"`, 20000000+i)).Replace(template))
	}
	newerDir := t.TempDir()
	newer := filepath.Join(newerDir, "BasicCompanyDataAsOneFile-2027-01-01.csv")
	if err := os.WriteFile(newer, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	stderr := &syncBuffer{}
	srv, exited, public, ops := launch(t, bin, []string{"serve", "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-data", data},
		[]string{"IAPD_ADMIN_TOKEN=" + testAdminToken}, stderr)
	const token = "0123456789abcdef0123456789abcdef"
	companyCredit(t, &testServer{ops: ops}, storage.PartnerAutocomplete, token, "100000")
	search := func(q string) []string {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": map[string]any{
			"query": q, "account_token": token, "country_code": "GB", "zip": "", "db_uuid": "7ee805fc-eac7-11f1-8369-02fc00000001"}})
		a := companyPost(t, public+"/iap/partner_autocomplete/search", body, nil)
		var res []struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(a.result, &res); err != nil {
			t.Fatalf("search %q: %s", q, a.raw)
		}
		names := make([]string, len(res))
		for i, r := range res {
			names[i] = r.Name
		}
		return names
	}
	if got := search("example software"); len(got) == 0 || !strings.EqualFold(got[0], "EXAMPLE SOFTWARE LTD") {
		t.Fatalf("before the online import, 'example software' finds %q", got)
	}
	if got := search("zylophone harbour"); len(got) != 0 {
		t.Fatalf("before the online import, 'zylophone harbour' finds %q", got)
	}

	call := func(method, tok string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			j, _ := json.Marshal(body)
			rd = bytes.NewReader(j)
		}
		req, _ := http.NewRequest(method, ops+"/v1/registers/import", rd)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, raw
	}
	start := map[string]any{"format": "companies-house", "files": []string{newer}}
	if code, raw := call("POST", "", start); code != http.StatusUnauthorized {
		t.Errorf("import without the admin token: HTTP %d %s", code, raw)
	}
	if code, raw := call("POST", "wrong-"+testAdminToken, start); code != http.StatusUnauthorized {
		t.Errorf("import with a wrong admin token: HTTP %d %s", code, raw)
	}
	for _, bad := range []struct{ file, says string }{
		{"/nonexistent/BasicCompanyData.csv", "/nonexistent/BasicCompanyData.csv: no such file"},
		{"BasicCompanyData.csv", "not an absolute path"},
		{newerDir, "not a regular file"},
	} {
		code, raw := call("POST", testAdminToken, map[string]any{"format": "companies-house", "files": []string{bad.file}})
		if code != http.StatusBadRequest || !strings.Contains(string(raw), bad.says) {
			t.Errorf("import of %s: HTTP %d %s, want 400 saying %q", bad.file, code, raw, bad.says)
		}
	}
	if code, raw := call("GET", testAdminToken, nil); code != http.StatusNotFound {
		t.Errorf("status before any online import: HTTP %d %s", code, raw)
	}

	if code, raw := call("POST", testAdminToken, start); code != http.StatusAccepted {
		t.Fatalf("online import: HTTP %d %s\n%s", code, raw, stderr.String())
	}
	if code, raw := call("POST", testAdminToken, start); code != http.StatusConflict || !strings.Contains(string(raw), "already running") {
		t.Errorf("a second import while the first runs: HTTP %d %s", code, raw)
	}
	var st struct {
		State     string `json:"state"`
		Records   int64  `json:"records"`
		Bad       int64  `json:"bad_rows"`
		BadShown  []string
		New       int64     `json:"new"`
		Unchanged int64     `json:"unchanged"`
		StruckOff int64     `json:"struck_off"`
		Error     string    `json:"error"`
		Started   time.Time `json:"started"`
		Finished  time.Time `json:"finished"`
	}
	var during []time.Duration
	lookupsDuring := 0
	deadline := time.Now().Add(5 * time.Minute)
	for {
		code, raw := call("GET", testAdminToken, nil)
		if code != http.StatusOK {
			t.Fatalf("status: HTTP %d %s", code, raw)
		}
		var s struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		if s.State != "running" {
			if err := json.Unmarshal(raw, &st); err != nil {
				t.Fatal(err)
			}
			var shown struct {
				BadRows []string `json:"bad_rows_shown"`
			}
			_ = json.Unmarshal(raw, &shown)
			st.BadShown = shown.BadRows
			break
		}
		// Lookups answer from the index while the import writes it.
		t0 := time.Now()
		got := search("example trading")
		during = append(during, time.Since(t0))
		if len(got) == 0 || !strings.EqualFold(got[0], "EXAMPLE TRADING PLC") {
			t.Errorf("during the import, 'example trading' finds %q", got)
		}
		lookupsDuring++
		if time.Now().After(deadline) {
			t.Fatalf("the import still runs after 5 minutes: %s", raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lookupsDuring == 0 {
		t.Errorf("no lookup met the running import (%d companies): the test did not test lookups during an import", onlineSynthetic)
	}
	slices.Sort(during)
	secs := st.Finished.Sub(st.Started).Seconds()
	t.Logf("online import: %d records in %.1fs (%.0f records/s), %d new, %d struck off; %d lookups answered during it (HTTP round trip p50 %v, max %v)",
		st.Records, secs, float64(st.Records)/secs, st.New, st.StruckOff, lookupsDuring, during[len(during)/2], during[len(during)-1])
	if st.State != "done" || st.Error != "" || st.New != onlineSynthetic+1 || st.StruckOff != 1 || st.Unchanged != 3 {
		t.Errorf("online import ended %+v, want done, %d new, 3 unchanged, 1 struck off", st, onlineSynthetic+1)
	}
	if st.Bad != 2 || len(st.BadShown) != 2 || !strings.HasPrefix(st.BadShown[0], filepath.Base(newer)+":4: ") {
		t.Errorf("bad rows: %d, shown %q; want the 2 of the extract, named by file:line", st.Bad, st.BadShown)
	}
	// Without a restart: the new company is found, the struck-off one
	// comes after the active ones.
	if got := search("zylophone harbour"); len(got) == 0 || !strings.EqualFold(got[0], "ZYLOPHONE HARBOUR LLP") {
		t.Errorf("after the online import, 'zylophone harbour' finds %q", got)
	}
	if got := search("example"); len(got) < 2 || !strings.EqualFold(got[len(got)-1], "EXAMPLE SOFTWARE LTD") {
		t.Errorf("after the online import, the struck-off EXAMPLE SOFTWARE LTD is not listed last for 'example': %q", got)
	}

	// The CLI without -data: a relative FILE made absolute, followed to
	// its end; a failed import is exit status 1.
	cli := func(dir string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"directory", "import", "-ops", ops}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "IAPD_ADMIN_TOKEN="+testAdminToken)
		o, err := cmd.CombinedOutput()
		return string(o), err
	}
	o, err := cli(newerDir, "-format", "companies-house", filepath.Base(newer))
	if err != nil || !strings.Contains(o, "0 new, 0 changed, "+fmt.Sprint(onlineSynthetic+4)+" unchanged, 0 struck off") {
		t.Errorf("iapd directory import (online) of the same file again: %v\n%s", err, o)
	}
	t.Logf("iapd directory import (online, unchanged):\n%s", o)
	o, err = cli(newerDir, "-format", "kbo", filepath.Base(newer))
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(o, "failed") {
		t.Errorf("iapd directory import (online) of a Companies House file as KBO: %v\n%s", err, o)
	}
	if got := search("zylophone harbour"); len(got) == 0 {
		t.Errorf("after a failed import, 'zylophone harbour' is not found any more")
	}

	// iapd stopping (SIGTERM) during an import aborts it: iapd exits
	// cleanly, nothing is struck off, no import is logged as committed.
	imports, err := os.ReadFile(filepath.Join(data, "registers", registers.ImportsFile))
	if err != nil {
		t.Fatal(err)
	}
	var only strings.Builder
	only.WriteString(strings.SplitAfter(string(src), "\n")[0])
	for i := range onlineSynthetic {
		only.WriteString(strings.NewReplacer(`"EXAMPLE PARTNERS LLP"`, fmt.Sprintf(`"SYNTHETIC GADGETS %d LLP"`, i), `"OC301234"`, fmt.Sprintf(`"%08d"`, 20000000+i)).Replace(template))
	}
	newest := filepath.Join(newerDir, "BasicCompanyDataAsOneFile-2027-02-01.csv")
	if err := os.WriteFile(newest, []byte(only.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, raw := call("POST", testAdminToken, map[string]any{"format": "companies-house", "files": []string{newest}}); code != http.StatusAccepted {
		t.Fatalf("import before the stop: HTTP %d %s", code, raw)
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("iapd stopped during an import: %v\n%s", err, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("iapd did not stop during an import\n%s", stderr.String())
	}
	if !regexp.MustCompile(`msg="company register import ended" .*state=aborted`).MatchString(stderr.String()) {
		t.Errorf("no aborted import logged:\n%s", stderr.String())
	}
	after, err := os.ReadFile(filepath.Join(data, "registers", registers.ImportsFile))
	if err != nil || string(after) != string(imports) {
		t.Errorf("an aborted import was logged as committed: %q, %v", after, err)
	}
	r, err := (&registers.Config{Dir: registers.DefaultDir(data)}).New("registers", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mined, err := r.SearchCompanies(context.Background(), providers.Criteria{Countries: []string{"GB"}, Limit: 10})
	found := false
	for _, c := range mined {
		found = found || c.Name == "ZYLOPHONE HARBOUR LLP"
	}
	if err != nil || !found {
		t.Errorf("after an aborted import, ZYLOPHONE HARBOUR LLP is not active: %v, %v", mined, err)
	}
}
