// Package fallback holds the in-band answers iapd makes for a route it does
// not serve itself: the refusal (the route's service is refused) and the
// outage (its upstream failed) in the shape the route's client takes
// (PROTOCOL §1, §4–§11). A route declares its answer next to its path
// (rpc.Route.Answer); the proxy reads it from there.
//
// It imports nothing of the project.
package fallback

import "encoding/json"

// Answer is how a route's client takes a refusal or an outage iapd
// answers itself. The zero Answer is Odoo's error envelope.
type Answer struct {
	// Doc says what a refused client sees (iapd routes); empty: the
	// error envelope.
	Doc string
	// Build returns the raw JSON result for a refusal (refused) or an
	// upstream failure, with msg where the client can show text; false
	// means answer the error envelope instead (no in-band form for that
	// case, or params are not what the route sends). Nil: always false.
	Build func(params json.RawMessage, refused bool, msg string) ([]byte, bool)
}

// ErrorDoc is what a client of the error envelope sees when refused.
const ErrorDoc = "JSON-RPC AccessError with the refusal text"

// Describe says what the refused client sees.
func (a Answer) Describe() string {
	if a.Doc == "" {
		return ErrorDoc
	}
	return a.Doc
}

// InBand returns the raw JSON result of a (see Build).
func (a Answer) InBand(params json.RawMessage, refused bool, msg string) ([]byte, bool) {
	if a.Build == nil {
		return nil, false
	}
	return a.Build(params, refused, msg)
}

// Upstream failures are answered in-band only where the client expects
// per-item states (SMS, snailmail, SMS wizards): an error there would cost
// every SMS of the batch all the same (§6.1) but raise in some callers.
// Elsewhere (refusedOnly) the error envelope takes the client's own error
// path, which retries later (reveal cron, §11) or says the service could
// not be reached (autocomplete, enrichment, mining).

// refusedOnly answers res to a refusal, the error envelope to an outage.
func refusedOnly(doc string, res func(params json.RawMessage, msg string) ([]byte, bool)) Answer {
	return Answer{Doc: doc, Build: func(params json.RawMessage, refused bool, msg string) ([]byte, bool) {
		if !refused {
			return nil, false
		}
		return res(params, msg)
	}}
}

func constant(s string) func(json.RawMessage, string) ([]byte, bool) {
	return func(json.RawMessage, string) ([]byte, bool) { return []byte(s), true }
}

const smsDoc = "each SMS in error: unregistered (“no eligible IAP account”)"

// SMSByResID is 16.0's /iap/sms/2/send: per-message state by res_id (§6.1).
var SMSByResID = Answer{Doc: smsDoc, Build: func(params json.RawMessage, refused bool, _ string) ([]byte, bool) {
	var p struct {
		Messages []struct {
			ResID json.RawMessage `json:"res_id"`
		} `json:"messages"`
	}
	if json.Unmarshal(params, &p) != nil || p.Messages == nil {
		return nil, false
	}
	state := "server_error"
	if refused {
		state = "unregistered"
	}
	out := make([]map[string]any, 0, len(p.Messages))
	for _, m := range p.Messages {
		id := m.ResID
		if len(id) == 0 {
			id = json.RawMessage("null")
		}
		out = append(out, map[string]any{"res_id": id, "state": state, "credit": 0})
	}
	return marshal(out)
}}

// SMSByUUID is the 17.0+ send: per-number state by uuid (§6.2).
var SMSByUUID = Answer{Doc: smsDoc, Build: func(params json.RawMessage, refused bool, msg string) ([]byte, bool) {
	var p struct {
		Messages []struct {
			Numbers []struct {
				UUID json.RawMessage `json:"uuid"`
			} `json:"numbers"`
		} `json:"messages"`
	}
	if json.Unmarshal(params, &p) != nil || p.Messages == nil {
		return nil, false
	}
	state := "server_error"
	if refused {
		state = "unregistered"
	}
	out := []map[string]any{}
	for _, m := range p.Messages {
		for _, n := range m.Numbers {
			if len(n.UUID) == 0 {
				continue // the client only updates the uuids it gets back
			}
			// failure_reason is read by 19.0 (§6.2); older clients
			// ignore keys they do not know.
			out = append(out, map[string]any{"uuid": n.UUID, "state": state, "credit": 0, "failure_reason": msg})
		}
	}
	return marshal(out)
}}

