package snailmail

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/iapd/iapd/providers/providertest"
	"github.com/iapd/iapd/rpc/snailmail/pdf/pdftest"
	"github.com/iapd/iapd/storage"
)

// refusalCounter records Refused calls.
type refusalCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *refusalCounter) Refused(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[reason]++
}

func (c *refusalCounter) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

// TestHostilePDF (issue 13, PROTOCOL §7): a PDF that cannot be read, or
// not within its budget of steps, is answered FORMAT_ERROR in-band (Odoo:
// "attachment rejected"; not retried by its cron) before anything is
// held or claimed: the credit is untouched, nothing is posted, and the
// same letter with a good PDF is then printed. A budget refusal is
// counted as pdf_budget.
func TestHostilePDF(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings Settings
		budget   bool // refused for its budget
	}{
		{"default budget", Settings{}, false},
		{"small budget", Settings{PDFMaxSteps: 50_000}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeSender{name: "fake"}
			e := newEnv(t, tc.settings, fake)
			rc := &refusalCounter{}
			e.svc.refusals = rc
			e.recharge(tok, "5")
			for i, shape := range pdftest.Shapes {
				r := e.print(body(tok, true, nil, doc(i, 100+i, "BE", pdftest.Hostile(shape, 256<<10))))
				if r.errorOf(0) != codeFormat || r.RequestCode != 200 {
					t.Fatalf("%s: %s", shape, r.raw)
				}
				e.want(tok, "5", "0", "0")
			}
			if fake.calls() != 0 {
				t.Fatalf("%d hostile letters posted", fake.calls())
			}
			// Nothing was claimed: the same hostile letter again is read
			// and refused again, not answered UNKNOWN_ERROR as a letter
			// being sent.
			if r := e.print(body(tok, true, nil, doc(0, 100, "BE", pdftest.Hostile(pdftest.Shapes[0], 256<<10)))); r.errorOf(0) != codeFormat {
				t.Fatalf("the first hostile letter again: %s", r.raw)
			}
			if got := rc.get("pdf_budget"); tc.budget && got != len(pdftest.Shapes)+1 || !tc.budget && got != 0 {
				t.Fatalf("pdf_budget refusals: %d", got)
			}
			// Nothing was claimed: the same letters with a good PDF go.
			r := e.print(body(tok, true, nil, doc(0, 100, "BE", providertest.OnePagePDF)))
			if r.sendID(0) == "" {
				t.Fatalf("good PDF after hostile ones: %s", r.raw)
			}
			e.want(tok, "4", "0", "1")
		})
	}
}

// TestPDFContextDone: when the request's context is done while the PDF
// is read, the document fails the call with Unavailable wrapping the
// context's error, having held and claimed nothing.
func TestPDFContextDone(t *testing.T) {
	fake := &fakeSender{name: "fake"}
	e := newEnv(t, Settings{}, fake)
	e.recharge(tok, "5")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	raw, _ := json.Marshal(doc(1, 10, "BE", pdftest.Hostile("nested_strings", 64<<10)))
	res, cost, err := e.svc.printOne(ctx, call{tok: tok, dbuuid: "db", batch: true}, raw)
	if !storage.Is(err, storage.Unavailable) || !errors.Is(err, context.Canceled) || cost != 0 {
		t.Fatalf("printOne = %+v, %v, %v; want Unavailable wrapping context.Canceled", res, cost, err)
	}
	e.want(tok, "5", "0", "0")
	if fake.calls() != 0 {
		t.Fatal("posted")
	}
	r := e.print(body(tok, true, nil, doc(1, 10, "BE", providertest.OnePagePDF)))
	if r.sendID(0) == "" {
		t.Fatalf("after a cancelled read: %s", r.raw)
	}
}

func TestPDFBudgetSettings(t *testing.T) {
	for _, y := range []string{"pdf_steps_per_byte: -1", "pdf_max_steps: -5"} {
		var s Settings
		if err := yaml.Unmarshal([]byte(y), &s); err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", y)
		}
	}
	var s Settings
	if err := yaml.Unmarshal([]byte("pdf_steps_per_byte: 8\npdf_max_steps: 10000000"), &s); err != nil || s.Validate() != nil {
		t.Fatal(err)
	}
	if b := s.pdfBudget(); b.For(1000) != 8*1000+(1<<20) || b.For(4<<20) != 10000000 {
		t.Fatalf("budget %+v: %d %d", b, b.For(1000), b.For(1<<20))
	}
}
