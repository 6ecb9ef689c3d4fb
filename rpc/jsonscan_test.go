package rpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/iapd/iapd/rpc/rpctest"
)

// Tests of the fast request decoder (jsonscan.go) against encoding/json
// (decodeStd), its specification.

// argTypes are the args types of every route.
func argTypes(tb testing.TB) []reflect.Type {
	tb.Helper()
	rcv := map[string]reflect.Type{"Account": reflect.TypeFor[*Account](), "Transaction": reflect.TypeFor[*Transaction]()}
	var out []reflect.Type
	for _, r := range routes {
		svc, name, _ := strings.Cut(r.Method, ".")
		m, ok := rcv[svc].MethodByName(name)
		if !ok {
			tb.Fatalf("route %s: no method %s", r.Path, r.Method)
		}
		out = append(out, m.Type.In(2).Elem())
	}
	return out
}

// sameAsStd decodes body into a fresh value of typ with both decoders. If
// the fast one accepts it, encoding/json must accept it too with the same
// args and id. It reports whether the fast decoder accepted the body.
func sameAsStd(t *testing.T, typ reflect.Type, body []byte) bool {
	t.Helper()
	fast := reflect.New(typ)
	id, ok := decodeFast(body, fast.Interface())
	if !ok {
		return false
	}
	std := reflect.New(typ)
	stdID, err := decodeStd(body, std.Interface())
	if err != nil {
		t.Fatalf("%s: the fast decoder accepts %q, encoding/json refuses it: %v", typ.Name(), body, err)
	}
	if !reflect.DeepEqual(fast.Interface(), std.Interface()) {
		t.Fatalf("%s: %q decoded as %+v, encoding/json reads %+v", typ.Name(), body, fast.Elem(), std.Elem())
	}
	if !bytes.Equal(id, stdID) {
		t.Fatalf("%s: %q: id %q, encoding/json reads %q", typ.Name(), body, id, stdID)
	}
	return true
}

