package admin_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iapd/iapd/rpc/admin"
	"github.com/iapd/iapd/storage"
	"github.com/iapd/iapd/storage/badger"
)

// fakeImports answers StartImport with err and records the request.
type fakeImports struct {
	err    error
	format string
	files  []string
	st     *admin.RegisterImportStatus
}

func (f *fakeImports) StartImport(format string, files []string) error {
	if f.err != nil {
		return f.err
	}
	f.format, f.files = format, files
	f.st = &admin.RegisterImportStatus{State: "running", Format: format, Files: files}
	return nil
}

func (f *fakeImports) ImportStatus() (admin.RegisterImportStatus, bool) {
	if f.st == nil {
		return admin.RegisterImportStatus{}, false
	}
	return *f.st, true
}

func registersServer(t *testing.T, imp admin.RegisterImports) *httptest.Server {
	t.Helper()
	l, err := badger.Open(badger.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := httptest.NewServer(admin.New(admin.Config{Ledger: l, Token: opsTok, Registers: imp}))
	t.Cleanup(srv.Close)
	return srv
}

func registersCall(t *testing.T, srv *httptest.Server, method, tok, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, _ := http.NewRequest(method, srv.URL+"/v1/registers/import", rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// POST/GET /v1/registers/import: the admin token required, the request
// passed on, the importer's error kinds answered with their status, 503
// without an importer, 404 before any import.
func TestRegisterImportRoutes(t *testing.T) {
	const body = `{"format": "gleif", "files": ["/srv/golden.csv.zip"]}`
	none := registersServer(t, nil)
	if code, raw := registersCall(t, none, "POST", opsTok, body); code != http.StatusServiceUnavailable || !strings.Contains(raw, "offline") {
		t.Errorf("without registers: %d %s", code, raw)
	}
	f := &fakeImports{}
	srv := registersServer(t, f)
	if code, raw := registersCall(t, srv, "POST", "", body); code != http.StatusUnauthorized || f.format != "" {
		t.Errorf("without the token: %d %s", code, raw)
	}
	if code, raw := registersCall(t, srv, "GET", opsTok, ""); code != http.StatusNotFound {
		t.Errorf("status before an import: %d %s", code, raw)
	}
	if code, raw := registersCall(t, srv, "POST", opsTok, `{"format": "gleif", "path": "/x"}`); code != http.StatusBadRequest {
		t.Errorf("unknown field: %d %s", code, raw)
	}
	code, raw := registersCall(t, srv, "POST", opsTok, body)
	var st admin.RegisterImportStatus
	if code != http.StatusAccepted || json.Unmarshal([]byte(raw), &st) != nil || st.State != "running" || f.format != "gleif" || len(f.files) != 1 || f.files[0] != "/srv/golden.csv.zip" {
		t.Errorf("start: %d %s (%+v)", code, raw, f)
	}
	if code, raw := registersCall(t, srv, "GET", opsTok, ""); code != http.StatusOK || !strings.Contains(raw, `"state":"running"`) {
		t.Errorf("status: %d %s", code, raw)
	}
	for kind, want := range map[storage.Kind]int{storage.Conflict: 409, storage.Invalid: 400, storage.Unavailable: 503} {
		f.err = storage.E("registers import", kind, "refused: "+kind.String())
		if code, raw := registersCall(t, srv, "POST", opsTok, body); code != want || !strings.Contains(raw, "refused") {
			t.Errorf("%v: %d %s, want %d", kind, code, raw, want)
		}
	}
}
