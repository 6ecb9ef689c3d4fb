package formats

import "strings"

// Activity codes. The French NAF rév. 2, the UK SIC 2007 and the Belgian
// NACE-BEL 2008 all extend NACE Rev. 2 (Regulation (EC) 1893/2006) and
// keep its two-digit divisions, so a code's first two digits give its
// NACE section A–U. Those sections are Odoo's own industries: base's
// res.partner.industry records base.res_partner_industry_A … _U
// (odoo/odoo odoo/addons/base/data/res_partner_industry_data.xml,
// 16.0–19.0), whose names are in industryName; 19.0 answers them as
// industry_code (PROTOCOL §8.2). NACE Rev. 2.1 (NAF 2025, NACE-BEL 2025)
// renumbered some sections but kept most divisions: its codes are read
// with the same division table, so they land in the Rev. 2 section of the
// same division number.

// sectionOfDivision maps a NACE Rev. 2 division (01–99) to its section.
var sectionOfDivision = func() [100]byte {
	var t [100]byte
	for _, r := range []struct {
		lo, hi  int
		section byte
	}{
		{1, 3, 'A'}, {5, 9, 'B'}, {10, 33, 'C'}, {35, 35, 'D'}, {36, 39, 'E'},
		{41, 43, 'F'}, {45, 47, 'G'}, {49, 53, 'H'}, {55, 56, 'I'}, {58, 63, 'J'},
		{64, 66, 'K'}, {68, 68, 'L'}, {69, 75, 'M'}, {77, 82, 'N'}, {84, 84, 'O'},
		{85, 85, 'P'}, {86, 88, 'Q'}, {90, 93, 'R'}, {94, 96, 'S'}, {97, 98, 'T'},
		{99, 99, 'U'},
	} {
		for d := r.lo; d <= r.hi; d++ {
			t[d] = r.section
		}
	}
	return t
}()

// industryName is the name of Odoo's res.partner.industry of each NACE
// section (res_partner_industry_data.xml, en_US).
var industryName = map[byte]string{
	'A': "Agriculture", 'B': "Mining", 'C': "Manufacturing", 'D': "Energy supply",
	'E': "Water supply", 'F': "Construction", 'G': "Wholesale/Retail",
	'H': "Transportation/Logistics", 'I': "Food/Hospitality", 'J': "IT/Communication",
	'K': "Finance/Insurance", 'L': "Real Estate", 'M': "Scientific", 'N': "Administrative",
	'O': "Public Administration", 'P': "Education", 'Q': "Health/Social",
	'R': "Entertainment", 'S': "Other Services", 'T': "Households", 'U': "Extraterritorial",
}

// industry maps an activity code whose first two digits are a NACE
// division ("62.01Z", "62012", "6201", "62.010") to Odoo's industry:
// the section letter (Record.IndustryID) and its name (Record.Industry).
// Unknown or empty codes give "", "".
func industry(code string) (id, name string) {
	code = strings.TrimSpace(code)
	if len(code) < 2 || code[0] < '0' || code[0] > '9' || code[1] < '0' || code[1] > '9' {
		return "", ""
	}
	s := sectionOfDivision[int(code[0]-'0')*10+int(code[1]-'0')]
	if s == 0 {
		return "", ""
	}
	return string(s), industryName[s]
}
