package formats

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/registers"
)

// readSIRENE reads INSEE's SIRENE stock files as distributed on
// data.gouv.fr ("Base Sirene des entreprises et de leurs établissements"),
// StockUniteLegale_utf8.zip and StockEtablissement_utf8.zip, one
// comma-separated CSV inside each. StockUniteLegale: header siren,
// statutDiffusionUniteLegale, unitePurgeeUniteLegale,
// dateCreationUniteLegale, sigleUniteLegale, sexeUniteLegale,
// prenom1UniteLegale, …, trancheEffectifsUniteLegale, …,
// etatAdministratifUniteLegale, nomUniteLegale, nomUsageUniteLegale,
// denominationUniteLegale, …, categorieJuridiqueUniteLegale,
// activitePrincipaleUniteLegale, nomenclatureActivitePrincipaleUniteLegale,
// nicSiegeUniteLegale, …; StockEtablissement: siren, nic, siret,
// statutDiffusionEtablissement, dateCreationEtablissement,
// trancheEffectifsEtablissement, …, etablissementSiege, …,
// complementAdresseEtablissement, numeroVoieEtablissement,
// indiceRepetitionEtablissement, …, typeVoieEtablissement,
// libelleVoieEtablissement, codePostalEtablissement,
// libelleCommuneEtablissement, libelleCommuneEtrangerEtablissement, …,
// codePaysEtrangerEtablissement, …, etatAdministratifEtablissement,
// enseigne1Etablissement, …, denominationUsuelleEtablissement,
// activitePrincipaleEtablissement, …. Layout: INSEE, "Description des
// fichiers de stock" (sirene.fr/static-resources/documentation/
// description-fichiers-stock) and the Sirene API 3.11 variable dictionary.
//
// One record per legal unit (Key: SIREN): its name, activity, head-count
// band, creation date and state from StockUniteLegale, its address from
// its head office (etablissementSiege) in StockEtablissement. The two
// files are merge-joined on siren, streaming: INSEE sorts StockUniteLegale
// by siren and StockEtablissement by siret (siren first); a file found out
// of that order by the first pass is joined from a sorted copy (sort.go).
// path may be either file; the other is Options.Join's, else the one
// beside path.
// StockUniteLegale alone gives records without an address;
// StockEtablissement alone is refused (it has no legal names).
//
// Units whose statutDiffusion is not "O" (persons who asked INSEE not to
// publish them) are skipped, as is an address whose establishment's is
// not. VAT: FR + key + SIREN, key = (12 + 3 × (SIREN mod 97)) mod 97.
// Employees: the band's lower bound (band "12", 20 to 49 employees, gives
// 20), so a size filter never counts a company larger than it is.
// Industry: activitePrincipale in NAF rév. 2 (or the NAF 2025 column
// when present), sectioned as nace.go says; older nomenclatures none.
func readSIRENE(ctx context.Context, path string, sink registers.Sink, opt Options) (Stats, error) {
	first, err := openSource(path)
	if err != nil {
		return Stats{}, err
	}
	defer first.Close()
	e := newEmitter(ctx, sink, opt, first)
	e.passes = 2 // the order check, then the join (or the sort)
	isEtab, err := sireneKind(first)
	if err != nil {
		return e.st, err
	}
	other := ""
	if len(opt.Join) > 0 {
		other = opt.Join[0]
	} else {
		other = sireneSibling(path, isEtab)
	}
	var ulSrc, etSrc *source
	if isEtab {
		etSrc = first
	} else {
		ulSrc = first
	}
	if other != "" {
		second, err := openSource(other)
		if err != nil {
			return e.st, err
		}
		defer second.Close()
		e.srcs = append(e.srcs, second)
		isEtab2, err := sireneKind(second)
		if err != nil {
			return e.st, err
		}
		if isEtab2 == isEtab {
			return e.st, fmt.Errorf("%s and %s: need one StockUniteLegale and one StockEtablissement", first.name, second.name)
		}
		if isEtab {
			ulSrc = second
		} else {
			etSrc = second
		}
	}
	if ulSrc == nil {
		return e.st, fmt.Errorf("StockEtablissement needs StockUniteLegale for the legal names: put StockUniteLegale_utf8.zip beside it")
	}
	tmp := &tempDir{parent: opt.TempDir}
	defer tmp.Close()
	ul, rc, err := orderedTable(e, ulSrc, csvMember, "siren", sirenKey, tmp, "statutDiffusionUniteLegale",
		"denominationUniteLegale", "nomUniteLegale", "etatAdministratifUniteLegale", "activitePrincipaleUniteLegale",
		"nicSiegeUniteLegale")
	if err != nil {
		return e.st, err
	}
	defer rc.Close()
	var cur *sireneCursor
	if etSrc != nil {
		et, rc, err := orderedTable(e, etSrc, csvMember, "siren", sirenKey, tmp, "siret", "etablissementSiege",
			"codePostalEtablissement", "libelleCommuneEtablissement", "libelleVoieEtablissement")
		if err != nil {
			return e.st, err
		}
		defer rc.Close()
		cur = &sireneCursor{t: et, e: e}
	}
	last := ""
	for {
		ok, err := ul.next()
		if err != nil || !ok {
			e.done()
			return e.st, err
		}
		if err := e.tick(); err != nil {
			return e.st, err
		}
		siren := ul.get("siren")
		if len(siren) != 9 || !digits(siren) {
			ul.bad(ul.line, errRow("siren "+quote(siren)+" is not 9 digits"))
			continue
		}
		if siren < last {
			return e.st, fmt.Errorf("%s line %d: siren %s after %s: the file is not sorted by siren as INSEE distributes it",
				ul.file, ul.line, siren, last)
		}
		last = siren
		var addr *sireneAddress
		if cur != nil {
			if addr, err = cur.headOffice(siren, ul.get("nicSiegeUniteLegale")); err != nil {
				return e.st, err
			}
		}
		if ul.get("statutDiffusionUniteLegale") != "O" {
			e.st.Skipped++
			continue
		}
		rec, bad := sireneRecord(ul, siren, addr)
		if bad != "" {
			ul.bad(ul.line, errRow(bad))
			continue
		}
		if err := e.put(rec); err != nil {
			return e.st, err
		}
	}
}

