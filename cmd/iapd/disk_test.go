package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iapd/iapd/storage/badger"
)

func TestDiskReserveConfig(t *testing.T) {
	c, err := ParseConfig([]byte(""), func(string) string { return "" })
	if err != nil || c.DiskReserve != badger.DefaultDiskReserve || ledgerDiskReserve(c.DiskReserve) != badger.DefaultDiskReserve {
		t.Fatalf("default: %v %v", c.DiskReserve, err)
	}
	c, err = ParseConfig([]byte("disk_reserve: 1GiB\n"), func(string) string { return "" })
	if err != nil || c.DiskReserve != 1<<30 {
		t.Fatalf("1GiB: %v %v", c.DiskReserve, err)
	}
	c, err = ParseConfig([]byte("disk_reserve: 0\n"), func(string) string { return "" })
	if err != nil || ledgerDiskReserve(c.DiskReserve) >= 0 {
		t.Fatalf("0 keeps only Badger's need: %v %v", c.DiskReserve, err)
	}
	if _, err := ParseConfig([]byte("disk_reserve: 5%\n"), func(string) string { return "" }); err == nil {
		t.Fatal("a percentage accepted: the reserve is what Badger needs, in bytes")
	}
	c = DefaultConfig()
	c.DiskReserve = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "disk_reserve") {
		t.Fatalf("negative reserve: %v", err)
	}
}

// /readyz while writes are refused for lack of space: 200 degraded with
// the reason (reads are still served); when ready fails, or space is
// fine, the admin handler answers.
func TestReadyzWithSpace(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	low := badger.SpaceStatus{Free: 10, Reserve: 100, Floor: 5, Level: badger.SpaceLow}
	for _, c := range []struct {
		name  string
		space badger.SpaceStatus
		ready error
		code  int
		body  string
	}{
		{"ok", badger.SpaceStatus{}, nil, http.StatusTeapot, ""},
		{"low", low, nil, 200, `"status":"degraded"`},
		{"low and not ready", low, errors.New("closed"), http.StatusTeapot, ""},
		{"critical", badger.SpaceStatus{Free: 1, Reserve: 100, Floor: 5, Level: badger.SpaceCritical}, nil, 200, "disk space critical"},
	} {
		h := readyzWithSpace(next, func() badger.SpaceStatus { return c.space }, func() error { return c.ready })
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("%s: %d %s", c.name, rec.Code, rec.Body.String())
		}
	}
}
