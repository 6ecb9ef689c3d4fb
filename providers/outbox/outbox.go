// Package outbox is the sandbox provider (type "outbox"): it sends
// nothing. Each SMS becomes one JSON line appended to <DataDir>/sms.jsonl
// (fsynced before SendSMS returns) and is reported delivered, through the
// DeliveryReporter sink when one is set so the whole delivery-report flow
// can be tried; each e-mail becomes an RFC 5322 .eml file in
// <DataDir>/mail/, written atomically, once per Email.ID.
//
// It is the embedded default's SMS provider and the alert notifier's
// sandbox. It imports providers, providers/internal/mailmsg (the e-mail
// message, the same as the smtp adapter's) and the standard library only.
package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/iapd/iapd/providers"
)

// Type is the adapter type in the configuration.
const Type = "outbox"

func init() { providers.Register(Type, New) }

// Config is the configuration of an outbox instance; every field is
// optional.
//
//	providers:
//	  sandbox:
//	    type: outbox
//	    from: "iapd alerts <iapd@example.com>"
//	    report_status: delivered
//	    reject_prefixes: ["+999"]
type Config struct {
	// From is the From address of the e-mails; default
	// "iapd <iapd@localhost>".
	From string `yaml:"from"`
	// ReportStatus is the delivery report every SMS gets: "delivered"
	// (default), "undelivered", "expired", "rejected", or "none" (no
	// report: the SMS is reported delivered in the send result).
	ReportStatus string `yaml:"report_status"`
	// RejectPrefixes are E.164 prefixes whose numbers the sandbox refuses
	// (Invalid, code "rejected_number"), to try the failure flows.
	RejectPrefixes []string `yaml:"reject_prefixes"`
}

// Validate checks c and fills defaults.
func (c *Config) Validate() error {
	if c.From == "" {
		c.From = "iapd <iapd@localhost>"
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("from: %v", err)
	}
	switch providers.SMSStatus(c.ReportStatus) {
	case "":
		c.ReportStatus = string(providers.SMSDelivered)
	case providers.SMSDelivered, providers.SMSUndelivered, providers.SMSExpired, providers.SMSRejected, "none":
	default:
		return fmt.Errorf("report_status: %q is not delivered, undelivered, expired, rejected or none", c.ReportStatus)
	}
	for _, p := range c.RejectPrefixes {
		if !rejectRE.MatchString(p) {
			return fmt.Errorf("reject_prefixes: %q is not \"+\" and digits", p)
		}
	}
	return nil
}

var rejectRE = regexp.MustCompile(`^\+[0-9]{1,15}$`)