// sireneKind reads the header of a SIRENE stock file: StockEtablissement
// (it has siret) or StockUniteLegale.
func sireneKind(src *source) (etab bool, err error) {
	rc, name, err := src.open(csvMember)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	t, err := newTable(name, rc, ',', func(int64, error) {})
	if err != nil {
		return false, err
	}
	if !t.has("siren") {
		return false, fmt.Errorf("%s: not a SIRENE stock file: no siren column", name)
	}
	return t.has("siret"), nil
}

// sirenKey: a SIREN is nine digits.
func sirenKey(v string) (string, bool, bool) {
	if len(v) != 9 || !digits(v) {
		return "", false, false
	}
	return v, true, false
}

func (t *table) has(name string) bool { _, ok := t.col[name]; return ok }

// sireneSibling finds the other stock file beside path: StockUniteLegale
// for a StockEtablissement path and the reverse ("" if none).
func sireneSibling(path string, isEtab bool) string {
	want := "stocketablissement"
	if isEtab {
		want = "stockunitelegale"
	}
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, d := range ents {
		n := strings.ToLower(d.Name())
		base := strings.TrimSuffix(strings.TrimSuffix(n, ".zip"), ".csv")
		if base == n || d.IsDir() {
			continue
		}
		// StockEtablissement_utf8, not StockEtablissementHistorique_utf8.
		if base == want || strings.HasPrefix(base, want+"_") {
			return filepath.Join(dir, d.Name())
		}
	}
	return ""
}

// sireneCursor walks StockEtablissement in step with StockUniteLegale.
type sireneCursor struct {
	t       *table
	e       *emitter
	pending bool
	eof     bool
	siren   string
	last    string
}

type sireneAddress struct {
	street, street2, zip, city, country string
}

// headOffice consumes the establishments of siren (and of sirens before
// it that StockUniteLegale lacks) and returns its head office's address,
// nil when there is none to publish.
func (c *sireneCursor) headOffice(siren, nicSiege string) (*sireneAddress, error) {
	var addr *sireneAddress
	for {
		if !c.pending {
			if c.eof {
				return addr, nil
			}
			ok, err := c.t.next()
			if err != nil {
				return nil, err
			}
			if !ok {
				c.eof = true
				return addr, nil
			}
			s := c.t.get("siren")
			if len(s) != 9 || !digits(s) {
				c.t.bad(c.t.line, errRow("siren "+quote(s)+" is not 9 digits"))
				continue
			}
			if s < c.last {
				return nil, fmt.Errorf("%s line %d: siren %s after %s: the file is not sorted by siret as INSEE distributes it",
					c.t.file, c.t.line, s, c.last)
			}
			c.siren, c.last, c.pending = s, s, true
		}
		if c.siren > siren {
			return addr, nil
		}
		c.pending = false
		if c.siren < siren {
			c.e.st.Skipped++
			continue
		}
		siege := c.t.get("etablissementSiege") == "true" || nicSiege != "" && c.t.get("siret") == siren+nicSiege
		if !siege || addr != nil {
			c.e.st.Skipped++
			continue
		}
		if c.t.get("statutDiffusionEtablissement") != "O" && c.t.has("statutDiffusionEtablissement") {
			continue
		}
		addr = sireneAddr(c.t)
	}
}

