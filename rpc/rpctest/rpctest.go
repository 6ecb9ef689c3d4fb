// Package rpctest loads the captured Odoo requests and responses (the
// fixtures in ../shared/fixtures) for the tests of package rpc and of cmd,
// and rebuilds the exact bytes Odoo sent.
//
// Each fixture request file holds path, method, headers and the JSON body;
// the bytes on the wire were Python's json.dumps(body) (default separators
// ", " and ": ", ensure_ascii), whose length is the file's Content-Length.
// PythonJSON re-encodes a body that way, keeping key order and number
// literals, and Request.Wire checks the length.
//
// The fixtures are found at <repository root>/../shared/fixtures, the root
// being the nearest directory above the working directory holding go.mod;
// the environment variable IAPD_FIXTURES overrides that location. A test
// that needs them fails (it does not skip) when they are absent.
//
// Package rpctest imports only the standard library; it is imported only by
// tests.
package rpctest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// EnvFixtures names the environment variable that overrides the fixtures
// directory.
const EnvFixtures = "IAPD_FIXTURES"

// Versions are the Odoo versions whose captures are in the fixtures, in
// the order the directories are named.
var Versions = []string{"odoo16", "odoo17", "odoo18", "odoo19"}

// Request is one captured HTTP request.
type Request struct {
	Version string // "odoo16", "odoo17", "odoo18", "odoo19"
	Name    string // file name without directory, e.g. "001_iap_1_balance.json"
	File    string // full path of the file

	Path    string            `json:"path"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"` // as stored in the file (indented); see Wire

	// Answer is the answer captured with the request, when the file holds
	// it (16.0: "response": {status, body}); see Response.
	Answer *struct {
		Status int             `json:"status"`
		Body   json.RawMessage `json:"body"`
	} `json:"response"`
}

// NoCredit reports whether the request was captured while the capture
// server answered as an IAP with no credit left (file name nocredit_*).
func (r *Request) NoCredit() bool { return strings.HasPrefix(r.Name, "nocredit_") }

// Wire returns the exact bytes Odoo sent as the body: Python's
// json.dumps(body). It fails the test if their length differs from the
// Content-Length header of the file.
func (r *Request) Wire(t testing.TB) []byte {
	t.Helper()
	b, err := PythonJSON(r.Body)
	if err != nil {
		t.Fatalf("rpctest: %s/%s: re-encoding body: %v", r.Version, r.Name, err)
	}
	if cl, ok := r.Headers["Content-Length"]; ok {
		if n, err := strconv.Atoi(cl); err != nil || n != len(b) {
			t.Fatalf("rpctest: %s/%s: rebuilt body is %d bytes, Content-Length says %s", r.Version, r.Name, len(b), cl)
		}
	}
	return b
}

// Params returns the body's params object decoded with numbers kept as
// json.Number.
func (r *Request) Params(t testing.TB) map[string]any {
	t.Helper()
	var env struct {
		Params map[string]any `json:"params"`
	}
	d := json.NewDecoder(bytes.NewReader(r.Body))
	d.UseNumber()
	if err := d.Decode(&env); err != nil {
		t.Fatalf("rpctest: %s/%s: decoding params: %v", r.Version, r.Name, err)
	}
	return env.Params
}

// ID returns the raw JSON of the body's id (null if absent).
func (r *Request) ID(t testing.TB) json.RawMessage {
	t.Helper()
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil {
		t.Fatalf("rpctest: %s/%s: decoding id: %v", r.Version, r.Name, err)
	}
	if env.ID == nil {
		return json.RawMessage("null")
	}
	return env.ID
}

// Response returns the captured answer to r: the body of the request
// file's "response" (16.0), else the file of the same name in responses/
// (18.0, 19.0); false if there is none (17.0). The answer is the one the
// capture's iapd or server gave: the fixtures README says what Odoo did
// with it, and one that broke Odoo is not a shape to copy.
func (r *Request) Response(t testing.TB) (json.RawMessage, bool) {
	t.Helper()
	if r.Answer != nil {
		if r.Answer.Status != 200 || !json.Valid(r.Answer.Body) {
			t.Fatalf("rpctest: %s/%s: captured answer is HTTP %d or not JSON", r.Version, r.Name, r.Answer.Status)
		}
		return r.Answer.Body, true
	}
	f := filepath.Join(filepath.Dir(filepath.Dir(r.File)), "responses", r.Name)
	b, err := os.ReadFile(f) // #nosec G304 -- a fixture file, in tests
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("rpctest: %v", err)
	}
	if !json.Valid(b) {
		t.Fatalf("rpctest: %s is not valid JSON", f)
	}
	return json.RawMessage(b), true
}

