package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/iapd/iapd/storage"
)

// opDecode is the Op of the errors a request body gets when it cannot be
// decoded.
const opDecode = "decode"

// envelope is Odoo's JSON-RPC request (PROTOCOL §1.1). jsonrpc and method
// ("call") are ignored: the operation comes from the URL path (§15.1).
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Params any             `json:"params"` // set to the route's args before decoding
}

// decodeRequest decodes the request body: the raw JSON of id (nil when
// absent or null) and params, a JSON object, into args (a pointer to the
// route's args struct; unknown keys are ignored). It is the only place
// request bodies are decoded; errors are storage.Invalid and say which
// param is wrong.
//
// Two decoders share the work. The fast one (jsonscan.go, allocation-free
// but for the strings it keeps) decodes every well-formed body that is
// not refused; on anything else — a syntax error, a value of the wrong
// type, params not an object, nesting deeper than it goes — it gives up,
// args is zeroed, and encoding/json decodes the body again (decodeStd),
// which gives the error its exact message. It also gives up on a key that
// matches a param only ignoring case, which encoding/json would take. A
// body the fast decoder accepts is one encoding/json accepts, with the same
// values and id, but for a key sent twice: the last value wins (objects
// under a repeated "params" are merged, as encoding/json does).
func decodeRequest(body []byte, args any) (id []byte, err error) {
	return decodeRequestLimited(body, args, 0)
}

// errTooManyItems is what decodeRequestLimited returns for a list over
// its limit; the codec answers it with the route's TooMany message.
var errTooManyItems = storage.E(opDecode, storage.Invalid, "A list in the request has too many elements.")

// decodeRequestLimited is decodeRequest refusing, with errTooManyItems, a
// body with an array of more than maxItems elements (0: no limit); it
// stops reading at the first element over the limit, in either decoder
// (the body is scanned for the limit before encoding/json decodes it).
func decodeRequestLimited(body []byte, args any, maxItems int) (id []byte, err error) {
	id, ok, tooMany := decodeFastLimited(body, args, maxItems)
	if ok {
		return id, nil
	}
	if v := reflect.ValueOf(args); v.Kind() == reflect.Pointer && !v.IsNil() {
		v.Elem().SetZero() // the fast decoder may have set some fields
	}
	if tooMany || (maxItems > 0 && !withinItems(body, maxItems)) {
		return nil, errTooManyItems
	}
	return decodeStd(body, args)
}

// decodeStd is decodeRequest with encoding/json alone: the reference, and
// the decoder of the bodies the fast one gives up on.
func decodeStd(body []byte, args any) (id []byte, err error) {
	if !startsObject(body) {
		if !json.Valid(body) {
			err := json.Unmarshal(body, new(any)) // for the syntax error's position
			return nil, decodeError(err)
		}
		return nil, errNotObject
	}
	env := envelope{Params: args}
	if err := json.Unmarshal(body, &env); err != nil {
		return decodeID(body), decodeError(err)
	}
	if env.ID != nil && string(env.ID) == "null" {
		env.ID = nil
	}
	if env.Params == nil { // "params": null
		return env.ID, errParamsNotObject
	}
	// Absent params leave args zero: every route has a required param,
	// which the handler reports missing.
	return env.ID, nil
}

var (
	errNotObject       = storage.E(opDecode, storage.Invalid, "The request must be a JSON-RPC object.")
	errParamsNotObject = storage.E(opDecode, storage.Invalid, "params must be an object of named parameters, not null.")
)

// startsObject reports whether the first non-space byte of b is '{'.
func startsObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// decodeID returns the raw id of a body that could not be decoded as a
// whole, if the body is still valid JSON; nil otherwise.
func decodeID(body []byte) []byte {
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &env) != nil || string(env.ID) == "null" {
		return nil
	}
	return env.ID
}

// decodeError turns an encoding/json error into an Invalid error naming
// the offending param, without quoting the request (it may hold secrets).
func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return storage.Ef(opDecode, storage.Invalid, "Malformed JSON request (byte %d: %s).", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		got := typ.Value
		if i := strings.IndexByte(got, ' '); i >= 0 { // "number -5": keep the kind only
			got = got[:i]
		}
		switch typ.Field {
		case "":
			return errNotObject
		case "params":
			return storage.Ef(opDecode, storage.Invalid, "params must be an object of named parameters, not %s.", article(got))
		}
		param := strings.TrimPrefix(typ.Field, "params.")
		return storage.Ef(opDecode, storage.Invalid, "Invalid param %s: expected %s, got %s.", param, describe(typ.Type), article(got))
	}
	return storage.Wrap(opDecode, storage.Invalid, err)
}

// describe names the JSON type a Go type is decoded from.
func describe(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t {
	case reflect.TypeFor[Number]():
		return "a number"
	case reflect.TypeFor[Text]():
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Pointer:
		return describe(t.Elem())
	}
	return "another type"
}

func article(jsonKind string) string {
	switch jsonKind {
	case "array", "object":
		return "an " + jsonKind
	case "bool":
		return "a boolean"
	case "":
		return "another type"
	}
	return "a " + jsonKind
}

// jsonKindOf names the JSON kind of a raw value, as UnmarshalTypeError.Value does.
func jsonKindOf(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	switch b[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// Number is a numeric param kept as its JSON literal, so that credit
// amounts convert exactly (storage.ParseCredits) and never go through a
// float. JSON null leaves it unset; false, Odoo's "no value", sets False.
// Any other type is refused naming the param.
type Number struct {
	Lit   string // the number literal; "" when absent, null or false
	False bool   // the value was false
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *Number) UnmarshalJSON(b []byte) error {
	switch kind := jsonKindOf(b); kind {
	case "null":
		*n = Number{}
	case "bool":
		if string(b) != "false" {
			return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeFor[Number]()}
		}
		*n = Number{False: true}
	case "number":
		*n = Number{Lit: string(b)}
	default:
		return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeFor[Number]()}
	}
	return nil
}

// Set reports whether a number was given.
func (n Number) Set() bool { return n.Lit != "" }

// Text is a string param that Odoo may also send as false (an empty
// field) or null (not part of the write).
type Text struct {
	S     string
	Set   bool // a string was given
	False bool // the value was false
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Text) UnmarshalJSON(b []byte) error {
	switch kind := jsonKindOf(b); kind {
	case "null":
		*t = Text{}
	case "bool":
		if string(b) != "false" {
			return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeFor[Text]()}
		}
		*t = Text{False: true}
	case "string":
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = Text{S: s, Set: true}
	default:
		return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeFor[Text]()}
	}
	return nil
}

// appender is implemented by reply types that encode themselves.
type appender interface {
	appendJSON(b []byte) []byte
}

// appendResult appends the JSON encoding of a handler's reply.
func appendResult(b []byte, reply any) ([]byte, error) {
	switch v := reply.(type) {
	case *bool:
		return strconv.AppendBool(b, *v), nil
	case *string:
		return appendString(b, *v), nil
	case appender:
		return v.appendJSON(b), nil
	}
	j, err := json.Marshal(reply)
	if err != nil {
		return b, fmt.Errorf("encoding result: %w", err)
	}
	return append(b, j...), nil
}

// appendID appends a request id as received (raw JSON), null if absent.
func appendID(b, id []byte) []byte {
	if len(id) == 0 {
		return append(b, "null"...)
	}
	return append(b, id...)
}

func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, U+2028/U+2029 escaped, invalid UTF-8 replaced by
// U+FFFD, everything else as UTF-8.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