// streetType expands INSEE's typeVoie codes (Sirene API 3.11 variable
// dictionary, typeVoieEtablissement); an unknown value is kept as is.
var streetType = map[string]string{
	"ALL": "Allée", "AV": "Avenue", "BD": "Boulevard", "CAR": "Carrefour", "CHE": "Chemin",
	"CHS": "Chaussée", "CITE": "Cité", "COR": "Corniche", "CRS": "Cours", "DOM": "Domaine",
	"DSC": "Descente", "ECA": "Écart", "ESP": "Esplanade", "FG": "Faubourg", "GR": "Grande Rue",
	"HAM": "Hameau", "HLE": "Halle", "IMP": "Impasse", "LD": "Lieu-dit", "LOT": "Lotissement",
	"MAR": "Marché", "MTE": "Montée", "PARC": "Parc", "PAS": "Passage", "PL": "Place",
	"PLN": "Plaine", "PLT": "Plateau", "PRO": "Promenade", "PRV": "Parvis", "QUA": "Quartier",
	"QUAI": "Quai", "RES": "Résidence", "RLE": "Ruelle", "ROC": "Rocade", "RPT": "Rond-point",
	"RTE": "Route", "RUE": "Rue", "SEN": "Sentier", "SQ": "Square", "TPL": "Terre-plein",
	"TRA": "Traverse", "VLA": "Villa", "VLGE": "Village",
}

var repetition = map[string]string{"B": "bis", "T": "ter", "Q": "quater", "C": "quinquies"}

// overseas maps the overseas departments' postcode prefixes to the
// countries Odoo has for them (ISO 3166-1 gives each its own code).
var overseas = map[string]string{"971": "GP", "972": "MQ", "973": "GF", "974": "RE", "976": "YT"}

func sireneAddr(t *table) *sireneAddress {
	g := func(col string) string { return nd(t.get(col)) }
	typ := g("typeVoieEtablissement")
	if long, ok := streetType[strings.ToUpper(typ)]; ok {
		typ = long
	}
	rep := g("indiceRepetitionEtablissement")
	if long, ok := repetition[strings.ToUpper(rep)]; ok {
		rep = long
	}
	a := &sireneAddress{
		street:  joinNonEmpty(" ", g("numeroVoieEtablissement"), rep, typ, g("libelleVoieEtablissement")),
		street2: g("complementAdresseEtablissement"),
		zip:     g("codePostalEtablissement"),
		city:    g("libelleCommuneEtablissement"),
		country: "FR",
	}
	if a.city == "" {
		a.city = g("libelleCommuneEtrangerEtablissement")
	}
	if g("codePaysEtrangerEtablissement") != "" {
		a.country = "" // INSEE's country codes are not ISO ones
	} else if len(a.zip) == 5 {
		if c, ok := overseas[a.zip[:3]]; ok {
			a.country = c
		}
	}
	return a
}

// nd empties the "[ND]" INSEE puts in place of unpublished values.
func nd(v string) string {
	if v == "[ND]" {
		return ""
	}
	return v
}

// employeesOfBand is the lower bound of each trancheEffectifs band
// (INSEE's code list: 00 none, 01 1–2, 02 3–5, 03 6–9, 11 10–19, …, 53
// 10 000 and more); NN (no employee that year) and unknown give 0.
var employeesOfBand = map[string]int{
	"01": 1, "02": 3, "03": 6, "11": 10, "12": 20, "21": 50, "22": 100, "31": 200,
	"32": 250, "41": 500, "42": 1000, "51": 2000, "52": 5000, "53": 10000,
}

// frenchVAT derives the intra-community VAT number of a SIREN.
func frenchVAT(siren string) string {
	n, _ := strconv.ParseUint(siren, 10, 64)
	return fmt.Sprintf("FR%02d%s", (12+3*(n%97))%97, siren)
}

func sireneRecord(t *table, siren string, addr *sireneAddress) (registers.Record, string) {
	g := func(col string) string { return nd(t.get(col)) }
	name := g("denominationUniteLegale")
	if name == "" {
		// A natural person: first name and (usage) surname.
		first := g("prenomUsuelUniteLegale")
		if first == "" {
			first = g("prenom1UniteLegale")
		}
		last := g("nomUsageUniteLegale")
		if last == "" {
			last = g("nomUniteLegale")
		}
		name = joinNonEmpty(" ", first, last)
	}
	if name == "" {
		return registers.Record{}, "legal unit " + siren + " has no name"
	}
	var indID, ind string
	if code := g("activitePrincipaleNAF25UniteLegale"); code != "" {
		indID, ind = industry(code)
	} else if g("nomenclatureActivitePrincipaleUniteLegale") == "NAFRev2" {
		indID, ind = industry(g("activitePrincipaleUniteLegale"))
	}
	reg := siren
	if nic := g("nicSiegeUniteLegale"); len(nic) == 5 && digits(nic) {
		reg = siren + nic
	}
	co := providers.Company{
		Name: name, LegalName: name, VAT: frenchVAT(siren), CompanyReg: reg, Country: "FR",
		Industry: ind, IndustryID: indID,
		Employees: employeesOfBand[g("trancheEffectifsUniteLegale")],
		Founded:   yearISO(g("dateCreationUniteLegale")),
	}
	if addr != nil {
		co.Street, co.Street2, co.Zip, co.City, co.Country = addr.street, addr.street2, addr.zip, addr.city, addr.country
	}
	return registers.Record{
		Company: co, Source: "sirene", Key: siren,
		Active:  g("etatAdministratifUniteLegale") == "A",
		Licence: LicenceSIRENE,
	}, ""
}
