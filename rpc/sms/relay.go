package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/outbound"
	"github.com/iapd/iapd/storage"
)

// odooStatus maps a provider status to the sms_status Odoo's /sms/status
// understands (PROTOCOL §6.4), and whether it is final.
func odooStatus(st providers.SMSStatus) (final bool, odoo string) {
	switch st {
	case providers.SMSAccepted:
		return false, "sent"
	case providers.SMSDelivered:
		return true, "delivered"
	case providers.SMSUndelivered:
		return true, "not_delivered"
	case providers.SMSExpired:
		return true, "expired"
	case providers.SMSRejected:
		return true, "rejected"
	}
	return false, ""
}

// isOdooUUID: what Odoo's /sms/status accepts, 32 lowercase hex (§6.4).
func isOdooUUID(u string) bool {
	if len(u) != 32 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Sink returns where DeliveryReporter providers send what their callbacks
// parse: each report is mapped back to its Odoo uuid and webhook and
// queued for the relay. A report that arrives before its mapping is
// written (a provider that reports at once) is parked and looked up
// again for orphanTTL; after that it is dropped (a duplicate after the
// final report, or a message sent without a webhook).
func (s *Service) Sink() providers.DeliverySink {
	return func(ctx context.Context, provider string, reports []providers.DeliveryReport) {
		for _, r := range reports {
			label := "other" // a label value per known status only
			if _, st := odooStatus(r.Status); st != "" {
				label = string(r.Status)
			}
			s.m.reports.WithLabelValues(provider, label).Inc()
		}
		s.relay.report(context.WithoutCancel(ctx), provider, reports, s.now(), true)
	}
}

// orphanTTL is how long a report without a mapping is kept.
const orphanTTL = 2 * time.Minute

// orphan is a report whose mapping was not found yet.
type orphan struct {
	provider string
	report   providers.DeliveryReport
	since    time.Time
}

// report maps reports to queued reports; those without a mapping become
// orphans (parked since since; kick wakes the loop to time their retry).
func (r *relay) report(ctx context.Context, provider string, reports []providers.DeliveryReport, since time.Time, kick bool) {
	var q []queued
	var missing []orphan
	for _, rep := range reports {
		final, st := odooStatus(rep.Status)
		if st == "" || rep.ProviderID == "" {
			continue
		}
		key := provider + "/" + rep.ProviderID
		v, err := r.s.rec.GetRecord(ctx, nsDLR, key)
		if err != nil {
			if !storage.Is(err, storage.NotFound) {
				r.s.log.Error("sms: reading a delivery-report mapping failed", "provider", provider, "err", err)
			}
			missing = append(missing, orphan{provider: provider, report: rep, since: since})
			continue
		}
		var d dlrRecord
		if json.Unmarshal(v, &d) != nil || !isOdooUUID(d.UUID) || !validWebhook(d.Webhook) {
			continue
		}
		q = append(q, queued{UUID: d.UUID, Status: st, URL: d.Webhook})
		if final {
			if err := r.s.rec.DeleteRecord(ctx, nsDLR, key); err != nil {
				r.s.log.Warn("sms: deleting a delivery-report mapping failed", "err", err)
			}
		}
	}
	if len(q) > 0 {
		r.enqueue(ctx, q)
	}
	if len(missing) > 0 {
		r.mu.Lock()
		r.orphans = append(r.orphans, missing...)
		r.mu.Unlock()
		if kick {
			r.kick() // so that the loop sets its retry timer
		}
	}
}

// retryOrphans looks the parked reports up again; it returns when the
// next retry is due (zero: none parked).
func (r *relay) retryOrphans(ctx context.Context, now time.Time) time.Time {
	r.mu.Lock()
	parked := r.orphans
	r.orphans = nil
	r.mu.Unlock()
	if len(parked) == 0 {
		return time.Time{}
	}
	for _, o := range parked {
		if now.Sub(o.since) > orphanTTL {
			r.s.m.relayed.WithLabelValues("unmatched").Inc()
			continue
		}
		r.report(ctx, o.provider, []providers.DeliveryReport{o.report}, o.since, false)
	}
	if r.orphanCount() == 0 {
		return time.Time{}
	}
	return now.Add(orphanRetry)
}

// orphanRetry is the pace of orphan lookups.
const orphanRetry = time.Second

func (r *relay) orphanCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.orphans)
}