// Outbox is an outbox instance.
type Outbox struct {
	name   string
	cfg    Config
	from   *mail.Address
	dir    string
	log    *slog.Logger
	now    func() time.Time
	smsMu  sync.Mutex // serialises appends to sms.jsonl
	mailMu sync.Mutex // serialises the exists-check and rename of .eml files

	sink   providers.DeliverySink
	ctx    context.Context // cancelled by Close: stops pending reports
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New is the factory registered for type "outbox".
func New(cfg providers.Config, deps providers.Deps) (providers.Provider, error) {
	var c Config
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if deps.DataDir == "" {
		return nil, errors.New("outbox needs a data directory")
	}
	from, _ := mail.ParseAddress(c.From)
	ctx, cancel := context.WithCancel(context.Background())
	o := &Outbox{name: cfg.Name, cfg: c, from: from, dir: deps.DataDir, log: deps.Logger, now: deps.Now, ctx: ctx, cancel: cancel}
	return o, nil
}

// Name implements providers.Provider.
func (o *Outbox) Name() string { return o.name }

// Type implements providers.Provider.
func (o *Outbox) Type() string { return Type }

// Sandbox implements providers.Sandboxed: the outbox never sends.
func (o *Outbox) Sandbox() bool { return true }

// Close stops the delivery reports not yet given to the sink and waits
// for those under way.
func (o *Outbox) Close() error {
	o.cancel()
	o.wg.Wait()
	return nil
}

// SetSink implements providers.DeliveryReporter.
func (o *Outbox) SetSink(s providers.DeliverySink) { o.sink = s }

// CallbackRoutes implements providers.Callbacks: the outbox has no vendor
// calling back; it reports to the sink itself.
func (o *Outbox) CallbackRoutes() []providers.Callback { return nil }

// SMSFile is the name of the SMS outbox in the data directory.
const SMSFile = "sms.jsonl"

// SMSLine is one line of sms.jsonl.
type SMSLine struct {
	Time       time.Time `json:"time"`
	ID         string    `json:"id"`
	ProviderID string    `json:"provider_id"`
	To         string    `json:"to"`
	Sender     string    `json:"sender,omitempty"`
	Body       string    `json:"body"`
	StatusURL  string    `json:"status_url,omitempty"`
	Report     string    `json:"report"`
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// SendSMS implements providers.SMSSender. A message with a number that is
// not E.164 or an empty body fails Invalid; the others are appended to
// sms.jsonl in one write, fsynced. If the file cannot be opened nothing
// was written (Unavailable); if the write or fsync fails the messages may
// be in the file (Indeterminate).
func (o *Outbox) SendSMS(ctx context.Context, msgs []providers.SMS) ([]providers.SMSResult, error) {
	res := make([]providers.SMSResult, len(msgs))
	if len(msgs) == 0 {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, &providers.Error{Provider: o.name, Kind: providers.Unavailable, Msg: "not sent", Err: err}
	}
	report := o.cfg.ReportStatus != "none" && o.sink != nil
	status := providers.SMSDelivered
	if report {
		status = providers.SMSAccepted
	}
	var buf []byte
	var sent []providers.DeliveryReport
	now := o.now().UTC()
	for i, m := range msgs {
		res[i].ID = m.ID
		switch {
		case !e164.MatchString(m.To):
			res[i].Err = &providers.Error{Provider: o.name, Kind: providers.Invalid, Code: "wrong_number_format", Msg: "number is not E.164"}
			continue
		case o.rejected(m.To):
			res[i].Err = &providers.Error{Provider: o.name, Kind: providers.Invalid, Code: "rejected_number", Msg: "number refused by reject_prefixes"}
			continue
		case m.Body == "":
			res[i].Err = &providers.Error{Provider: o.name, Kind: providers.Invalid, Code: "empty_body", Msg: "empty message"}
			continue
		}
		pid := "OB" + randomHex()
		line, err := json.Marshal(SMSLine{Time: now, ID: m.ID, ProviderID: pid, To: m.To, Sender: m.Sender, Body: m.Body, StatusURL: m.StatusURL, Report: o.cfg.ReportStatus})
		if err != nil {
			res[i].Err = &providers.Error{Provider: o.name, Kind: providers.Invalid, Msg: "unencodable message", Err: err}
			continue
		}
		buf = append(append(buf, line...), '\n')
		res[i].ProviderID, res[i].Status = pid, status
		sent = append(sent, providers.DeliveryReport{ProviderID: pid, Status: providers.SMSStatus(o.cfg.ReportStatus)})
	}
	if len(buf) == 0 {
		return res, nil
	}
	if err := o.appendSMS(buf); err != nil {
		for i := range res {
			if res[i].Err == nil {
				res[i] = providers.SMSResult{ID: res[i].ID, Err: err}
			}
		}
		return res, nil
	}
	o.log.Info("sms written to the outbox", "messages", len(sent), "file", SMSFile)
	if report {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			if o.ctx.Err() == nil {
				o.sink(o.ctx, o.name, sent)
			}
		}()
	}
	return res, nil
}

func (o *Outbox) rejected(to string) bool {
	for _, p := range o.cfg.RejectPrefixes {
		if strings.HasPrefix(to, p) {
			return true
		}
	}
	return false
}

func (o *Outbox) appendSMS(buf []byte) *providers.Error {
	o.smsMu.Lock()
	defer o.smsMu.Unlock()
	f, err := os.OpenFile(filepath.Join(o.dir, SMSFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return &providers.Error{Provider: o.name, Kind: providers.Unavailable, Msg: "outbox not writable", Err: err}
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &providers.Error{Provider: o.name, Kind: providers.Indeterminate, Msg: "outbox write failed", Err: err}
	}
	return nil
}

func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// Interface guards.
var (
	_ providers.SMSSender        = (*Outbox)(nil)
	_ providers.DeliveryReporter = (*Outbox)(nil)
	_ providers.EmailSender      = (*Outbox)(nil)
	_ providers.Sandboxed        = (*Outbox)(nil)
)
