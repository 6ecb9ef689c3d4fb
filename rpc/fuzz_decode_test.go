package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/iapd/iapd/rpc/rpctest"
	"github.com/iapd/iapd/storage"
)

// fuzzDecode is the one call of the envelope decoder in this file: the
// function behind codecRequest.ReadRequest. If its signature changes,
// only this line changes.
func fuzzDecode(body []byte, args any) (id []byte, err error) { return decodeRequest(body, args) }

// FuzzDecodeRequest fuzzes the request decoder alone, with every route's
// args type, seeded with every request body a real Odoo sent (the
// fixtures, rebuilt byte for byte by rpctest) and a few hostile ones. For
// any body:
//
//   - no panic; a failure is a storage.Invalid error;
//   - a success needs valid JSON, and the id is absent or valid JSON;
//   - a success re-encoded (the decoded params written back as JSON) and
//     decoded again gives the same values and the same id;
//   - every numeric param keeps its JSON literal exactly (the one in the
//     body, byte for byte, when the body says it unambiguously), and when
//     storage.ParseCredits takes it, the credits are the literal's exact
//     value;
//   - where encoding/json (the reference) also decodes an unambiguous
//     body, both decoders agree on every value and on the id.
func FuzzDecodeRequest(f *testing.F) {
	types := routeArgTypes(f)
	seeds := 0
	for _, v := range rpctest.Versions {
		for _, r := range rpctest.Load(f, v, nil) {
			f.Add(r.Wire(f))
			seeds++
		}
	}
	if seeds == 0 {
		f.Fatal("no fixture body to seed the corpus with")
	}
	for _, s := range []string{
		`{"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"credit": 1, "credit": 0.00001}}`,
		`{"params": {"account_token": "a"}, "params": {"key": "b"}}`,
		`{"params": {"CREDIT": 5, "Credit": 1e2, "credit_to_capture": -0.0}}`,
		`{"id": {"a": [1, {"b": null}]}, "params": {"iap_accounts": [{"token": "t\u0000", "service": "sms"}]}}`,
		`{"params": {"credit": 1e999999999, "ttl": 1E-999999999, "warning_threshold": 123456789012345678901234567890}}`,
		`{"params": {"description": "\ud800\udc00 \u2028 \"\\/", "warning_email": false, "warn_me": null}}`,
		`{"params": {"warning_emails": [{"email": "a@b", "lang_code": false}, {"email": null}]}}`,
		`{"params": {"credit": NaN}}`,
		`{"params": {"x": ` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}}`,
		` {"params": {}} `,
		`{"params": {"credit": 1,}}`,
		`{"id": "x", "params": null}`,
		"{\"params\": {\"account_token\": \"\xff\xfe\"}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, typ := range types {
			checkDecode(t, typ, body)
		}
	})
}

// routeArgTypes returns the args type of every route of the routes table,
// read from the handler methods' signatures.
func routeArgTypes(tb testing.TB) []reflect.Type {
	tb.Helper()
	receivers := map[string]reflect.Type{
		"Account":     reflect.TypeFor[*Account](),
		"Transaction": reflect.TypeFor[*Transaction](),
	}
	var out []reflect.Type
	for _, r := range routes {
		svc, name, _ := strings.Cut(r.Method, ".")
		rcv, ok := receivers[svc]
		if !ok {
			tb.Fatalf("route %s: handler type %s unknown to this test: add it to routeArgTypes", r.Path, svc)
		}
		m, ok := rcv.MethodByName(name)
		if !ok || m.Type.NumIn() != 4 || m.Type.In(2).Kind() != reflect.Pointer {
			tb.Fatalf("route %s: no handler method %s(r, *args, *reply)", r.Path, r.Method)
		}
		out = append(out, m.Type.In(2).Elem())
	}
	return out
}

func checkDecode(t *testing.T, typ reflect.Type, body []byte) {
	args := reflect.New(typ)
	id, err := fuzzDecode(body, args.Interface())
	if err != nil {
		if k := storage.KindOf(err); k != storage.Invalid {
			t.Fatalf("%s: error of kind %s, want invalid: %v", typ.Name(), k, err)
		}
		return
	}
	if !json.Valid(body) {
		t.Fatalf("%s: malformed JSON accepted: %q", typ.Name(), body)
	}
	if id != nil && (!json.Valid(id) || string(id) == "null") {
		t.Fatalf("%s: id %q is not a JSON value (nil stands for null)", typ.Name(), id)
	}

	// The numeric literals are kept as sent.
	unambiguous := isUnambiguous(body)
	var rawParams map[string]json.RawMessage
	if unambiguous {
		var env struct {
			Params map[string]json.RawMessage `json:"params"`
		}
		if json.Unmarshal(body, &env) == nil && distinctFolded(env.Params) {
			rawParams = env.Params
		}
	}
	checkLiterals(t, typ.Name(), args.Elem(), rawParams)

	// Re-encoded and decoded again: the same values, the same id.
	params := appendParams(t, nil, args.Elem())
	again := []byte(`{"jsonrpc":"2.0","method":"call","id":`)
	again = appendID(again, id)
	again = append(again, `,"params":`...)
	again = append(again, params...)
	again = append(again, '}')
	args2 := reflect.New(typ)
	id2, err := fuzzDecode(again, args2.Interface())
	if err != nil {
		t.Fatalf("%s: the re-encoded request %s does not decode: %v", typ.Name(), again, err)
	}
	if !reflect.DeepEqual(args.Interface(), args2.Interface()) {
		t.Fatalf("%s: decoded %+v, re-encoded as %s, decoded again %+v", typ.Name(), args.Elem(), params, args2.Elem())
	}
	if !bytes.Equal(id, id2) {
		t.Fatalf("%s: id %q, after re-encoding %q", typ.Name(), id, id2)
	}

	// Differential: encoding/json reads the same thing from a body that
	// says one thing only.
	if !unambiguous {
		return
	}
	ref := reflect.New(typ)
	refID, refErr := referenceDecode(body, ref.Interface())
	if refErr != nil {
		return
	}
	if !reflect.DeepEqual(args.Interface(), ref.Interface()) {
		t.Fatalf("%s: decoded %+v, encoding/json reads %+v from %q", typ.Name(), args.Elem(), ref.Elem(), body)
	}
	if !bytes.Equal(id, refID) {
		t.Fatalf("%s: id %q, encoding/json reads %q from %q", typ.Name(), id, refID, body)
	}
}

// referenceDecode is decodeRequest as written with encoding/json alone
// (the decoder's specification; a faster one must agree with it).
func referenceDecode(body []byte, args any) ([]byte, error) {
	var env struct {
		ID     json.RawMessage `json:"id"`
		Params any             `json:"params"`
	}
	env.Params = args
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	if env.Params == nil {
		return nil, errors.New("params null")
	}
	if string(env.ID) == "null" {
		env.ID = nil
	}
	return env.ID, nil
}

// isUnambiguous reports whether body is valid UTF-8 holding no escaped
// surrogate: bodies decoders may reasonably read differently (replacing
// invalid bytes or lone surrogates in their own way). Duplicate keys and
// keys that match a param but for case are not ambiguous: encoding/json
// keeps the last and matches keys case-insensitively, and the decoder
// must read them so too (or give up and let encoding/json decode).
func isUnambiguous(body []byte) bool {
	return utf8.Valid(body) && !surrogateEscape.Match(body)
}

var surrogateEscape = regexp.MustCompile(`\\[uU][dD][89a-fA-F]`)

// distinctFolded reports whether no two keys of m are equal but for case,
// as encoding/json folds them (Unicode simple folding: "CREDIT", "Credit"
// and "credit" are one key; so are "ſ" and "s", "K" and "k"). Then
// lookupFolded(m, name) is the value encoding/json decodes for name.
func distinctFolded(m map[string]json.RawMessage) bool {
	keys := make([]string, 0, len(m))
	for k := range m {
		for _, seen := range keys {
			if strings.EqualFold(k, seen) {
				return false
			}
		}
		keys = append(keys, k)
	}
	return true
}

// lookupFolded returns the value of the key of m that equals name but
// for case, as encoding/json matches a field's name.
func lookupFolded(m map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if r, ok := m[name]; ok {
		return r, true
	}
	for k, r := range m {
		if strings.EqualFold(k, name) {
			return r, true
		}
	}
	return nil, false
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// checkLiterals checks every Number of the decoded args v (a struct):
// a JSON number literal, the one of raw (the params as sent) when known,
// converted exactly by storage.ParseCredits.
func checkLiterals(t *testing.T, where string, v reflect.Value, raw map[string]json.RawMessage) {
	t.Helper()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		n, ok := f.Interface().(Number)
		if !ok {
			continue
		}
		if n.Lit == "" {
			if raw != nil {
				if r, sent := lookupFolded(raw, name); sent && jsonKindOf(r) == "number" {
					t.Fatalf("%s.%s: the number %s was sent, the decoder kept none", where, name, r)
				}
			}
			continue
		}
		if n.False {
			t.Fatalf("%s.%s: both a literal %q and false", where, name, n.Lit)
		}
		if !jsonNumber.MatchString(n.Lit) {
			t.Fatalf("%s.%s: %q is not a JSON number literal", where, name, n.Lit)
		}
		if r, sent := lookupFolded(raw, name); raw != nil && (!sent || string(r) != n.Lit) {
			t.Fatalf("%s.%s: the body says %s, the decoder kept %q", where, name, r, n.Lit)
		}
		checkExactCredits(t, where+"."+name, n.Lit)
	}
}

// checkExactCredits checks that storage.ParseCredits, when it accepts lit,
// gives its exact value in ten-thousandths (big.Rat arithmetic; literals
// with big exponents are left to FuzzParseCredits).
func checkExactCredits(t *testing.T, where, lit string) {
	t.Helper()
	c, err := storage.ParseCredits(lit)
	if err != nil {
		return
	}
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		e, err := strconv.Atoi(lit[i+1:])
		if err != nil || e > 64 || e < -64 {
			return
		}
	}
	want, ok := new(big.Rat).SetString(lit)
	if !ok {
		t.Fatalf("%s: math/big refuses %q, ParseCredits gave %d", where, lit, c)
	}
	got := new(big.Rat).SetFrac(big.NewInt(int64(c)), big.NewInt(int64(storage.Scale)))
	if got.Cmp(want) != 0 {
		t.Fatalf("%s: %q parsed as %s, exact value %s", where, lit, got.RatString(), want.RatString())
	}
}

// appendParams appends the JSON encoding of decoded args v as a client
// would send them: a Number as its literal (false, null), a Text as a
// string (false, null), a nil pointer or slice as null.
func appendParams(t *testing.T, b []byte, v reflect.Value) []byte {
	t.Helper()
	switch x := v.Interface().(type) {
	case Number:
		switch {
		case x.Lit != "":
			return append(b, x.Lit...)
		case x.False:
			return append(b, "false"...)
		}
		return append(b, "null"...)
	case Text:
		switch {
		case x.Set:
			return appendJSONValue(t, b, x.S)
		case x.False:
			return append(b, "false"...)
		}
		return append(b, "null"...)
	}
	switch v.Kind() {
	case reflect.Struct:
		b = append(b, '{')
		n := 0
		for i := range v.NumField() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			if name == "-" || !v.Type().Field(i).IsExported() {
				continue
			}
			if name == "" {
				name = v.Type().Field(i).Name
			}
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = appendJSONValue(t, b, name)
			b = append(b, ':')
			b = appendParams(t, b, v.Field(i))
		}
		return append(b, '}')
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, "null"...)
		}
		return appendParams(t, b, v.Elem())
	case reflect.Slice:
		if v.IsNil() {
			return append(b, "null"...)
		}
		b = append(b, '[')
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendParams(t, b, v.Index(i))
		}
		return append(b, ']')
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return appendJSONValue(t, b, v.Interface())
	}
	t.Fatalf("appendParams: a param of type %s: teach this test to encode it", v.Type())
	return nil
}

func appendJSONValue(t *testing.T, b []byte, v any) []byte {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %#v: %v", v, err)
	}
	return append(b, j...)
}

// The decoder is what the codec runs: a request through codecRequest
// decodes as fuzzDecode does (the fuzz target tests the right function).
func TestFuzzDecodeIsTheCodecs(t *testing.T) {
	body := []byte(`{"jsonrpc": "2.0", "method": "call", "id": "q", "params": {"account_token": "t", "key": "k", "credit": 1.5}}`)
	s := newTestServer(t, newMemLedger())
	r, _ := http.NewRequest("POST", "/iap/1/authorize", bytes.NewReader(body))
	cr := (&codec{s: s}).NewRequest(r)
	var viaCodec, direct AuthorizeArgs
	if err := cr.ReadRequest(&viaCodec); err != nil {
		t.Fatal(err)
	}
	id, err := fuzzDecode(body, &direct)
	if err != nil || string(id) != `"q"` || viaCodec != direct || direct.Credit.Lit != "1.5" {
		t.Fatalf("codec %+v, fuzzDecode %+v id %s err %v", viaCodec, direct, id, err)
	}
}

// The decoder reads a body as encoding/json does, whichever of its paths
// decodes it: the same params cannot mean another amount because an
// unrelated param is deeply nested. encoding/json matches keys
// case-insensitively ("CREDIT" sets credit) and keeps the last of
// duplicates.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	deep := `, "x": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100)
	for _, params := range []string{
		`"credit": 1, "CREDIT": 50`,
		`"Credit": 50`,
		`"credit": 50, "credit": 1`,
		`"ACCOUNT_TOKEN": "x", "account_token": "y", "Account_Token": "z"`,
		`"KEY": "k", "ſervice_name": "s"`,
	} {
		for _, extra := range []string{"", deep} {
			body := []byte(`{"jsonrpc": "2.0", "id": 1, "params": {` + params + extra + `}}`)
			var got, want AuthorizeArgs
			if _, err := fuzzDecode(body, &got); err != nil {
				t.Fatalf("%s: %v", body[:min(len(body), 90)], err)
			}
			if _, err := referenceDecode(body, &want); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("{%s%s}: decoded %+v, encoding/json reads %+v", params, map[bool]string{true: ", x: [100 deep]"}[extra != ""], got, want)
			}
		}
	}
}
