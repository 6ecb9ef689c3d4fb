package proxy

import (
	"encoding/json"
)

// answerKind is how a route's client takes a refusal or a failure that
// iapd answers itself.
type answerKind int

const (
	// answerError: Odoo's error envelope (the client's generic error path).
	answerError       answerKind = iota
	answerSMS2                   // 16.0 /iap/sms/2/send: per-message state by res_id (§6.1)
	answerSMS3                   // 17.0+ send: per-number state by uuid (§6.2)
	answerSMSAccount             // 18.0+ registration wizards: {"state": …} (§6.3)
	answerSnailmail              // per-letter error code (§7)
	answerPASearch               // old autocomplete search: [] (§8.1)
	answerPAEnrich               // old autocomplete enrich: no company_data (§8.1)
	answerPASearchVAT            // old autocomplete search_vat: false ⇒ VIES (§8.1)
	answerPAUpdate               // old autocomplete update: result ignored (§8.1)
	answerDnBSearch              // D&B search: {"data": [], "error": …} (§8.2)
	answerDnBEnrich              // D&B enrich: {"error": …} (§8.2)
	answerEnrich                 // lead enrichment: every key false = no data (§9)
	answerReveal                 // website reveal: nothing revealed (§11)
	answerBalance                // balance of a refused service: 0 (§4.1: never an error)
)

// answers maps route paths to how their clients take an answer made here.
// Paths not listed get the error envelope: lead mining (§10.3: the wizard
// shows "Your request could not be executed"), the provider routes (§5),
// the account routes (§4), where rpc's error table names it AccessError
// (Route.Account): the client returns -1 or logs it, never UserError.
var answers = map[string]answerKind{
	"/iap/sms/2/send":                       answerSMS2,
	"/iap/sms/3/send":                       answerSMS3,
	"/api/sms/3/send":                       answerSMS3,
	"/api/sms/1/account/create":             answerSMSAccount,
	"/api/sms/2/account/verify":             answerSMSAccount,
	"/api/sms/1/account/update_sender":      answerSMSAccount,
	"/iap/snailmail/1/print":                answerSnailmail,
	"/iap/partner_autocomplete/search":      answerPASearch,
	"/iap/partner_autocomplete/enrich":      answerPAEnrich,
	"/iap/partner_autocomplete/search_vat":  answerPASearchVAT,
	"/iap/partner_autocomplete/update":      answerPAUpdate,
	"/api/dnb/1/search_by_name":             answerDnBSearch,
	"/api/dnb/1/search_by_vat":              answerDnBSearch,
	"/api/dnb/1/enrich_by_duns":             answerDnBEnrich,
	"/api/dnb/1/enrich_by_gst":              answerDnBEnrich,
	"/api/dnb/1/enrich_by_domain":           answerDnBEnrich,
	"/iap/clearbit/1/lead_enrichment_email": answerEnrich,
	"/iap/clearbit/1/reveal":                answerReveal,
	"/iap/1/balance":                        answerBalance,
}

// describe says what the client sees, for the startup report and iapd
// routes.
func (k answerKind) describe() string {
	switch k {
	case answerSMS2, answerSMS3:
		return "each SMS in error: unregistered (“no eligible IAP account”)"
	case answerSMSAccount:
		return "wizard state closed_feature"
	case answerSnailmail:
		return "each letter in error UNKNOWN_ERROR"
	case answerPASearch, answerDnBSearch:
		return "no suggestions"
	case answerPAEnrich, answerDnBEnrich, answerPASearchVAT:
		return "no company data"
	case answerPAUpdate:
		return "accepted, ignored"
	case answerEnrich:
		return "no data found for each lead"
	case answerReveal:
		return "nothing revealed"
	case answerBalance:
		return "a balance of 0"
	}
	return "JSON-RPC AccessError with the refusal text"
}

// inband returns the raw JSON result the client of kind takes for a
// refusal (refused) or an upstream failure, with msg where the client can
// show text; false means answer the error envelope instead (the kind has
// no in-band form for that case, or params are not what the route sends).
//
// Upstream failures are answered in-band only where the client expects
// per-item states (SMS, snailmail, SMS wizards): an error there would cost
// every SMS of the batch all the same (§6.1) but raise in some callers.
// Elsewhere the error envelope takes the client's own error path, which
// retries later (reveal cron, §11) or says the service could not be
// reached (autocomplete, enrichment, mining).
func inband(kind answerKind, params json.RawMessage, refused bool, msg string) ([]byte, bool) {
	switch kind {
	case answerSMS2:
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
	case answerSMS3:
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
	case answerSMSAccount:
		if refused {
			return []byte(`{"state":"closed_feature"}`), true
		}
		return []byte(`{"state":"unknown_error"}`), true
	case answerSnailmail:
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
	}
	if !refused {
		return nil, false
	}
	switch kind {
	case answerPASearch:
		return []byte(`[]`), true
	case answerPAEnrich:
		return []byte(`{"credit_error":false}`), true
	case answerPASearchVAT:
		return []byte(`false`), true
	case answerPAUpdate:
		return []byte(`true`), true
	case answerDnBSearch:
		// data must be a list: a bare error-less object crashes 18.0/19.0
		// (fixtures odoo18 nc 018).
		return marshal(map[string]any{"data": []any{}, "error": msg})
	case answerDnBEnrich:
		return marshal(map[string]any{"error": msg})
	case answerEnrich:
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
	case answerReveal:
		return []byte(`{"reveal_data":[],"credit_error":false}`), true
	case answerBalance:
		return []byte(`0`), true
	}
	return nil, false
}

func marshal(v any) ([]byte, bool) {
	b, err := json.Marshal(v)
	return b, err == nil
}
