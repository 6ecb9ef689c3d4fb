package company

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"time"
)

// Reply is a handler's answer, encoded as its value V.
type Reply struct{ V any }

// MarshalJSON encodes V.
func (r Reply) MarshalJSON() ([]byte, error) { return json.Marshal(r.V) }

// str is a string param that Odoo may send as false (an empty field) or
// null; a number is taken as its literal (ids sent as numbers).
type str string

// UnmarshalJSON implements json.Unmarshaler.
func (s *str) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
	case string(b) == "null" || string(b) == "false":
		*s = ""
		return nil
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = str(v)
		return nil
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*s = str(b)
		return nil
	}
	return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeFor[string]()}
}

// num is a whole-number param that may be false or null (0).
type num int

// UnmarshalJSON implements json.Unmarshaler.
func (n *num) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" || string(b) == "false" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || f != float64(int64(f)) || f > 1<<31 || f < -(1<<31) {
			return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeFor[int]()}
		}
		v = int64(f)
	}
	*n = num(v)
	return nil
}

// strs is a list of str; false or null is an empty list.
type strs []str

// UnmarshalJSON implements json.Unmarshaler.
func (l *strs) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" || string(b) == "false" {
		*l = nil
		return nil
	}
	var v []str
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*l = v
	return nil
}

func (l strs) strings() []string {
	out := make([]string, 0, len(l))
	for _, s := range l {
		if s != "" {
			out = append(out, string(s))
		}
	}
	return out
}

// budget is the time a handler gives its providers: the calling Odoo's
// timeout for the route (PROTOCOL §13) less a margin to answer in.
func budget(ctx context.Context, odooTimeout time.Duration) (context.Context, context.CancelFunc) {
	d := odooTimeout - time.Second
	if odooTimeout > 30*time.Second {
		d = odooTimeout - 10*time.Second
	}
	return context.WithTimeout(ctx, max(d, time.Second))
}
