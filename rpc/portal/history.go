package portal

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/storage"
)

// historyPage is one page of an account's history on the credit page.
type historyPage struct {
	Rows     []historyRow // one per operation, newest first
	Since    string       // the filter, YYYY-MM-DD
	Until    string
	Newest   string // link to the first page (with the filter)
	Older    string // link to the next page; empty on the last
	CSV      string // link to the CSV of the filtered period
	Chart    chart
	Filtered bool
}

// period reads the since/until filter: since inclusive, until inclusive
// (a whole day), as HistoryQuery bounds.
func (r *request) period() (since, until time.Time, sinceS, untilS string) {
	since, until = parseDay(r.query("since")), parseDay(r.query("until"))
	if !since.IsZero() {
		sinceS = since.Format(time.DateOnly)
	}
	if !until.IsZero() {
		untilS = until.Format(time.DateOnly)
		until = until.AddDate(0, 0, 1)
	}
	return since, until, sinceS, untilS
}

func (r *request) history(a storage.Account, dbuuid string) (historyPage, error) {
	since, until, sinceS, untilS := r.period()
	before, _ := strconv.ParseUint(r.query("before"), 10, 64) // a bad cursor reads as the newest page
	size := r.p.cfg.HistoryPageSize
	// One more than a page, and one more again so that a capture and the
	// release of its remainder (written together) are never split.
	entries, err := r.p.ledger.History(r.context(), a.Service, a.Token, storage.HistoryQuery{
		Before: before, Since: since, Until: until, Limit: size + 2,
	})
	if err != nil {
		return historyPage{}, err
	}
	keep := min(size, len(entries))
	if keep < len(entries) && keep > 0 && sameOperation(entries[keep-1], entries[keep]) {
		keep++
	}
	filter := url.Values{}
	if sinceS != "" {
		filter.Set("since", sinceS)
	}
	if untilS != "" {
		filter.Set("until", untilS)
	}
	hp := historyPage{Since: sinceS, Until: untilS, Filtered: len(filter) > 0}
	if len(entries) > keep {
		entries = entries[:keep]
		older := url.Values{"before": {itoa(entries[keep-1].Seq)}}
		for k, v := range filter {
			older[k] = v
		}
		hp.Older = creditLink(a.Service, a.Token, dbuuid, older) + "#history"
	}
	hp.Rows = r.operations(entries)
	if before != 0 {
		hp.Newest = creditLink(a.Service, a.Token, dbuuid, filter) + "#history"
	}
	csvq := url.Values{"service_name": {string(a.Service)}, "account_token": {hashHex(a.Token)}, "hashed": {"1"}}
	for k, v := range filter {
		csvq[k] = v
	}
	hp.CSV = HistoryCSVPath + "?" + csvq.Encode()
	hp.Chart, _, err = r.dailyChart(a, since, until)
	return hp, err
}

// maxCSVEntries bounds one CSV download.
const maxCSVEntries = 200_000

// historyCSV serves the history of one account, for the period filter,
// as CSV (newest first).
func (r *request) historyCSV() {
	a, ok := r.account(r.query("service_name"), r.query("account_token"), isHashed(r.query("hashed")))
	if !ok {
		return
	}
	since, until, _, _ := r.period()
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"seq", "time", "service", "kind", "amount", "available_change", "held_change", "captured_change", "transaction", "description", "ref"})
	var before uint64
	n := 0
	for n < maxCSVEntries {
		page, err := r.p.ledger.History(r.context(), a.Service, a.Token, storage.HistoryQuery{Before: before, Since: since, Until: until, Limit: 1000})
		if err != nil {
			r.failure(err)
			return
		}
		for _, e := range page {
			_ = w.Write([]string{itoa(e.Seq), e.Time.UTC().Format(time.RFC3339), string(e.Service), string(e.Kind),
				e.Amount().String(), e.DAvailable.String(), e.DHeld.String(), e.DCaptured.String(),
				e.Transaction, csvText(e.Description), csvText(e.Ref)})
		}
		n += len(page)
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].Seq
	}
	w.Flush()
	r.ctx.SetContentType("text/csv; charset=utf-8")
	r.ctx.Response.Header.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-history.csv"`, a.Service))
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	r.ctx.SetBodyString(b.String())
}

