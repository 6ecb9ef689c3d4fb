package registers

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/iapd/iapd/providers"
)

// The record encoding: a version byte, then length-prefixed strings and
// varints in a fixed order (recordStrings), the socials (sorted by key)
// and the contacts. Compact, and the same record always encodes to the
// same bytes, which is how a re-import tells changed from unchanged.

const recordVersion = 1

var errCorrupt = errors.New("registers: corrupt record in the index")

// recordStrings lists the string fields of r in encoding order.
func recordStrings(r *Record) []*string {
	c := &r.Company
	return []*string{&r.Source, &r.Key, &r.LEI, &r.Licence,
		&c.Name, &c.LegalName, &c.Domain, &c.VAT, &c.CompanyReg, &c.Street, &c.Street2, &c.Zip, &c.City,
		&c.State, &c.StateCode, &c.Country, &c.Phone, &c.Email, &c.Website, &c.Industry, &c.IndustryID,
		&c.Description, &c.Logo}
}

func encodeRecord(r *Record) []byte {
	b := make([]byte, 0, 256)
	b = append(b, recordVersion)
	flags := byte(0)
	if r.Active {
		flags |= 1
	}
	b = append(b, flags)
	for _, s := range recordStrings(r) {
		b = appendString(b, *s)
	}
	b = binary.AppendUvarint(b, uint64(max(r.Employees, 0)))
	b = binary.AppendUvarint(b, uint64(max(r.Founded, 0)))
	keys := make([]string, 0, len(r.Socials))
	for k := range r.Socials {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(appendString(b, k), r.Socials[k])
	}
	b = binary.AppendUvarint(b, uint64(len(r.Contacts)))
	for _, p := range r.Contacts {
		for _, s := range []string{p.Name, p.Email, p.Phone, p.Title, p.Role, p.Seniority, p.Country} {
			b = appendString(b, s)
		}
	}
	return b
}

func decodeRecord(b []byte) (Record, error) {
	var r Record
	d := decoder{b: b}
	if d.byte() != recordVersion {
		return r, errCorrupt
	}
	r.Active = d.byte()&1 != 0
	for _, s := range recordStrings(&r) {
		*s = d.string()
	}
	r.Employees = int(d.uvarint())
	r.Founded = int(d.uvarint())
	if n := d.count(); n > 0 {
		r.Socials = make(map[string]string, n)
		for range n {
			k := d.string()
			r.Socials[k] = d.string()
		}
	}
	if n := d.count(); n > 0 {
		r.Contacts = make([]providers.Contact, n)
		for i := range r.Contacts {
			p := &r.Contacts[i]
			for _, s := range []*string{&p.Name, &p.Email, &p.Phone, &p.Title, &p.Role, &p.Seniority, &p.Country} {
				*s = d.string()
			}
		}
	}
	if d.bad || len(d.b) != 0 {
		return Record{}, errCorrupt
	}
	return r, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads what encodeRecord and the summaries write; a short or
// malformed input sets bad and yields zero values.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that must fit in what is left.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return 0
	}
	return int(n)
}

// view reads a length-prefixed string without copying it.
func (d *decoder) view() []byte {
	n := d.count()
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.count()
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