// kick wakes the loop.
func (r *relay) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays queued delivery reports until ctx is done: it loads the
// queue left by a previous run, then posts due reports, batched per
// webhook, retrying failed webhooks with exponential backoff.
func (s *Service) Run(ctx context.Context) { s.relay.run(ctx) }

// queued is one report waiting for its webhook (a record of nsQueue).
type queued struct {
	UUID   string `json:"u"`
	Status string `json:"s"`
	URL    string `json:"w"`
	At     int64  `json:"a"` // unix seconds it was queued
	seq    uint64
}

// queueMeta bounds the sequence numbers of the queue: every report not
// yet delivered has head <= seq < next.
type queueMeta struct {
	Head uint64 `json:"h"`
	Next uint64 `json:"n"`
}

const metaKey = "meta"

// maxQueue bounds the reports kept; beyond, the oldest are dropped.
const maxQueue = 200_000

// relay is the durable queue of reports and the loop that posts them.
type relay struct {
	s      *Service
	client *http.Client
	wake   chan struct{}

	mu      sync.Mutex
	loaded  bool
	meta    queueMeta
	pending map[uint64]queued
	backoff map[string]*hookState // by webhook URL
	orphans []orphan
}

type hookState struct {
	failures int
	next     time.Time
}

func newRelay(s *Service, client *http.Client) *relay {
	return &relay{s: s, client: client, wake: make(chan struct{}, 1), pending: map[uint64]queued{}, backoff: map[string]*hookState{}}
}

func seqKey(seq uint64) string { return fmt.Sprintf("%016x", seq) }

// load reads the queue a previous run left (once).
func (r *relay) load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked(ctx)
}

func (r *relay) loadLocked(ctx context.Context) error {
	if r.loaded {
		return nil
	}
	v, err := r.s.rec.GetRecord(ctx, nsQueue, metaKey)
	switch {
	case storage.Is(err, storage.NotFound):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(v, &r.meta); err != nil {
			return fmt.Errorf("sms: the relay queue's bounds are unreadable: %w", err)
		}
	}
	if r.meta.Next-r.meta.Head > maxQueue {
		r.meta.Head = r.meta.Next - maxQueue
	}
	for seq := r.meta.Head; seq < r.meta.Next; seq++ {
		v, err := r.s.rec.GetRecord(ctx, nsQueue, seqKey(seq))
		if storage.Is(err, storage.NotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var q queued
		if json.Unmarshal(v, &q) != nil {
			continue
		}
		q.seq = seq
		r.pending[seq] = q
	}
	r.loaded = true
	r.s.m.queue.Set(float64(len(r.pending)))
	return nil
}

// enqueue stores reports durably (the bounds first, so that a crash
// between the writes loses nothing already acknowledged) and wakes the
// loop.
func (r *relay) enqueue(ctx context.Context, qs []queued) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The bounds written below must extend those of the previous run.
	if err := r.loadLocked(ctx); err != nil {
		r.s.log.Error("sms: reading the delivery-report queue failed; reports lost", "reports", len(qs), "err", err)
		return
	}
	now := r.s.now().Unix()
	first := r.meta.Next
	r.meta.Next += uint64(len(qs))
	if err := r.putMeta(ctx); err != nil {
		r.meta.Next = first
		r.s.log.Error("sms: queueing delivery reports failed; they are lost", "reports", len(qs), "err", err)
		return
	}
	for i, q := range qs {
		q.At, q.seq = now, first+uint64(i)
		v, _ := json.Marshal(q)
		if err := r.s.rec.PutRecord(ctx, nsQueue, seqKey(q.seq), v, r.s.now().Add(r.s.cfg.Webhooks.MaxAge)); err != nil {
			r.s.log.Error("sms: queueing a delivery report durably failed; kept in memory", "err", err)
		}
		r.pending[q.seq] = q
	}
	for len(r.pending) > maxQueue {
		r.dropLocked(ctx, r.oldestLocked(), "dropped")
	}
	r.s.m.queue.Set(float64(len(r.pending)))
	r.kick()
}