// Every route's args type is for the fast decoder, every field of it is
// decoded, and every real Odoo request goes through it.
func TestFastDecoderCoversRoutes(t *testing.T) {
	for _, typ := range argTypes(t) {
		p := planFor(typ)
		if p == nil {
			t.Fatalf("%s has no plan: its bodies would all go to encoding/json", typ.Name())
		}
		if len(p.fields) != typ.NumField() {
			t.Errorf("%s: %d fields planned of %d", typ.Name(), len(p.fields), typ.NumField())
		}
		for _, f := range p.fields {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"call","id":7,"params":{%q:%s}}`, f.name, sampleValue(f))
			args := reflect.New(typ)
			if !sameAsStd(t, typ, []byte(body)) {
				t.Fatalf("%s: the fast decoder gives up on %s", typ.Name(), body)
			}
			if _, ok := decodeFast([]byte(body), args.Interface()); !ok || args.Elem().Field(f.index).IsZero() {
				t.Errorf("%s: %s leaves %s unset", typ.Name(), body, f.name)
			}
		}
	}
	n := 0
	for _, v := range rpctest.Versions {
		for _, r := range rpctest.Load(t, v, nil) {
			rt := routesByPath()[normalizePath(r.Path)]
			if rt == nil {
				continue
			}
			typ := argTypeOf(t, rt.Method)
			if !sameAsStd(t, typ, r.Wire(t)) {
				t.Errorf("%s/%s: the fast decoder gives up on a real request", v, r.Name)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no fixture request")
	}
}

func routesByPath() map[string]*Route {
	m := map[string]*Route{}
	for i := range routes {
		m[routes[i].Path] = &routes[i]
	}
	return m
}

func argTypeOf(t *testing.T, method string) reflect.Type {
	rcv := map[string]reflect.Type{"Account": reflect.TypeFor[*Account](), "Transaction": reflect.TypeFor[*Transaction]()}
	svc, name, _ := strings.Cut(method, ".")
	m, ok := rcv[svc].MethodByName(name)
	if !ok {
		t.Fatalf("no method %s", method)
	}
	return m.Type.In(2).Elem()
}

func sampleValue(f fieldPlan) string {
	switch f.kind {
	case kindString, kindText:
		return `"v\u00e9\n"`
	case kindNumber:
		return `12.5e-1`
	case kindBoolPtr:
		return `false`
	case kindStrings:
		return `["a", null, "b"]`
	case kindStructs:
		var members []string
		for _, g := range f.elem.fields {
			members = append(members, fmt.Sprintf("%q: %s", g.name, sampleValue(g)))
		}
		return "[{" + strings.Join(members, ", ") + "}, null]"
	}
	panic(f.kind)
}

// Hand-picked bodies: accepted by the fast decoder with encoding/json's
// result, or left to encoding/json.
func TestFastDecoderEdges(t *testing.T) {
	accept := []string{
		`{"params":{}}`,
		` {"id" : "x" , "params" : { "credit" : -0.0 , "account_token" : "a" } } `,
		`{"params":{"credit":1E+2,"ttl":0,"key":null,"description":null}}`,
		`{"params":{"description":false,"credit":false}}`,
		`{"params":{"description":"\ud83d\ude00 \ud800 \udc00x \u2028 \"\\\/\b\f\n\r\t"}}`,
		"{\"params\":{\"account_token\":\"\xff\xfe ok \xe2\x82\"}}",
		`{"params":{"acc\u006funt_token":"escaped key"}}`,
		`{"id":{"a":[1,{"b":null}]},"params":{"unknown":[[[]],{}],"x":{"y":"z"}}}`,
		`{"id":null,"params":{"warn_me":true,"warning_email":"a@b","warning_threshold":3}}`,
		`{"params":{"iap_accounts":[]}}`,
		`{"params":{"iap_accounts":null}}`,
		`{"params":{"iap_accounts":[{"token":"t","service":"sms","other":1},null,{}]}}`,
		`{"params":{"warning_emails":[{"email":false,"lang_code":null}]}}`,
		`{"params":{"token":"t"},"jsonrpc":"2.0","method":"call","id":[1,2]}`,

		`{"id":1,"id":2,"params":{"key":"a"},"params":{"token":"b"}}`,
	}
	refuse := []string{
		``, `{`, `[]`, `null`, `{"params":[]}`, `{"params":null}`, `{"params":"x"}`, `{"params":{}} {}`,
		`{"params":{"credit":"1"}}`, `{"params":{"credit":true}}`, `{"params":{"key":1}}`,
		`{"params":{"credit":01}}`, `{"params":{"credit":1.}}`, `{"params":{"credit":.5}}`, `{"params":{"credit":-}}`,
		`{"params":{"credit":1e}}`, `{"params":{"credit":+1}}`, `{"params":{"credit":NaN}}`,
		`{"params":{"key":"a\u12"}}`, `{"params":{"key":"a\x"}}`, `{"params":{"key":"a\'"}}`, "{\"params\":{\"key\":\"a\tb\"}}",
		`{"params":{"key":"a",}}`, `{"params":{"iap_accounts":["a",]}}`, `{"params":{,}}`, `{"params":{"a" 1}}`,
		`{"params":{"x":tru}}`, `{"params":{"x":nul}}`, `{"params":{"iap_accounts":[1]}}`,
		`{"params":{"iap_accounts":["x"]}}`,
		`{"params":{"warn_me":"yes"}}`, `{"params":{"warn_me":0}}`,
	}
	for _, typ := range argTypes(t) {
		for _, b := range accept {
			// A body may name params of another route (ignored) or give
			// a value of the wrong type for this one (refused by both).
			body := []byte(b)
			_, stdErr := decodeStd(body, reflect.New(typ).Interface())
			if accepted := sameAsStd(t, typ, body); stdErr == nil && !accepted {
				t.Errorf("%s: the fast decoder gives up on %s", typ.Name(), b)
			}
		}
	}
	// Nesting deeper than the fast decoder goes: encoding/json decodes it.
	deep := []byte(`{"params":{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"key":"k"}}`)
	if _, ok := decodeFast(deep, new(CancelArgs)); ok {
		t.Error("the fast decoder follows nesting deeper than maxScanDepth")
	}
	var args CancelArgs
	if _, err := decodeRequest(deep, &args); err != nil || args.Key != "k" {
		t.Errorf("deep body: %v, %+v", err, args)
	}
	// The bodies to refuse: each is refused by encoding/json for some
	// route, and then by the fast decoder (sameAsStd).
	for _, b := range refuse {
		refused := false
		for _, typ := range argTypes(t) {
			_, err := decodeStd([]byte(b), reflect.New(typ).Interface())
			refused = refused || err != nil
			sameAsStd(t, typ, []byte(b))
		}
		if !refused {
			t.Errorf("encoding/json accepts %q for every route", b)
		}
	}
}

// What the fast decoder gives up on, half way or not, decodeRequest reads
// as encoding/json does: the same args and id, the same error word for
// word (args zeroed first).
func TestDecodeRequestFallsBackToStd(t *testing.T) {
	for _, b := range []string{
		`{"ID":"upper","Params":{"Key":"k","CREDIT":"x"}}`,
		`{"params":{"Account_Token":"a","KEY":"k","Credit":5}}`,
		`{"params":{"key":"k","Credit":"5"}}`,
		`{"params":{"account_token":"a","credit":"1"},"id":5}`,
		`{"params":{"iap_accounts":[{"token":12,"service":"sms"}]},"id":["x"]}`,
		`{"jsonrpc": "2.0", "params": {`,
		`{"params":[1],"id":1.5}`,
	} {
		for _, typ := range argTypes(t) {
			got := reflect.New(typ)
			id, err := decodeRequest([]byte(b), got.Interface())
			want := reflect.New(typ)
			wantID, wantErr := decodeStd([]byte(b), want.Interface())
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || !bytes.Equal(id, wantID) || !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Errorf("%s %s: got (%q, %v, %+v), encoding/json (%q, %v, %+v)", typ.Name(), b, id, err, got.Elem(), wantID, wantErr, want.Elem())
			}
		}
	}
}

// Random bodies built from the params' names and values of every JSON
// kind: the fast decoder agrees with encoding/json whenever it accepts, and
// accepts whatever encoding/json accepts.
func TestFastDecoderRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	types := argTypes(t)
	for range 20000 {
		typ := types[r.IntN(len(types))]
		body := randomBody(r, planFor(typ))
		std := reflect.New(typ)
		_, stdErr := decodeStd(body, std.Interface())
		accepted := sameAsStd(t, typ, body)
		if stdErr == nil && !accepted {
			t.Fatalf("%s: the fast decoder gives up on %s, which encoding/json decodes", typ.Name(), body)
		}
	}
}

func randomBody(r *rand.Rand, p *plan) []byte {
	var b bytes.Buffer
	ws := func() {
		if r.IntN(4) == 0 {
			b.WriteString([]string{" ", "\n", "\t ", "\r\n"}[r.IntN(4)])
		}
	}
	b.WriteString("{")
	members := []string{"jsonrpc", "method", "id", "params"}
	r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	for i, m := range members[:1+r.IntN(len(members))] {
		if i > 0 {
			b.WriteString(",")
		}
		ws()
		fmt.Fprintf(&b, "%q:", m)
		ws()
		if m == "params" {
			randomObject(r, &b, p, 0)
		} else {
			b.WriteString(randomScalar(r))
		}
		ws()
	}
	b.WriteString("}")
	return b.Bytes()
}

func randomObject(r *rand.Rand, b *bytes.Buffer, p *plan, depth int) {
	b.WriteString("{")
	n := r.IntN(len(p.fields) + 2)
	used := map[string]bool{}
	for i := 0; i < n; i++ {
		name := "other"
		var f *fieldPlan
		if r.IntN(5) > 0 {
			f = &p.fields[r.IntN(len(p.fields))]
			name = f.name
		}
		if used[name] {
			continue // duplicates: last wins here, merge in encoding/json's slices
		}
		used[name] = true
		if len(used) > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "%q: ", name)
		switch {
		case f != nil && r.IntN(3) > 0:
			b.WriteString(goodValue(r, f, depth))
		default:
			b.WriteString(randomScalar(r))
		}
	}
	b.WriteString("}")
}

func goodValue(r *rand.Rand, f *fieldPlan, depth int) string {
	if r.IntN(8) == 0 {
		return "null"
	}
	switch f.kind {
	case kindString:
		return randomString(r)
	case kindText:
		if r.IntN(4) == 0 {
			return "false"
		}
		return randomString(r)
	case kindNumber:
		if r.IntN(4) == 0 {
			return "false"
		}
		return randomNumber(r)
	case kindBoolPtr:
		return []string{"true", "false"}[r.IntN(2)]
	case kindStrings:
		var es []string
		for range r.IntN(4) {
			es = append(es, []string{randomString(r), "null"}[r.IntN(2)])
		}
		return "[" + strings.Join(es, ",") + "]"
	case kindStructs:
		var es []string
		for range r.IntN(3) {
			var o bytes.Buffer
			randomObject(r, &o, f.elem, depth+1)
			es = append(es, o.String())
		}
		return "[" + strings.Join(es, ", ") + "]"
	}
	panic(f.kind)
}

func randomScalar(r *rand.Rand) string {
	switch r.IntN(8) {
	case 0:
		return randomString(r)
	case 1:
		return randomNumber(r)
	case 2:
		return []string{"true", "false", "null"}[r.IntN(3)]
	case 3:
		return `{"a": [1, "b", {"c": null}], "d": {}}`
	case 4:
		return `[]`
	case 5:
		return `[1, [2, [3]], "x"]`
	case 6:
		return `"` + strings.Repeat("é", r.IntN(3)) + `"`
	}
	return `{}`
}

func randomString(r *rand.Rand) string {
	parts := []string{"a", "Z", " ", `\"`, `\\`, `\/`, `\n`, `\u0041`, `\u00e9`, `\ud83d\ude00`, `\ud800`, `\udc00`, "é", "€", "\xff", "\xe2\x82", `+disabled`, "0123456789abcdef"}
	var b strings.Builder
	b.WriteByte('"')
	for range r.IntN(6) {
		b.WriteString(parts[r.IntN(len(parts))])
	}
	b.WriteByte('"')
	return b.String()
}

func randomNumber(r *rand.Rand) string {
	return []string{"0", "-0", "1", "-12", "3.25", "1e3", "1E-2", "-0.0001", "12345678901234567890", "1.5e+300", "0.00005"}[r.IntN(11)]
}

// FuzzFastDecoder: for any body, whatever the fast decoder accepts,
// encoding/json accepts with the same result, unless the body repeats a
// key (where the two may differ).
func FuzzFastDecoder(f *testing.F) {
	for _, v := range rpctest.Versions {
		for _, r := range rpctest.Load(f, v, nil) {
			f.Add(r.Wire(f))
		}
	}
	f.Add([]byte(`{"params":{"iap_accounts":[{"token":"t","service":"sms"}],"warning_emails":[{"email":"a"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !keysExactAndUnique(body) {
			return
		}
		for _, typ := range argTypes(t) {
			sameAsStd(t, typ, body)
		}
	})
}

// keysExactAndUnique reports whether body is JSON whose objects repeat no
// key, exactly or ignoring case (encoding/json takes either for a field).
func keysExactAndUnique(body []byte) bool {
	d := json.NewDecoder(bytes.NewReader(body))
	var walk func(depth int) bool
	walk = func(depth int) bool {
		if depth > 100 {
			return false
		}
		tok, err := d.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			var seen []string
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return false
				}
				for _, s := range seen {
					if strings.EqualFold(s, k.(string)) {
						return false
					}
				}
				seen = append(seen, k.(string))
				if !walk(depth + 1) {
					return false
				}
			}
			_, err = d.Token()
			return err == nil
		case json.Delim('['):
			for d.More() {
				if !walk(depth + 1) {
					return false
				}
			}
			_, err = d.Token()
			return err == nil
		}
		return true
	}
	if !walk(0) {
		return false
	}
	_, err := d.Token()
	return err == io.EOF
}
