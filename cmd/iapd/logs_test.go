package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The logs an operator reads (issue 14 item 4), from "iapd serve" run in
// process with JSON logs at debug: the access log's fields per outcome
// class and never a token, Badger's own lines absent unless log_storage
// asks for them, the start-up report as a few structured lines, and
// durations as duration strings.
func TestServeLogs(t *testing.T) {
	const rich = "0123456789abcdef0123456789abcdef"
	const poor = "fedcba9876543210fedcba9876543210"
	start := func(t *testing.T, extra string) *testServer {
		cfg := filepath.Join(t.TempDir(), "iapd.yaml")
		yaml := "log_format: json\nlog_level: debug\nadmin_token: " + testAdminToken + "\n" + extra
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return startServer(t, nil, "-config", cfg)
	}
	post := func(t *testing.T, s *testServer, path string, params map[string]any) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
		resp, err := http.Post(s.public+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	lines := func(t *testing.T, out string) []map[string]any {
		t.Helper()
		var ls []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("a log line is not JSON (%v): %s", err, l)
			}
			ls = append(ls, m)
		}
		return ls
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }

	t.Run("access on, storage at its default", func(t *testing.T) {
		s := start(t, "log_access: true\n")
		const geoKey = "geo-service-key-0123456789"
		s.mustCLI(t, "", "credit", "sms", rich, "10")
		s.mustCLI(t, geoKey, "services", "create", "geo", "-key-stdin")
		type call struct {
			path    string
			params  map[string]any
			outcome string
			errName string
		}
		calls := []call{
			{"/iap/1/balance", map[string]any{"account_token": rich, "service_name": "sms", "db_version": "19.0"}, "ok", ""},
			{"/iap/1/authorize", map[string]any{"account_token": poor, "key": geoKey, "credit": 1}, "insufficient_credit", "InsufficientCreditError"},
			{"/iap/1/authorize", map[string]any{"account_token": rich, "key": "not-a-service-key", "credit": 1}, "unauthorized", "AccessError"},
			{"/iap/1/authorize", map[string]any{"account_token": rich, "key": geoKey, "credit": "x"}, "invalid", "UserError"},
			{"/iap/message_sent", map[string]any{"account_token": rich}, "not_found", "NotFound"},
		}
		for _, c := range calls {
			post(t, s, c.path, c.params)
		}
		s.stop(t)
		out := s.stderr.String()
		for _, secret := range []string{rich, poor, geoKey, "not-a-service-key", testAdminToken} {
			if strings.Contains(out, secret) {
				t.Fatalf("the log holds a secret %q", secret)
			}
		}
		var access, wiringInfo []map[string]any
		for _, m := range lines(t, out) {
			if str(m, "engine") == "badger" {
				t.Errorf("a Badger line at the default log_storage: %v", m)
			}
			if str(m, "component") == "access" {
				access = append(access, m)
			}
			if strings.HasPrefix(str(m, "msg"), "wiring:") && m["level"] == "INFO" {
				wiringInfo = append(wiringInfo, m)
			}
		}
		if len(access) != len(calls) {
			t.Fatalf("%d access lines for %d calls:\n%s", len(access), len(calls), out)
		}
		for i, c := range calls {
			m := access[i]
			if str(m, "path") != c.path || str(m, "outcome") != c.outcome || str(m, "error") != c.errName ||
				m["status"] != float64(200) || str(m, "client") != "127.0.0.1" || str(m, "method") != "POST" {
				t.Errorf("call %d (%s): %v", i, c.path, m)
			}
			if d, err := time.ParseDuration(str(m, "duration")); err != nil || d <= 0 {
				t.Errorf("call %d: duration %v is not a duration string", i, m["duration"])
			}
			if rb, _ := m["request_bytes"].(float64); rb <= 0 {
				t.Errorf("call %d: request_bytes %v", i, m["request_bytes"])
			}
			if rb, _ := m["response_bytes"].(float64); rb <= 0 {
				t.Errorf("call %d: response_bytes %v", i, m["response_bytes"])
			}
		}
		if a := access[0]; str(a, "service") != "sms" || len(str(a, "account")) != 24 || str(a, "odoo_version") != "19.0" {
			t.Errorf("balance: service, account or odoo_version: %v", a)
		}
		if a := access[1]; str(a, "account") == "" || str(a, "account") == str(access[0], "account") {
			t.Errorf("authorize: account: %v", a)
		}
		if str(access[2], "account") != str(access[0], "account") {
			t.Errorf("one token, two account refs: %v, %v", access[0], access[2])
		}

		// The start-up report: a few lines, one per area, key=value.
		byMsg := map[string]map[string]any{}
		for _, m := range wiringInfo {
			byMsg[str(m, "msg")] = m
		}
		if len(wiringInfo) > 6 {
			t.Errorf("%d wiring lines at info, want a few", len(wiringInfo))
		}
		for _, msg := range []string{"wiring: storage", "wiring: services", "wiring: alerts", "wiring: routes", "wiring: limits"} {
			if byMsg[msg] == nil {
				t.Errorf("no %q line:\n%s", msg, out)
			}
		}
		if m := byMsg["wiring: routes"]; m == nil || m["local"] == nil || m["local"].(float64) < 20 {
			t.Errorf("wiring: routes: %v", m)
		}
		if m := byMsg["wiring: storage"]; m == nil || m["sweep_interval"] != "1m" {
			t.Errorf("wiring: storage: sweep_interval %v, want \"1m\"", m["sweep_interval"])
		}
		if m := byMsg["wiring: limits"]; m == nil || m["accounts_per_address"] != "1000/1h" {
			t.Errorf("wiring: limits: %v", m)
		}
		if m := byMsg["wiring: services"]; m == nil || str(m, "sms") == "" || str(m, "snailmail") == "" {
			t.Errorf("wiring: services: %v", m)
		}
		if !strings.Contains(out, `"msg":"wiring: route","path":"/iap/1/authorize"`) {
			t.Errorf("no per-route line at debug")
		}
		if !strings.Contains(out, `"msg":"shutting down","timeout":"15s"`) {
			t.Errorf("durations: the shutdown line does not say 15s")
		}
	})

	t.Run("access off, storage at debug", func(t *testing.T) {
		s := start(t, "log_storage: debug\n")
		post(t, s, "/iap/1/balance", map[string]any{"account_token": rich, "service_name": "sms"})
		s.stop(t)
		badger, access := 0, 0
		for _, m := range lines(t, s.stderr.String()) {
			if str(m, "engine") == "badger" {
				badger++
			}
			if str(m, "component") == "access" {
				access++
			}
		}
		if badger == 0 || access != 0 {
			t.Errorf("log_storage debug, log_access off: %d Badger lines (want some), %d access lines (want none)", badger, access)
		}
	})
}