func (r *relay) putMeta(ctx context.Context) error {
	v, _ := json.Marshal(r.meta)
	return r.s.rec.PutRecord(ctx, nsQueue, metaKey, v, time.Time{}) // never expires
}

func (r *relay) oldestLocked() uint64 {
	first := true
	var min uint64
	for seq := range r.pending {
		if first || seq < min {
			min, first = seq, false
		}
	}
	return min
}

// dropLocked removes a report from the queue (delivered or given up).
func (r *relay) dropLocked(ctx context.Context, seq uint64, outcome string) {
	if _, ok := r.pending[seq]; !ok {
		return
	}
	delete(r.pending, seq)
	r.s.m.relayed.WithLabelValues(outcome).Inc()
	if err := r.s.rec.DeleteRecord(ctx, nsQueue, seqKey(seq)); err != nil {
		r.s.log.Warn("sms: deleting a relayed report failed; it may be sent again after a restart", "err", err)
	}
}

// advanceLocked moves the queue's head past the reports that are gone.
func (r *relay) advanceLocked(ctx context.Context) {
	head := r.meta.Next
	if len(r.pending) > 0 {
		head = r.oldestLocked()
	}
	if head != r.meta.Head {
		r.meta.Head = head
		if err := r.putMeta(ctx); err != nil {
			r.s.log.Warn("sms: saving the relay queue's bounds failed", "err", err)
		}
	}
	r.s.m.queue.Set(float64(len(r.pending)))
}

// post is one webhook call: the uuids of reports grouped by status.
type post struct {
	url  string
	seqs []uint64
	body []byte
}