// SMSAccount is the 18.0+ registration wizards: {"state": …} (§6.3).
var SMSAccount = Answer{Doc: "wizard state closed_feature", Build: func(_ json.RawMessage, refused bool, _ string) ([]byte, bool) {
	if refused {
		return []byte(`{"state":"closed_feature"}`), true
	}
	return []byte(`{"state":"unknown_error"}`), true
}}

// Snailmail is the per-letter error code of /iap/snailmail/1/print (§7).
var Snailmail = Answer{Doc: "each letter in error UNKNOWN_ERROR", Build: func(params json.RawMessage, _ bool, _ string) ([]byte, bool) {
	var p struct {
		Options   json.RawMessage `json:"options"`
		Documents []struct {
			LetterID json.RawMessage `json:"letter_id"`
		} `json:"documents"`
	}
	if json.Unmarshal(params, &p) != nil || p.Documents == nil {
		return nil, false
	}
	docs := make([]map[string]any, 0, len(p.Documents))
	for _, d := range p.Documents {
		id := d.LetterID
		if len(id) == 0 {
			id = json.RawMessage("null")
		}
		docs = append(docs, map[string]any{"letter_id": id, "sent": false, "error": "UNKNOWN_ERROR"})
	}
	opts := p.Options
	if len(opts) == 0 || string(opts) == "null" {
		opts = json.RawMessage("{}")
	}
	return marshal(map[string]any{
		"request_code": 200, "total_cost": 0, "credit_error": false,
		"request": map[string]any{"documents": docs, "options": opts},
	})
}}

// Answers to a refusal only (§8–§11, §4.1).
var (
	// PASearch: old autocomplete search, no suggestions (§8.1).
	PASearch = refusedOnly("no suggestions", constant(`[]`))
	// PAEnrich: old autocomplete enrich, no company_data (§8.1).
	PAEnrich = refusedOnly("no company data", constant(`{"credit_error":false}`))
	// PASearchVAT: old autocomplete search_vat, false ⇒ VIES (§8.1).
	PASearchVAT = refusedOnly("no company data", constant(`false`))
	// PAUpdate: old autocomplete update, result ignored (§8.1).
	PAUpdate = refusedOnly("accepted, ignored", constant(`true`))
	// DnBSearch: D&B search, {"data": [], "error": …} (§8.2). data must be
	// a list: a bare error-less object crashes 18.0/19.0 (fixtures
	// odoo18 nc 018).
	DnBSearch = refusedOnly("no suggestions", func(_ json.RawMessage, msg string) ([]byte, bool) {
		return marshal(map[string]any{"data": []any{}, "error": msg})
	})
	// DnBEnrich: D&B enrich, {"error": …} (§8.2).
	DnBEnrich = refusedOnly("no company data", func(_ json.RawMessage, msg string) ([]byte, bool) {
		return marshal(map[string]any{"error": msg})
	})
	// Enrich: lead enrichment, every key false = no data (§9).
	Enrich = refusedOnly("no data found for each lead", func(params json.RawMessage, _ string) ([]byte, bool) {
		var p struct {
			Domains map[string]json.RawMessage `json:"domains"`
		}
		if json.Unmarshal(params, &p) != nil || p.Domains == nil {
			return nil, false
		}
		out := make(map[string]bool, len(p.Domains))
		for k := range p.Domains {
			out[k] = false
		}
		return marshal(out)
	})
	// Reveal: website reveal, nothing revealed (§11).
	Reveal = refusedOnly("nothing revealed", constant(`{"reveal_data":[],"credit_error":false}`))
	// Balance: the balance of a refused service, 0 (§4.1: never an error).
	Balance = refusedOnly("a balance of 0", constant(`0`))
)

func marshal(v any) ([]byte, bool) {
	b, err := json.Marshal(v)
	return b, err == nil
}