// shortDuration drops the zero units Go prints; replaceDuration makes
// the JSON handler write durations as strings.
func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 24 * time.Hour: "24h", time.Minute: "1m", 90 * time.Minute: "1h30m",
		15 * time.Second: "15s", 1500 * time.Millisecond: "1.5s", 0: "0s", 1234 * time.Microsecond: "1.234ms",
		time.Hour + time.Second: "1h0m1s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	var b bytes.Buffer
	log := newLogger(Config{LogLevel: "info", LogFormat: "json"}, &b)
	log.Info("x", "d", time.Hour, slog.Group("g", "d", 2*time.Second))
	if !strings.Contains(b.String(), `"d":"1h","g":{"d":"2s"}`) {
		t.Errorf("JSON durations: %s", b.String())
	}
}

// ByteSize prints as the configuration writes it, and reads back.
func TestByteSizeString(t *testing.T) {
	for b, want := range map[ByteSize]string{0: "0", 1: "1", 256 << 20: "256MiB", 1536 << 10: "1536KiB", 3 << 40: "3TiB", 1<<30 + 1: "1073741825"} {
		got := b.String()
		back, err := ParseByteSize(got)
		if got != want || err != nil || back != b {
			t.Errorf("ByteSize(%d).String() = %q (read back %d, %v), want %q", int64(b), got, int64(back), err, want)
		}
	}
}

// logReport turns every form of report entry into attributes of a few
// lines: routes counted by mode (their paths when not local), providers,
// the air-gapped hosts, and an entry of a form it does not know kept
// under its area.
func TestLogReport(t *testing.T) {
	var b bytes.Buffer
	w := &wiring{cfg: DefaultConfig(), report: []string{
		"provider twilio-eu: type twilio",
		"sms: providers twilio-eu",
		"lead enrichment, mining, reveal: providers directory (directory)",
		"alerts: disabled (low-credit alerts stay queued in the ledger)",
		"air-gapped: nothing is forwarded to Odoo; outbound connections only to:",
		"  api.twilio.com:443",
		"  smtp.example.org:587",
		"route /iap/1/balance [-, iap.endpoint]: by service_name → per service",
		"route /iap/sms/2/send [sms, sms.endpoint]: local → iapd",
		"route /iap/clearbit/* (other paths) [reveal, reveal.endpoint]: refuse → refused: JSON-RPC AccessError",
		"route /iap/snailmail/1/print [snailmail, snailmail.endpoint]: refuse (upstream, air-gapped) → refused",
		"sandbox: sms sends nothing",
		"upstream audit log: /var/log/iapd/upstream.jsonl",
	}}
	w.logReport(newLogger(Config{LogLevel: "info", LogFormat: "json"}, &b))
	got := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		got[m["msg"].(string)] = m
	}
	want := map[string]map[string]any{
		"wiring: services": {"provider.twilio-eu": "twilio", "sms": "providers twilio-eu", "reveal": "providers directory (directory)",
			"sandbox": "sms sends nothing"},
		"wiring: alerts": {"notifier": "disabled (low-credit alerts stay queued in the ledger)"},
		"wiring: routes": {"local": 1.0, "upstream": 0.0, "refuse": 1.0, "by_service_name": 1.0, "refuse_upstream_air_gapped": 1.0,
			"by_service_name_paths": "/iap/1/balance", "refuse_paths": "/iap/clearbit/* (other paths)",
			"refuse_upstream_air_gapped_paths": "/iap/snailmail/1/print"},
		"wiring: upstream": {"air_gapped": "nothing is forwarded to Odoo; outbound connections only to:",
			"outbound_allowed": "api.twilio.com:443, smtp.example.org:587", "audit_log": "/var/log/iapd/upstream.jsonl"},
		"wiring: storage": {"sweep_interval": "1m", "log_storage": "warn"},
	}
	for msg, attrs := range want {
		for k, v := range attrs {
			if got[msg][k] != v {
				t.Errorf("%s %s = %v, want %v", msg, k, got[msg][k], v)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d lines, want %d:\n%s", len(got), len(want), b.String())
	}
}
