package rpc

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The fast request decoder (see decodeRequest). It scans the body once,
// validating it as strictly as encoding/json does, and stores the params
// into the route's args struct through a plan made once per args type
// from its json tags. It gives up (ok false) on anything it does not
// decode exactly as encoding/json would, and never reports an error
// itself: decodeStd then decodes the body again and says what is wrong.

// maxScanDepth bounds the nesting the fast decoder follows; deeper bodies
// go to encoding/json (which refuses beyond 10000).
const maxScanDepth = 64

// decodeFast decodes body into args (a pointer to a struct the fast
// decoder has a plan for). ok is false when it gives up.
func decodeFast(body []byte, args any) (id []byte, ok bool) {
	id, ok, _ = decodeFastLimited(body, args, 0)
	return id, ok
}

// decodeFastLimited is decodeFast stopping at the first array with more
// than maxItems elements (0: no limit): tooMany is then true, ok false.
func decodeFastLimited(body []byte, args any, maxItems int) (id []byte, ok, tooMany bool) {
	v := reflect.ValueOf(args)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil, false, false
	}
	p := planFor(v.Type().Elem())
	if p == nil {
		return nil, false, false
	}
	s := scanner{b: body, maxItems: maxItems}
	id, ok = s.request(v.Elem(), p)
	return id, ok, s.tooMany
}

// withinItems reports whether no array of body, valid JSON or not, has
// more than maxItems elements before the first syntax error: a linear
// scan that allocates nothing and stops at the limit.
func withinItems(body []byte, maxItems int) bool {
	s := scanner{b: body, maxItems: maxItems}
	s.space()
	s.skip()
	return !s.tooMany
}

// request reads a JSON-RPC envelope, its params into params (a struct of
// plan p).
func (s *scanner) request(params reflect.Value, p *plan) (id []byte, ok bool) {
	body := s.b
	s.space()
	if !s.open('{') {
		return nil, false
	}
	paramsNull := false
	for first := true; ; first = false {
		more, good := s.more('}', first)
		if !good {
			return nil, false
		}
		if !more {
			break
		}
		key, good := s.member()
		if !good {
			return nil, false
		}
		switch string(key) {
		case "id":
			start := s.i
			good = s.skip()
			id = body[start:s.i]
		case "params":
			switch s.peek() {
			case '{':
				paramsNull = false
				good = s.object(params, p)
			case 'n':
				paramsNull = true
				good = s.literal("null")
			default:
				good = false // a type error: encoding/json words it
			}
		default:
			if bytes.EqualFold(key, []byte("id")) || bytes.EqualFold(key, []byte("params")) {
				return nil, false // encoding/json matches keys ignoring case: let it decide
			}
			good = s.skip()
		}
		if !good {
			return nil, false
		}
	}
	ok = true
	s.space()
	if !ok || s.i != len(body) || paramsNull {
		return nil, false
	}
	if string(id) == "null" {
		id = nil
	}
	return id, true
}

// A plan says how the fast decoder fills one struct type: its fields by
// JSON name (as encoding/json names them) and what each holds.
type plan struct {
	fields []fieldPlan
}

type fieldPlan struct {
	name  string
	index int
	kind  fieldKind
	elem  *plan        // kindStructs: the element's plan
	typ   reflect.Type // the field's type
}

type fieldKind uint8

const (
	kindString  fieldKind = iota + 1 // string
	kindNumber                       // Number
	kindText                         // Text
	kindBoolPtr                      // *bool
	kindStrings                      // []string
	kindStructs                      // []struct with a plan
)

func (p *plan) field(key []byte) *fieldPlan {
	for i := range p.fields {
		if string(key) == p.fields[i].name {
			return &p.fields[i]
		}
	}
	return nil
}

// foldsTo reports whether key names a field when case is ignored.
func (p *plan) foldsTo(key []byte) bool {
	for i := range p.fields {
		if bytes.EqualFold(key, []byte(p.fields[i].name)) {
			return true
		}
	}
	return false
}

var plans sync.Map // reflect.Type → *plan; nil: not for the fast decoder

// planFor returns the plan of struct type t, nil if a field has a type or
// tag option the fast decoder does not handle (every body of that type then
// goes to encoding/json; TestFastDecoderCoversRoutes keeps the routes'
// args types covered).
func planFor(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	p := makePlan(t, 0)
	plans.Store(t, p)
	return p
}

var (
	typeNumber  = reflect.TypeFor[Number]()
	typeText    = reflect.TypeFor[Text]()
	typeBoolPtr = reflect.TypeFor[*bool]()
	typeStrings = reflect.TypeFor[[]string]()
)