// Root returns the repository root: the nearest directory above the
// working directory that holds go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("rpctest: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("rpctest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Dir returns the fixtures directory ($IAPD_FIXTURES, else
// <root>/../shared/fixtures) and fails the test if it does not exist.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvFixtures)
	if dir == "" {
		dir = filepath.Join(Root(t), "..", "shared", "fixtures")
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		t.Fatalf("rpctest: fixtures not found at %s (set %s to their directory): %v", dir, EnvFixtures, err)
	}
	return dir
}

// Load returns the captured requests of one version ("odoo18"), in file
// name order, for which keep returns true (nil keeps all). It fails the
// test if the version has no request at all.
func Load(t testing.TB, version string, keep func(*Request) bool) []*Request {
	t.Helper()
	dir := filepath.Join(Dir(t), version, "requests")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("rpctest: %v", err)
	}
	if len(ents) == 0 {
		t.Fatalf("rpctest: no request in %s", dir)
	}
	var out []*Request
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		r, err := ReadRequest(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("rpctest: %v", err)
		}
		r.Version = version
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ReadRequest reads one request file.
func ReadRequest(file string) (*Request, error) {
	b, err := os.ReadFile(file) // #nosec G304 -- a fixture file, in tests
	if err != nil {
		return nil, err
	}
	r := &Request{File: file, Name: filepath.Base(file)}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if r.Path == "" || len(r.Body) == 0 {
		return nil, fmt.Errorf("%s: no path or no body", file)
	}
	return r, nil
}

// PythonJSON re-encodes the JSON value in src as Python's json.dumps
// would with its defaults: separators ", " and ": ", ensure_ascii (every
// character outside printable ASCII as \uXXXX with lowercase hex, surrogate
// pairs above U+FFFF), object keys in their original order and number
// literals unchanged.
func PythonJSON(src []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(src))
	d.UseNumber()
	var out []byte
	out, err := pyValue(d, out)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("rpctest: trailing data after the JSON value")
	}
	return out, nil
}

func pyValue(d *json.Decoder, out []byte) ([]byte, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			out = append(out, '{')
			for first := true; d.More(); first = false {
				if !first {
					out = append(out, ", "...)
				}
				k, err := d.Token()
				if err != nil {
					return nil, err
				}
				out = PyString(out, k.(string))
				out = append(out, ": "...)
				if out, err = pyValue(d, out); err != nil {
					return nil, err
				}
			}
			if _, err := d.Token(); err != nil { // '}'
				return nil, err
			}
			return append(out, '}'), nil
		case '[':
			out = append(out, '[')
			for first := true; d.More(); first = false {
				if !first {
					out = append(out, ", "...)
				}
				if out, err = pyValue(d, out); err != nil {
					return nil, err
				}
			}
			if _, err := d.Token(); err != nil { // ']'
				return nil, err
			}
			return append(out, ']'), nil
		}
		return nil, fmt.Errorf("rpctest: unexpected %v", v)
	case string:
		return PyString(out, v), nil
	case json.Number:
		return append(out, v...), nil
	case bool:
		return strconv.AppendBool(out, v), nil
	case nil:
		return append(out, "null"...), nil
	}
	return nil, fmt.Errorf("rpctest: unexpected token %T", tok)
}

// PyString appends s as Python's json.dumps writes a str with
// ensure_ascii.
func PyString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for _, r := range s {
		switch {
		case r == '"':
			out = append(out, `\"`...)
		case r == '\\':
			out = append(out, `\\`...)
		case r == '\n':
			out = append(out, `\n`...)
		case r == '\r':
			out = append(out, `\r`...)
		case r == '\t':
			out = append(out, `\t`...)
		case r == '\b':
			out = append(out, `\b`...)
		case r == '\f':
			out = append(out, `\f`...)
		case r >= ' ' && r <= '~':
			out = append(out, byte(r))
		default:
			if r == utf8.RuneError {
				r = 0xfffd
			}
			units := []rune{r}
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				units = []rune{r1, r2}
			}
			for _, u := range units {
				out = append(out, '\\', 'u', hex[u>>12&0xf], hex[u>>8&0xf], hex[u>>4&0xf], hex[u&0xf])
			}
		}
	}
	return append(out, '"')
}
