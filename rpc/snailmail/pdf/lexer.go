package pdf

import (
	"bytes"
	"strconv"
)

// lexer reads PDF objects from b[pos:lim] (PDF 32000-1 §7.2–7.3). It
// never reads at or past lim, except a stream's data (which is found
// through the document's index, not scanned), and it charges every byte
// it scans to m.
type lexer struct {
	b   []byte
	pos int
	lim int
	m   *meter
	doc *doc // resolves an indirect /Length and finds endstream; nil inside object streams
}

func isSpace(c byte) bool {
	return c == 0 || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' '
}

func isDelim(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '[', ']', '{', '}', '/', '%':
		return true
	}
	return false
}

// rest is what the lexer may still read.
func (l *lexer) rest() []byte { return l.b[l.pos:l.lim] }

// skipSpace skips white space and comments.
func (l *lexer) skipSpace() {
	start := l.pos
	for l.pos < l.lim {
		c := l.b[l.pos]
		switch {
		case isSpace(c):
			l.pos++
		case c == '%':
			for l.pos < l.lim && l.b[l.pos] != '\n' && l.b[l.pos] != '\r' {
				l.pos++
			}
		default:
			l.m.charge(l.pos - start)
			return
		}
	}
	l.m.charge(l.pos - start)
}

// regular reads a run of regular characters (a number or a keyword).
func (l *lexer) regular() []byte {
	start := l.pos
	for l.pos < l.lim && !isSpace(l.b[l.pos]) && !isDelim(l.b[l.pos]) {
		l.pos++
	}
	l.m.charge(l.pos - start)
	return l.b[start:l.pos]
}

// integer reads a non-negative integer token.
func (l *lexer) integer() (int, bool) {
	l.skipSpace()
	save := l.pos
	tok := l.regular()
	if len(tok) == 0 || len(tok) > 10 {
		l.pos = save
		return 0, false
	}
	v, err := strconv.Atoi(string(tok))
	if err != nil || v < 0 {
		l.pos = save
		return 0, false
	}
	return v, true
}

// indirect reads "N G obj <object> [stream … endstream] endobj".
func (l *lexer) indirect() (int, object, error) {
	num, ok1 := l.integer()
	_, ok2 := l.integer()
	l.skipSpace()
	if !ok1 || !ok2 || !bytes.HasPrefix(l.rest(), []byte("obj")) {
		return 0, nil, errf("no object header")
	}
	l.pos += 3
	o, err := l.object(0)
	if err != nil {
		return 0, nil, err
	}
	l.skipSpace()
	if bytes.HasPrefix(l.rest(), []byte("stream")) {
		dd, ok := o.(dict)
		if !ok {
			return 0, nil, errf("stream without a dictionary")
		}
		s, err := l.stream(dd)
		if err != nil {
			return 0, nil, err
		}
		return num, s, nil
	}
	return num, o, nil
}

// stream reads the data after the "stream" keyword: /Length bytes when
// that ends at "endstream", else up to the next "endstream" of the file
// (looked up in the document's index: the data is never scanned).
func (l *lexer) stream(dd dict) (*stream, error) {
	if l.doc == nil {
		return nil, errf("stream inside an object stream")
	}
	l.pos += len("stream")
	if l.pos < len(l.b) && l.b[l.pos] == '\r' {
		l.pos++
	}
	if l.pos < len(l.b) && l.b[l.pos] == '\n' {
		l.pos++
	}
	start := l.pos
	length := -1
	switch v := dd["Length"].(type) {
	case int64:
		length = int(min(v, int64(len(l.b))))
	case ref:
		if o, err := l.doc.resolve(v, 0); err == nil {
			if n, ok := o.(int64); ok {
				length = int(min(n, int64(len(l.b))))
			}
		}
	}
	l.m.charge(64)
	if length >= 0 && start+length <= len(l.b) {
		rest := bytes.TrimLeft(l.b[start+length:min(len(l.b), start+length+64)], "\x00\t\n\f\r ")
		if bytes.HasPrefix(rest, []byte("endstream")) {
			l.pos = start + length
			return &stream{dict: dd, raw: l.b[start : start+length]}, nil
		}
	}
	end := l.doc.ix.endstreamFrom(start)
	if end < 0 {
		return nil, errf("stream without endstream")
	}
	raw := l.b[start:end]
	// The end-of-line before endstream is not data.
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	raw = bytes.TrimSuffix(raw, []byte("\r"))
	l.pos = end
	return &stream{dict: dd, raw: raw}, nil
}