func makePlan(t reflect.Type, depth int) *plan {
	if t.Kind() != reflect.Struct || depth > 2 || decodesItself(t) {
		return nil
	}
	p := &plan{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			return nil
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts != "" && opts != "omitempty" && opts != "omitzero" {
			return nil // ",string" changes how a value is read
		}
		if name == "" {
			name = sf.Name
		}
		f := fieldPlan{name: name, index: i, typ: sf.Type}
		switch {
		case sf.Type == typeNumber:
			f.kind = kindNumber
		case sf.Type == typeText:
			f.kind = kindText
		case sf.Type == typeBoolPtr:
			f.kind = kindBoolPtr
		case sf.Type == typeStrings:
			f.kind = kindStrings
		case sf.Type.Kind() == reflect.String && !decodesItself(sf.Type):
			f.kind = kindString
		case sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Struct:
			f.elem = makePlan(sf.Type.Elem(), depth+1)
			if f.elem == nil {
				return nil
			}
			f.kind = kindStructs
		default:
			return nil
		}
		for _, g := range p.fields {
			if g.name == name {
				return nil // encoding/json's rules for clashing names: not ours
			}
		}
		p.fields = append(p.fields, f)
	}
	return p
}

var (
	typeJSONUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	typeTextUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decodesItself reports whether encoding/json would let t decode itself.
func decodesItself(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(typeJSONUnmarshaler) || pt.Implements(typeTextUnmarshaler)
}

// scanner reads one JSON text.
type scanner struct {
	b        []byte
	i        int
	depth    int
	key      []byte // scratch for keys with escapes
	maxItems int    // most elements of one array; 0: no limit
	tooMany  bool   // an array had more: the scan stopped there
}

// item reports whether the n-th element (from 1) of an array is within
// maxItems; past it the scan stops with tooMany set.
func (s *scanner) item(n int) bool {
	if s.maxItems > 0 && n > s.maxItems {
		s.tooMany = true
		return false
	}
	return true
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// next consumes c if it is the next byte.
func (s *scanner) next(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// open consumes c, '{' or '[', starting an object or an array.
func (s *scanner) open(c byte) bool {
	if !s.next(c) {
		return false
	}
	s.depth++
	return s.depth <= maxScanDepth
}

// more is called before each member of an object or element of an array
// (first for the first one): it reports whether one follows, consuming
// the ',' before it or the closing byte after the last. (After a ',', the
// caller reads a member or an element: a closing byte there, "[1,]", is
// refused by that read.)
func (s *scanner) more(closing byte, first bool) (more, ok bool) {
	s.space()
	if s.next(closing) {
		s.depth--
		return false, true
	}
	if first {
		return true, true
	}
	if s.next(',') {
		s.space()
		return true, true
	}
	return false, false
}

// member reads a member's key and the ':' after it; the scanner is then at
// the value. The key is valid until the next key is read.
func (s *scanner) member() ([]byte, bool) {
	key, ok := s.keyBytes()
	if !ok {
		return nil, false
	}
	s.space()
	if !s.next(':') {
		return nil, false
	}
	s.space()
	return key, true
}

// object reads an object into v, a struct of plan p.
func (s *scanner) object(v reflect.Value, p *plan) bool {
	if !s.open('{') {
		return false
	}
	for first := true; ; first = false {
		more, ok := s.more('}', first)
		if !ok || !more {
			return ok
		}
		key, ok := s.member()
		if !ok {
			return false
		}
		if f := p.field(key); f != nil {
			ok = s.value(v.Field(f.index), f)
		} else if p.foldsTo(key) {
			// encoding/json would fill a field from this key (it matches
			// names ignoring case); one reading whatever path runs.
			return false
		} else {
			ok = s.skip() // unknown keys are ignored
		}
		if !ok {
			return false
		}
	}
}

// value reads the value of field f into v. null leaves a string as it is
// and empties the other kinds, as encoding/json does (Number and Text
// reset themselves on null).
func (s *scanner) value(v reflect.Value, f *fieldPlan) bool {
	c := s.peek()
	if c == 'n' {
		if !s.literal("null") {
			return false
		}
		if f.kind != kindString {
			v.SetZero()
		}
		return true
	}
	switch f.kind {
	case kindString:
		str, ok := s.str()
		if ok {
			v.SetString(str)
		}
		return ok
	case kindNumber:
		n := v.Addr().Interface().(*Number)
		switch {
		case c == 'f':
			*n = Number{False: true}
			return s.literal("false")
		case c == '-' || c >= '0' && c <= '9':
			start := s.i
			if !s.number() {
				return false
			}
			*n = Number{Lit: string(s.b[start:s.i])}
			return true
		}
		return false
	case kindText:
		t := v.Addr().Interface().(*Text)
		switch c {
		case 'f':
			*t = Text{False: true}
			return s.literal("false")
		case '"':
			str, ok := s.str()
			*t = Text{S: str, Set: true}
			return ok
		}
		return false
	case kindBoolPtr:
		var b bool
		switch {
		case c == 't' && s.literal("true"):
			b = true
		case c == 'f' && s.literal("false"):
		default:
			return false
		}
		p := v.Addr().Interface().(**bool)
		if *p == nil {
			*p = new(bool)
		}
		**p = b
		return true
	case kindStrings:
		if !s.open('[') {
			return false
		}
		p := v.Addr().Interface().(*[]string)
		out := []string{} // an empty array is an empty list, not nil
		for n := 1; ; n++ {
			more, ok := s.more(']', n == 1)
			if !ok || !more {
				*p = out
				return ok
			}
			if !s.item(n) {
				return false
			}
			var e string
			if s.peek() == 'n' {
				ok = s.literal("null")
			} else {
				e, ok = s.str()
			}
			if !ok {
				return false
			}
			out = append(out, e)
		}
	case kindStructs:
		if !s.open('[') {
			return false
		}
		out := reflect.MakeSlice(f.typ, 0, 0)
		for n := 1; ; n++ {
			more, ok := s.more(']', n == 1)
			if !ok || !more {
				v.Set(out)
				return ok
			}
			if !s.item(n) {
				return false
			}
			out = reflect.Append(out, reflect.Zero(f.typ.Elem()))
			if s.peek() == 'n' {
				ok = s.literal("null")
			} else {
				ok = s.object(out.Index(out.Len()-1), f.elem)
			}
			if !ok {
				return false
			}
		}
	}
	return false
}

// skip reads any value, validating it.
func (s *scanner) skip() bool {
	switch c := s.peek(); {
	case c == '"':
		_, _, ok := s.strBytes()
		return ok
	case c == '{' || c == '[':
		s.open(c)
		if s.depth > maxScanDepth {
			return false
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		for n := 1; ; n++ {
			more, ok := s.more(closing, n == 1)
			if !ok || !more {
				return ok
			}
			if c == '[' && !s.item(n) {
				return false
			}
			if c == '{' {
				if _, ok := s.member(); !ok {
					return false
				}
			}
			if !s.skip() {
				return false
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// (what follows it is checked by the caller: a number is never followed by
// a digit or a letter in valid JSON).
func (s *scanner) number() bool {
	s.next('-')
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.next('.') && !s.digits() {
		return false
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more decimal digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// strBytes reads a string, validating it, and returns its contents between
// the quotes; plain means they are its value as is (no escape, valid
// UTF-8).
func (s *scanner) strBytes() (raw []byte, plain, ok bool) {
	if !s.next('"') {
		return nil, false, false
	}
	start := s.i
	plain = true
	for s.i < len(s.b) {
		for s.i < len(s.b) && plainASCII[s.b[s.i]] {
			s.i++
		}
		if s.i == len(s.b) {
			break
		}
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, plain, true
		case c == '\\':
			plain = false
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if len(s.b)-s.i < 5 || !isHex(s.b[s.i+1]) || !isHex(s.b[s.i+2]) || !isHex(s.b[s.i+3]) || !isHex(s.b[s.i+4]) {
					return nil, false, false
				}
				s.i += 5
			default:
				return nil, false, false
			}
		case c < ' ':
			return nil, false, false
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				plain = false // replaced by U+FFFD
			}
			s.i += size
		}
	}
	return nil, false, false
}

// str reads a string value.
func (s *scanner) str() (string, bool) {
	raw, plain, ok := s.strBytes()
	if !ok {
		return "", false
	}
	if plain {
		return string(raw), true
	}
	return string(unescape(nil, raw)), true
}

// keyBytes reads an object key; the bytes are valid until the next key.
func (s *scanner) keyBytes() ([]byte, bool) {
	raw, plain, ok := s.strBytes()
	if !ok || plain {
		return raw, ok
	}
	s.key = unescape(s.key[:0], raw)
	return s.key, true
}

// plainASCII marks the bytes that stand for themselves in a JSON string.
var plainASCII = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// unescape appends the value of the contents of a valid JSON string (what
// strBytes returned) to b, as encoding/json decodes it: escapes resolved,
// a surrogate pair joined, a lone surrogate and each byte of invalid UTF-8
// replaced by U+FFFD.
func unescape(b, raw []byte) []byte {
	for r := 0; r < len(raw); {
		c := raw[r]
		switch {
		case c == '\\':
			r++
			switch e := raw[r]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := hex4(raw[r+1 : r+5])
				r += 5
				if utf16.IsSurrogate(rr) {
					if r+6 <= len(raw) && raw[r] == '\\' && raw[r+1] == 'u' {
						if dec := utf16.DecodeRune(rr, hex4(raw[r+2:r+6])); dec != unicode.ReplacementChar {
							b = utf8.AppendRune(b, dec)
							r += 6
							continue
						}
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, e)
			}
			r++
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(raw[r:])
			b = utf8.AppendRune(b, rr) // RuneError for an invalid byte
			r += size
		}
	}
	return b
}

// hex4 decodes four hex digits (checked by strBytes).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
