package rpctest

import (
	"strings"
	"testing"
)

// Every captured request rebuilds to exactly Content-Length bytes (the
// fixtures READMEs: the body on the wire is json.dumps(body)).
func TestWireLengthAllFixtures(t *testing.T) {
	n := 0
	for _, v := range Versions {
		for _, r := range Load(t, v, nil) {
			if _, ok := r.Headers["Content-Length"]; !ok {
				t.Errorf("%s/%s: no Content-Length", v, r.Name)
			}
			r.Wire(t)
			n++
		}
	}
	if n < 100 {
		t.Fatalf("only %d requests found", n)
	}
	t.Logf("%d requests rebuilt byte for byte", n)
}

func TestPythonJSON(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"a":1,"b":[1.50,true,null,"x"],"c":{}}`, `{"a": 1, "b": [1.50, true, null, "x"], "c": {}}`},
		{`{"z":1,"a":2}`, `{"z": 1, "a": 2}`},
		{`"é\u2028😀\u007f\"\\\n"`, `"\u00e9\u2028\ud83d\ude00\u007f\"\\\n"`},
		{`[]`, `[]`},
		{`1e-05`, `1e-05`},
	} {
		got, err := PythonJSON([]byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("PythonJSON(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	if _, err := PythonJSON([]byte(`{"a":1} x`)); err == nil {
		t.Error("trailing data accepted")
	}
}

// 16.0's files hold the answer with the request ("response"); 18.0's are
// in responses/; 17.0 has none.
func TestResponseLayouts(t *testing.T) {
	for _, c := range []struct {
		version, name, want string
	}{
		{"odoo16", "004_iap_message_send.json", `"werkzeug.exceptions.NotFound"`},
		{"odoo16", "nocredit_002_iap_sms_2_send.json", `"insufficient_credit"`},
		{"odoo18", "001_iap_1_balance.json", `"result": 4242.0`},
	} {
		rs := Load(t, c.version, func(r *Request) bool { return r.Name == c.name })
		if len(rs) != 1 {
			t.Fatalf("%s/%s: %d files", c.version, c.name, len(rs))
		}
		got, ok := rs[0].Response(t)
		if !ok || !strings.Contains(string(got), c.want) {
			t.Errorf("%s/%s: answer %q (%v), want it to hold %s", c.version, c.name, got, ok, c.want)
		}
	}
	if _, ok := Load(t, "odoo17", nil)[0].Response(t); ok {
		t.Error("odoo17 has no captured answer")
	}
}
