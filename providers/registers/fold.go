package registers

import (
	"strings"
	"unicode"
)

// words splits s into the words the name index holds: lower case, accents
// of Latin letters removed, dots dropped (so "S.A." is "sa" and "S.p.A."
// "spa"), split at anything else that is neither a letter nor a digit.
func words(s string) []string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == '.' {
			continue
		}
		r = unicode.ToLower(r)
		if f, ok := latin[r]; ok {
			b.WriteString(f)
			continue
		}
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte(' ')
		}
	}
	return strings.Fields(b.String())
}

// latin folds the accented Latin letters (Latin-1 Supplement and Latin
// Extended-A, lower case) to their base letters.
var latin = func() map[rune]string {
	m := map[rune]string{}
	for base, letters := range map[string]string{
		"a": "àáâãäåāăą", "ae": "æ", "c": "çćĉċč", "d": "ďđð", "e": "èéêëēĕėęě",
		"g": "ĝğġģ", "h": "ĥħ", "i": "ìíîïĩīĭįı", "j": "ĵ", "k": "ķ", "l": "ĺļľŀł",
		"n": "ñńņňŉ", "o": "òóôõöøōŏő", "oe": "œ", "r": "ŕŗř", "s": "śŝşš", "ss": "ß",
		"t": "ţťŧ", "th": "þ", "u": "ùúûüũūŭůűų", "w": "ŵ", "y": "ýÿŷ", "z": "źżž",
	} {
		for _, r := range letters {
			m[r] = base
		}
	}
	return m
}()

// legalForms are the folded words of legal forms (and the like) that say
// nothing of which company is meant: a query word matching only one of
// them ranks a company last, and they are searched only when a query has
// no other word.
var legalForms = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`
		sa sas sasu sarl eurl sci snc scs sca scop selarl sem
		gmbh ag kg ohg ug ev eg kgaa mbh co
		ltd limited plc llp lp cic inc incorporated llc corp corporation company
		bv nv bvba vof cv cvba srl sprl sc scrl comm commv
		spa sapa srls snc
		sl slu sau
		ab oy oyj as asa aps amba
		sro kft zrt nyrt doo dd sp zoo
		se sce ltda cia
		the and et und`) {
		m[w] = true
	}
	return m
}()

// split sorts the words of a name into the distinctive ones and the
// legal-form ones.
func split(ws []string) (core, legal []string) {
	for _, w := range ws {
		if legalForms[w] {
			legal = append(legal, w)
		} else {
			core = append(core, w)
		}
	}
	return core, legal
}