// object reads one direct object; "N G R" is a reference.
func (l *lexer) object(depth int) (object, error) {
	if depth > maxDepth {
		return nil, errf("objects nested too deep")
	}
	l.m.charge(1)
	l.skipSpace()
	if l.pos >= l.lim {
		return nil, errf("unexpected end of data")
	}
	c := l.b[l.pos]
	switch c {
	case '/':
		l.pos++
		return name(l.nameText()), nil
	case '(':
		return l.literal()
	case '<':
		if l.pos+1 < l.lim && l.b[l.pos+1] == '<' {
			l.pos += 2
			return l.dict(depth)
		}
		return l.hex()
	case '[':
		l.pos++
		var arr []object
		for {
			l.skipSpace()
			if l.pos >= l.lim {
				return nil, errf("unterminated array")
			}
			if l.b[l.pos] == ']' {
				l.pos++
				if arr == nil {
					arr = []object{}
				}
				return arr, nil
			}
			o, err := l.object(depth + 1)
			if err != nil {
				return nil, err
			}
			l.m.element(elementCost)
			arr = append(arr, o)
		}
	case ')', '>', ']', '{', '}':
		return nil, errf("unexpected %q", c)
	}
	tok := l.regular()
	if len(tok) == 0 {
		return nil, errf("unexpected %q", c)
	}
	switch string(tok) {
	case "null":
		return nil, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if len(tok) > maxToken {
		return nil, errf("token of %d bytes", len(tok))
	}
	if isInt(tok) {
		v, err := strconv.ParseInt(string(tok), 10, 64)
		if err != nil {
			return nil, errf("integer %.24q out of range", tok)
		}
		// "N G R" is a reference.
		if v >= 0 && v <= maxObjects {
			save := l.pos
			if g, ok := l.integer(); ok {
				l.skipSpace()
				if l.pos < l.lim && l.b[l.pos] == 'R' && (l.pos+1 == l.lim || isSpace(l.b[l.pos+1]) || isDelim(l.b[l.pos+1])) {
					l.pos++
					return ref{num: int(v), gen: g}, nil
				}
			}
			l.pos = save
		}
		return v, nil
	}
	if isReal(tok) {
		return real(tok), nil
	}
	return nil, errf("unexpected token %.20q", tok)
}

func isInt(t []byte) bool {
	if t[0] == '+' || t[0] == '-' {
		t = t[1:]
	}
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isReal(t []byte) bool {
	if t[0] == '+' || t[0] == '-' {
		t = t[1:]
	}
	digits, dots := 0, 0
	for _, c := range t {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots == 1
}

// nameText reads a name after '/', decoding #xx escapes.
func (l *lexer) nameText() string {
	raw := l.regular()
	if bytes.IndexByte(raw, '#') < 0 {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] == '#' && i+2 < len(raw) {
			if v, err := strconv.ParseUint(string(raw[i+1:i+3]), 16, 8); err == nil {
				out = append(out, byte(v))
				i += 2
				continue
			}
		}
		out = append(out, raw[i])
	}
	return string(out)
}

// literal reads a (string) with balanced parentheses; escapes are kept
// as written (page counting never reads a string's value). Nesting is a
// counter, not a recursion.
func (l *lexer) literal() (object, error) {
	start := l.pos
	depth := 0
	for l.pos < l.lim {
		switch l.b[l.pos] {
		case '\\':
			l.pos++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				l.pos++
				l.m.charge(l.pos - start)
				return l.b[start+1 : l.pos-1], nil
			}
		}
		l.pos++
	}
	l.pos = min(l.pos, l.lim)
	l.m.charge(l.pos - start)
	return nil, errf("unterminated string")
}

func (l *lexer) hex() (object, error) {
	end := bytes.IndexByte(l.rest(), '>')
	if end < 0 {
		l.m.charge(l.lim - l.pos)
		return nil, errf("unterminated hex string")
	}
	l.m.charge(end + 1)
	s := l.b[l.pos+1 : l.pos+end]
	l.pos += end + 1
	return s, nil
}

func (l *lexer) dict(depth int) (object, error) {
	d := dict{}
	for {
		l.skipSpace()
		if l.pos+1 < l.lim && l.b[l.pos] == '>' && l.b[l.pos+1] == '>' {
			l.pos += 2
			return d, nil
		}
		if l.pos >= l.lim {
			return nil, errf("unterminated dictionary")
		}
		if l.b[l.pos] != '/' {
			return nil, errf("dictionary key is not a name")
		}
		l.pos++
		k := name(l.nameText())
		v, err := l.object(depth + 1)
		if err != nil {
			return nil, err
		}
		l.m.element(entryCost)
		d[k] = v
	}
}
