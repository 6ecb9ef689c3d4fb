package proxy

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// The account routes whose request names no service but whose answer
// depends on every service's mode (PROTOCOL §4.2, §4.3, §4.5): Odoo sends
// tokens only, and a token's accounts may live here or upstream.
const (
	servicesTokenPath = "/iap/services-token"                // §4.2, 17.0: the account list
	warningOdooPath   = "/iap/update-warning-odoo"           // §4.3, 17.0: alert settings
	warningEmailPath  = "/iap/1/update-warning-email-alerts" // §4.5, 18.0+: alert settings
)

// combineKind is how a route that names no service is answered when some
// service is not local.
type combineKind int

const (
	combineNone  combineKind = iota
	combineList              // services-token: local items of local services + upstream items of forwarded services
	combineWrite             // alert settings: applied locally and forwarded; true only if both took it
)

// combines are the account routes answered by combining.
var combines = map[string]combineKind{
	servicesTokenPath: combineList,
	warningOdooPath:   combineWrite,
	warningEmailPath:  combineWrite,
}

// accountInfoKeys are the keys Odoo 17's iap.account.info accepts, with
// the JSON type each must have (§4.2; false and null also pass): any
// other key makes the 17.0 list view fail, so an upstream item is kept
// only with these.
var accountInfoKeys = map[string]byte{
	"account_token": '"', "balance": '0', "account_uuid_hashed": '"', "service_name": '"',
	"description": '"', "warn_me": 'b', "warning_threshold": '0', "warning_email": '"', "unit_name": '"',
}

// servicesToken answers §4.2 by combining: the local handler's items of
// the services served here, then the items of the forwarded services from
// one upstream call (the same request), in the order of the tokens sent
// and by service within a token; refused services are left out. An
// upstream that fails or answers an error leaves the forwarded accounts
// out (the 17.0 list then shows its local data for them, as for an
// unreachable IAP); a local error is answered as is.
func (p *Proxy) servicesToken(ctx *fasthttp.RequestCtx, e *entry, path string, next fasthttp.RequestHandler) {
	body := bytes.Clone(ctx.PostBody())
	var req struct {
		ID     json.RawMessage `json:"id"`
		Params struct {
			Tokens []string `json:"iap_accounts"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &req) != nil || req.Params.Tokens == nil || (e.route.MaxItems > 0 && len(req.Params.Tokens) > e.route.MaxItems) {
		next(ctx) // the local handler says what is wrong with it
		return
	}
	id := req.ID
	if string(id) == "null" {
		id = nil
	}
	ans, ok := p.askLocal(ctx, next, body)
	if !ok {
		writeJSON(ctx, ans)
		return
	}
	items := map[string][]json.RawMessage{} // by token
	add := func(list []json.RawMessage, mode Mode, check bool) {
		sent := map[string]bool{}
		for _, t := range req.Params.Tokens {
			sent[t] = true
		}
		for _, it := range list {
			tok, svc, ok := accountInfoOf(it, check)
			if !ok || !sent[tok] || p.effective(p.modeOf(storage.ServiceName(svc))) != mode {
				continue
			}
			items[tok] = append(items[tok], it)
		}
	}
	add(resultList(ans), Local, false)
	if p.anyUp {
		ue := p.accountsEntry(e)
		_, _, up, outcome, _ := p.exchange(ctx, ue, path, decodeEnvelope(body), body)
		if outcome == OutcomeOK {
			list := resultList(up)
			if list == nil {
				p.log.Warn("upstream services-token answer is not a list", "upstream", ue.base)
			}
			add(list, Upstream, true)
		}
	}
	out := []json.RawMessage{}
	done := map[string]bool{}
	for _, t := range req.Params.Tokens {
		if done[t] {
			continue
		}
		done[t] = true
		its := items[t]
		slices.SortStableFunc(its, func(a, b json.RawMessage) int {
			_, sa, _ := accountInfoOf(a, false)
			_, sb, _ := accountInfoOf(b, false)
			switch {
			case sa < sb:
				return -1
			case sa > sb:
				return 1
			}
			return 0
		})
		out = append(out, its...)
	}
	res, _ := json.Marshal(out) // raw items that were decoded: valid JSON
	writeJSON(ctx, rpc.AppendResultEnvelope(nil, id, res))
}

// accountInfoOf returns an iap.account.info item's token and service;
// with check, false unless the item has only the keys 17.0 accepts, each
// of its type (§4.2).
func accountInfoOf(it json.RawMessage, check bool) (token, service string, ok bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(it, &m) != nil {
		return "", "", false
	}
	if json.Unmarshal(m["account_token"], &token) != nil || json.Unmarshal(m["service_name"], &service) != nil {
		return "", "", false
	}
	if check {
		for k, v := range m {
			want, known := accountInfoKeys[k]
			if !known || len(v) == 0 {
				return "", "", false
			}
			// false and null are Odoo's empty value for any field type
			// (create() stores them as empty, 0.0 or False).
			switch c := v[0]; want {
			case '"':
				ok = c == '"' || c == 'f' || c == 'n'
			case '0':
				ok = c == '-' || (c >= '0' && c <= '9') || c == 'f' || c == 'n'
			case 'b':
				ok = c == 't' || c == 'f' || c == 'n'
			}
			if !ok {
				return "", "", false
			}
		}
	}
	return token, service, true
}

// resultList returns the result of a success envelope if it is a list.
func resultList(ans []byte) []json.RawMessage {
	var env struct {
		Result []json.RawMessage `json:"result"`
	}
	if json.Unmarshal(ans, &env) != nil {
		return nil
	}
	return env.Result
}

// alertSettings answers §4.3 and §4.5, which carry a token and no
// service: the settings are applied by the local handler (to the
// accounts the token has here) and the same request is forwarded (to
// those it has upstream). The answer is true only if both answered true;
// a local error is answered as is (nothing forwarded), an upstream error
// envelope passed on, an upstream failure answered as an outage of an
// account route (AccessError: Odoo logs it, §4.3, §4.5).
func (p *Proxy) alertSettings(ctx *fasthttp.RequestCtx, e *entry, path string, next fasthttp.RequestHandler) {
	body := bytes.Clone(ctx.PostBody())
	env := decodeEnvelope(body)
	ans, ok := p.askLocal(ctx, next, body)
	if !ok {
		writeJSON(ctx, ans)
		return
	}
	localTrue := bytes.Equal(resultOf(ans), []byte("true"))
	ue := p.accountsEntry(e)
	status, ctype, up, outcome, err := p.exchange(ctx, ue, path, env, body)
	switch outcome {
	case OutcomeOK:
	case OutcomeRPCError:
		p.passError(ctx, ue, env, status, ctype, up)
		return
	default:
		p.fail(ctx, ue, env, outcome, err)
		return
	}
	both := "false"
	if localTrue && bytes.Equal(resultOf(up), []byte("true")) {
		both = "true"
	}
	writeJSON(ctx, rpc.AppendResultEnvelope(nil, env.id, []byte(both)))
}

// resultOf returns the raw result of a success envelope, nil if none.
func resultOf(ans []byte) json.RawMessage {
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal(ans, &env) != nil {
		return nil
	}
	return bytes.TrimSpace(env.Result)
}