// csvText defuses text a spreadsheet would read as a formula.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// chart is the daily consumption of an account as an SVG bar chart.
type chart struct {
	SVG   template.HTML
	Total storage.Credits
	From  string
	To    string
	Days  int
	Cut   bool // more entries than scanned
}

// Bounds of the chart.
const (
	chartDays       = 30      // default period
	maxChartDays    = 366     // longest period drawn
	maxChartEntries = 100_000 // entries scanned for one chart
)

// dailyChart sums the captures of each day (UTC) of [since, until) —
// default the last 30 days — and draws them.
func (r *request) dailyChart(a storage.Account, since, until time.Time) (chart, int, error) {
	today := r.now.UTC().Truncate(24 * time.Hour)
	if until.IsZero() {
		until = today.AddDate(0, 0, 1)
	}
	if since.IsZero() || !since.Before(until) {
		since = until.AddDate(0, 0, -chartDays)
	}
	if until.Sub(since) > maxChartDays*24*time.Hour {
		since = until.AddDate(0, 0, -maxChartDays)
	}
	days := int(until.Sub(since) / (24 * time.Hour))
	sums := make([]storage.Credits, days)
	var before uint64
	n := 0
	cut := false
	for {
		page, err := r.p.ledger.History(r.context(), a.Service, a.Token, storage.HistoryQuery{Before: before, Since: since, Until: until, Limit: 1000})
		if err != nil {
			return chart{}, 0, err
		}
		for _, e := range page {
			if e.Kind != storage.EntryCapture {
				continue
			}
			if d := int(e.Time.UTC().Sub(since) / (24 * time.Hour)); d >= 0 && d < days {
				sums[d] += e.DCaptured
			}
		}
		n += len(page)
		if len(page) < 1000 {
			break
		}
		if n >= maxChartEntries {
			cut = true
			break
		}
		before = page[len(page)-1].Seq
	}
	c := chart{From: since.Format(time.DateOnly), To: until.AddDate(0, 0, -1).Format(time.DateOnly), Days: days, Cut: cut}
	for _, s := range sums {
		c.Total += s
	}
	c.SVG = drawBars(sums, since, r.tr)
	return c, n, nil
}

// drawBars draws one bar per day, scaled to the largest; every value is
// computed here, nothing comes from the request.
func drawBars(sums []storage.Credits, since time.Time, tr translator) template.HTML {
	const w, h, top, bottom = 600, 140, 16, 18
	var peak storage.Credits
	for _, s := range sums {
		peak = max(peak, s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="%s">`, w, h, template.HTMLEscapeString(tr.T("chart.label")))
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#888" stroke-width="1"/>`, h-bottom, w, h-bottom)
	n := len(sums)
	if n > 0 {
		bw := float64(w) / float64(n)
		for i, s := range sums {
			day := since.AddDate(0, 0, i).Format(time.DateOnly)
			bh := 0.0
			if peak > 0 {
				bh = float64(s) / float64(peak) * float64(h-top-bottom) // drawing only: amounts stay exact in the title
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#3b6ea5"><title>%s: %s</title></rect>`,
				float64(i)*bw+1, float64(h-bottom)-bh, max(bw-2, 1), bh, day, template.HTMLEscapeString(tr.l.num(s)))
		}
		fmt.Fprintf(&b, `<text x="0" y="%d" font-size="11" fill="#444">%s</text>`, h-4, since.Format(time.DateOnly))
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" fill="#444" text-anchor="end">%s</text>`, w, h-4, since.AddDate(0, 0, n-1).Format(time.DateOnly))
	}
	fmt.Fprintf(&b, `<text x="0" y="11" font-size="11" fill="#444">%s</text>`, template.HTMLEscapeString(tr.T("chart.max", "n", peak)))
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // #nosec G203 -- built above from numbers, dates and escaped catalogue texts
}
