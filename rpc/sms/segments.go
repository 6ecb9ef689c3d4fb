package sms

import "unicode/utf16"

// Segment sizes as carriers count them (3GPP TS 23.038 and 23.040): a
// single GSM-7 message carries 160 septets, each part of a concatenated
// one 153 (the user data header takes 7); UCS-2 carries 70 UTF-16 code
// units, 67 per part.
const (
	gsmSingle  = 160
	gsmPart    = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// gsmBasic is the GSM 03.38 default alphabet (one septet each; the escape
// 0x1B is not a character of its own).
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

// gsmExtension are the characters of the extension table: escape + one
// septet, two septets each.
const gsmExtension = "\f^{}\\[~]|€"

var gsmCost = func() map[rune]int {
	m := make(map[rune]int, 140)
	for _, r := range gsmBasic {
		m[r] = 1
	}
	for _, r := range gsmExtension {
		m[r] = 2
	}
	return m
}()

// Encoding is how a message is sent.
type Encoding string

// Encodings.
const (
	GSM7 Encoding = "gsm7"
	UCS2 Encoding = "ucs2"
)

// Segments returns how many segments carriers bill for text and in which
// encoding it goes: GSM-7 when every character is in the default alphabet
// or its extension (extension characters take two septets, and an escape
// sequence is never split across parts), UCS-2 otherwise (counted in
// UTF-16 code units, a surrogate pair never split). An empty text is one
// segment.
func Segments(text string) (int, Encoding) {
	septets := 0
	gsm := true
	for _, r := range text {
		c, ok := gsmCost[r]
		if !ok {
			gsm = false
			break
		}
		septets += c
	}
	if gsm {
		if septets <= gsmSingle {
			return 1, GSM7
		}
		return pack(text, gsmPart, func(r rune) int { return gsmCost[r] }), GSM7
	}
	units := 0
	for _, r := range text {
		units += utf16.RuneLen(r)
	}
	if units <= ucs2Single {
		return 1, UCS2
	}
	return pack(text, ucs2Part, utf16.RuneLen), UCS2
}

// pack counts the parts of size capacity the runes of text fill, greedily,
// a rune's cost never split between parts.
func pack(text string, capacity int, cost func(rune) int) int {
	parts, used := 1, 0
	for _, r := range text {
		c := cost(r)
		if c < 1 { // utf16.RuneLen is -1 for invalid runes: sent as U+FFFD
			c = 1
		}
		if used+c > capacity {
			parts++
			used = 0
		}
		used += c
	}
	return parts
}