// due returns the calls to make now and when the next report falls due
// (zero: none waiting).
func (r *relay) due(ctx context.Context, now time.Time) ([]post, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	maxAge := r.s.cfg.Webhooks.MaxAge
	byURL := map[string][]queued{}
	var next time.Time
	for seq, q := range r.pending {
		if now.Sub(time.Unix(q.At, 0)) > maxAge {
			r.s.log.Warn("sms: a delivery report was given up after retrying", "max_age", maxAge)
			r.dropLocked(ctx, seq, "expired")
			continue
		}
		if h := r.backoff[q.URL]; h != nil && h.next.After(now) {
			if next.IsZero() || h.next.Before(next) {
				next = h.next
			}
			continue
		}
		byURL[q.URL] = append(byURL[q.URL], q)
	}
	r.advanceLocked(ctx)
	var posts []post
	urls := make([]string, 0, len(byURL))
	for u := range byURL {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	for _, u := range urls {
		qs := byURL[u]
		sort.Slice(qs, func(i, j int) bool { return qs[i].seq < qs[j].seq })
		for len(qs) > 0 {
			n := min(len(qs), r.s.cfg.Webhooks.BatchSize)
			posts = append(posts, newPost(u, qs[:n]))
			qs = qs[n:]
		}
	}
	return posts, next
}

// statusGroup is one element of message_statuses.
type statusGroup struct {
	Status string   `json:"sms_status"`
	UUIDs  []string `json:"uuids"`
}

// newPost builds the JSON-RPC call Odoo's /sms/status takes (§6.4):
// {"params": {"message_statuses": [{"sms_status", "uuids"}]}}, statuses
// in the order first queued.
func newPost(url string, qs []queued) post {
	p := post{url: url}
	idx := map[string]int{}
	var groups []statusGroup
	for _, q := range qs {
		p.seqs = append(p.seqs, q.seq)
		i, ok := idx[q.Status]
		if !ok {
			i = len(groups)
			idx[q.Status] = i
			groups = append(groups, statusGroup{Status: q.Status})
		}
		groups[i].UUIDs = append(groups[i].UUIDs, q.UUID)
	}
	p.body, _ = json.Marshal(map[string]any{
		"jsonrpc": "2.0", "method": "call", "id": int(qs[0].seq%1_000_000_000) + 1,
		"params": map[string]any{"message_statuses": groups},
	})
	return p
}

// errRejected: the database answered a JSON-RPC error; retrying the
// same call would be refused again.
var errRejected = errors.New("the database refused the delivery reports")

// send makes one call. nil: the database answered a result.
func (r *relay) send(ctx context.Context, p post) error {
	ctx, cancel := context.WithTimeout(ctx, r.s.cfg.Webhooks.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.body))
	if err != nil {
		return fmt.Errorf("%w: %v", errRejected, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "iapd-sms")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(b, &env); err != nil {
		return errors.New("the answer is not JSON-RPC")
	}
	if _, bad := env["error"]; bad {
		return errRejected
	}
	if _, ok := env["result"]; !ok {
		return errors.New("the answer has no result")
	}
	return nil
}

// run is the loop.
func (r *relay) run(ctx context.Context) {
	for r.load(ctx) != nil {
		r.s.log.Error("sms: loading the delivery-report queue failed; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.s.cfg.Webhooks.RetryMin):
		}
	}
	for {
		orphansDue := r.retryOrphans(ctx, r.s.now())
		posts, next := r.due(ctx, r.s.now())
		if !orphansDue.IsZero() && (next.IsZero() || orphansDue.Before(next)) {
			next = orphansDue
		}
		for _, p := range posts {
			err := r.send(ctx, p)
			r.done(ctx, p, err)
		}
		if len(posts) > 0 {
			continue // more may have come in meanwhile
		}
		var timer <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(max(next.Sub(r.s.now()), time.Millisecond))
			timer = t.C
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-r.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// done records the fate of a call.
func (r *relay) done(ctx context.Context, p post, err error) {
	ctx = context.WithoutCancel(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		delete(r.backoff, p.url)
		for _, seq := range p.seqs {
			r.dropLocked(ctx, seq, "delivered")
		}
	case errors.Is(err, errRejected):
		delete(r.backoff, p.url)
		r.s.log.Warn("sms: a database refused delivery reports; dropped", "reports", len(p.seqs), "err", err)
		for _, seq := range p.seqs {
			r.dropLocked(ctx, seq, "rejected")
		}
	default:
		h := r.backoff[p.url]
		if h == nil {
			h = &hookState{}
			r.backoff[p.url] = h
		}
		h.failures++
		d := r.s.cfg.Webhooks.RetryMin << min(h.failures-1, 20)
		if d > r.s.cfg.Webhooks.RetryMax || d <= 0 {
			d = r.s.cfg.Webhooks.RetryMax
		}
		h.next = r.s.now().Add(d)
		r.s.m.relayed.WithLabelValues("retried").Add(float64(len(p.seqs)))
		if errors.Is(err, outbound.ErrNonPublicAddress) {
			// Right in production; an Odoo on this host or LAN needs its
			// address allowed (the reports wait in the queue meanwhile).
			r.s.log.Warn("sms: delivery reports not sent: the database's webhook_url is a non-public address, refused by the outbound guard; to allow it set "+allowCIDRsKey+` (e.g. ["127.0.0.1/32"] for an Odoo on this host) and restart; will retry`,
				"setting", allowCIDRsKey, "reports", len(p.seqs), "failures", h.failures, "retry_in", d.String(), "err", err)
			break
		}
		r.s.log.Warn("sms: relaying delivery reports failed; will retry", "reports", len(p.seqs), "failures", h.failures, "retry_in", d.String(), "err", err)
	}
	r.advanceLocked(ctx)
}

// queueLen is the number of reports waiting (tests, metrics).
func (r *relay) queueLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}
