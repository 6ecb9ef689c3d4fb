// Package registers keeps companies imported from official open company
// registers (GLEIF, SIRENE, Companies House, KBO/BCE) in an on-disk index
// under the data directory, and answers every company capability of
// package providers from it.
//
// It imports providers, providers/directory (its VAT and domain
// normalisation) and Badger.
package registers

import "github.com/iapd/iapd/providers"

// Record is one company as a register publishes it, mapped onto what
// Odoo's company answers carry. Key is the register's own identifier,
// unique within Source; a later import of the same Source replaces the
// record with that Key.
type Record struct {
	providers.Company        // ID is left empty: the index sets it from Source and Key
	Source            string // "gleif", "sirene", "companies-house", "kbo"
	Key               string // LEI, SIRET, company number, enterprise number, ...
	LEI               string // when the register knows it
	Active            bool   // false: struck off, ceased, retired
	Licence           string // the attribution the register's licence asks for
}

// Sink receives the records of one import, in file order. Put may keep
// rec; an error stops the import.
type Sink interface {
	Put(rec Record) error
}
