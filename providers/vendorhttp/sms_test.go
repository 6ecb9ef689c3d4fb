package vendorhttp

import (
	"strings"
	"testing"
	"time"

	"github.com/iapd/iapd/providers"
)

func TestCheckSMS(t *testing.T) {
	for _, c := range []struct {
		m    providers.SMS
		code string
	}{
		{providers.SMS{To: "+32470123456", Body: "hi"}, ""},
		{providers.SMS{To: "0470123456", Body: "hi"}, "wrong_number_format"},
		{providers.SMS{To: "+32470123456"}, "empty_body"},
	} {
		r, bad := CheckSMS("p", c.m)
		if bad != (c.code != "") {
			t.Errorf("CheckSMS(%+v) refused: %v, want %v", c.m, bad, c.code != "")
			continue
		}
		if bad && (r.Err == nil || r.Err.Kind != providers.Invalid || r.Err.Code != c.code || r.Err.Provider != "p") {
			t.Errorf("CheckSMS(%+v) = %+v, want Invalid %s from p", c.m, r.Err, c.code)
		}
	}
}

func TestCheckBaseURL(t *testing.T) {
	for in, want := range map[string]string{"": "https://def.example", "http://h:8080//": "http://h:8080", "https://h/p/": "https://h/p"} {
		b := in
		if err := CheckBaseURL(&b, "https://def.example"); err != nil || b != want {
			t.Errorf("CheckBaseURL(%q) = %q, %v; want %q", in, b, err, want)
		}
	}
	for _, in := range []string{"ftp://h", "h.example", "https://user:secret@h", "http://"} {
		b := in
		err := CheckBaseURL(&b, "x")
		if err == nil || !strings.HasPrefix(err.Error(), "base_url:") || strings.Contains(err.Error(), "secret") {
			t.Errorf("CheckBaseURL(%q): %v, want a base_url error without the value", in, err)
		}
	}
}

func TestCheckLimits(t *testing.T) {
	var d time.Duration
	var n int
	if err := CheckLimits(&d, &n); err != nil || d != 10*time.Second || n != 4 {
		t.Errorf("defaults: %v %d %v", d, n, err)
	}
	for _, c := range []struct {
		d    time.Duration
		n    int
		want string
	}{{-time.Second, 1, "timeout:"}, {time.Second, 65, "concurrency:"}, {time.Second, -1, "concurrency:"}} {
		if err := CheckLimits(&c.d, &c.n); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("CheckLimits(%v, %d): %v, want %s", c.d, c.n, err, c.want)
		}
	}
}
