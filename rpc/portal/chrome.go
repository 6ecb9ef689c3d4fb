package portal

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/storage"
)

// chrome is what every page shows around its content: the title (a
// catalogue key), the language, the operator's branding and the link
// back to the customer's Odoo.
type chrome struct {
	Title        string
	Lang         string
	BrandName    string
	Logo         bool
	SupportEmail string
	SupportURL   string
	Back         string // the customer's Odoo (origin), if known
	BackHost     string
}

func (c *chrome) base() *chrome { return c }

// page is the data of a page: it embeds chrome.
type page interface{ base() *chrome }

// limitedData is the "too many attempts" page.
type limitedData struct {
	chrome
	Wait storage.Credits // seconds, as a number for the plural
}

// langFuncs are the template functions of one language.
func langFuncs(tr translator) template.FuncMap {
	return template.FuncMap{
		"t":        tr.T,
		"tn":       tr.N,
		"num":      tr.l.num,
		"price":    func(c storage.Credits) string { return strings.Replace(formatPrice(c), ".", tr.l.decimal, 1) },
		"signed":   tr.l.signed,
		"unit":     tr.Unit,
		"unitname": tr.UnitName,
	}
}

// Bounds of the logo file.
const maxLogoSize = 256 << 10

// logo is the operator's logo, read once at start-up and served by iapd
// itself (the CSP allows no other origin).
type logo struct {
	body        []byte
	contentType string
}

// loadLogo reads the logo file: PNG, JPEG, GIF, WebP or SVG, at most
// 256 KiB.
func loadLogo(path string) (logo, error) {
	b, err := os.ReadFile(path) // #nosec G304 -- the operator's configured file
	if err != nil {
		return logo{}, fmt.Errorf("portal: logo_file: %w", err)
	}
	if len(b) == 0 || len(b) > maxLogoSize {
		return logo{}, fmt.Errorf("portal: logo_file %s: 1 byte to %d KiB is required", path, maxLogoSize>>10)
	}
	ct := http.DetectContentType(b)
	switch {
	case ct == "image/png", ct == "image/jpeg", ct == "image/gif", ct == "image/webp":
	case strings.HasSuffix(strings.ToLower(path), ".svg") && bytes.Contains(b, []byte("<svg")):
		// An image, never a document: the CSP of every answer forbids
		// scripts, and the browser loads it through <img>.
		ct = "image/svg+xml"
	default:
		return logo{}, fmt.Errorf("portal: logo_file %s: a PNG, JPEG, GIF, WebP or SVG image is required (found %s)", path, ct)
	}
	return logo{body: b, contentType: ct}, nil
}

func (p *Portal) serveLogo(ctx *fasthttp.RequestCtx) {
	setSecurityHeaders(ctx)
	ctx.Response.Header.Set("Cache-Control", "public, max-age=3600")
	ctx.SetContentType(p.logo.contentType)
	ctx.SetBody(p.logo.body)
}

// odooCookie keeps the origin of the customer's Odoo, learnt from the
// Referer of the link that opened the portal (Odoo sends no URL of its
// own; the portal's pages send no Referer, so later pages keep it).
const odooCookie = "iapd_odoo"

// backToOdoo returns the customer's Odoo (an http(s) origin) and its
// host, from the Referer of this request when it comes from another site
// (and remembers it in a cookie), else from the cookie; empty when
// unknown.
func (r *request) backToOdoo() (string, string) {
	if o, h, ok := r.otherOrigin(string(r.ctx.Request.Header.Referer())); ok {
		c := fasthttp.AcquireCookie()
		defer fasthttp.ReleaseCookie(c)
		c.SetKey(odooCookie)
		c.SetValue(o)
		c.SetPath("/")
		c.SetHTTPOnly(true)
		c.SetSecure(r.ctx.IsTLS())
		c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
		c.SetMaxAge(int((30 * 24 * time.Hour).Seconds()))
		r.ctx.Response.Header.SetCookie(c)
		return o, h
	}
	if o, h, ok := r.otherOrigin(string(r.ctx.Request.Header.Cookie(odooCookie))); ok {
		return o, h
	}
	return "", ""
}

// otherOrigin reads an absolute http(s) URL and returns its origin and
// host, unless it is iapd's own.
func (r *request) otherOrigin(s string) (string, string, bool) {
	if s == "" || len(s) > 2048 {
		return "", "", false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return "", "", false
	}
	o := u.Scheme + "://" + u.Host
	if strings.EqualFold(o, r.p.origin) || strings.EqualFold(u.Host, string(r.ctx.Host())) {
		return "", "", false
	}
	return o, u.Hostname(), true
}
