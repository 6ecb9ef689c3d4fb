package proxy

import (
	"encoding/json"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/iapd/iapd/rpc"
	"github.com/iapd/iapd/storage"
)

// accountsInfoPath is the account route that reads several accounts of
// different services in one call (§4.4: the 18.0+ account form).
const accountsInfoPath = "/iap/1/get-accounts-information"

// refusedAccount is what the account form shows for an account of a
// refused service: no credit, not registered (the three keys 18.0+
// require, §4.4).
var refusedAccount = json.RawMessage(`{"balance":0,"warning_threshold":0,"registered":"unregistered"}`)

// accountsInformation answers §4.4 account by account: the accounts of a
// forwarded service are asked upstream, those of a refused service are
// "unregistered, 0" without touching the ledger, the others are asked of
// the local handler; the answers are merged into one object keyed by the
// tokens sent. When every account is forwarded, the request and answer
// pass through unchanged. An upstream AccessError is passed on as is
// (what Odoo's own server would have answered), another error name
// becomes the route's outage answer (passError); an upstream failure
// leaves its accounts out of the answer (the form then shows its local
// data, as on any failure of this route).
func (p *Proxy) accountsInformation(ctx *fasthttp.RequestCtx, e *entry, path string, next fasthttp.RequestHandler) {
	var env struct {
		ID     json.RawMessage            `json:"id"`
		Params map[string]json.RawMessage `json:"params"`
	}
	var items []json.RawMessage
	if json.Unmarshal(ctx.PostBody(), &env) != nil || json.Unmarshal(env.Params["iap_accounts"], &items) != nil {
		next(ctx) // the local handler says what is wrong with it
		return
	}
	var up, local []json.RawMessage
	var refused []string
	for _, it := range items {
		var a struct {
			Token   string `json:"token"`
			Service string `json:"service"`
		}
		if json.Unmarshal(it, &a) != nil {
			next(ctx)
			return
		}
		switch p.effective(p.modeOf(storage.ServiceName(a.Service))) {
		case Upstream:
			up = append(up, it)
		case Refuse:
			refused = append(refused, a.Token)
		default:
			local = append(local, it)
		}
	}
	id := env.ID
	if string(id) == "null" {
		id = nil
	}
	switch {
	case len(up) == 0 && len(refused) == 0:
		next(ctx)
		return
	case len(local) == 0 && len(refused) == 0:
		p.forward(ctx, p.accountsEntry(e), path, decodeEnvelope(ctx.PostBody()))
		return
	}
	merged := map[string]json.RawMessage{}
	for _, t := range refused {
		merged[t] = refusedAccount
	}
	if len(local) > 0 {
		ans, ok := p.askLocal(ctx, next, rebuild(env.ID, env.Params, local))
		if !ok {
			writeJSON(ctx, ans) // the local error, as is
			return
		}
		for k, v := range ans2map(ans) {
			merged[k] = v
		}
	}
	if len(up) > 0 {
		ue := p.accountsEntry(e)
		body := rebuild(env.ID, env.Params, up)
		denv := decodeEnvelope(body)
		status, ctype, ans, outcome, _ := p.exchange(ctx, ue, path, denv, body)
		switch outcome {
		case OutcomeOK:
			for k, v := range ans2map(ans) {
				merged[k] = v
			}
		case OutcomeRPCError:
			p.passError(ctx, ue, denv, status, ctype, ans)
			return
		}
	}
	res, err := json.Marshal(merged)
	if err != nil {
		writeJSON(ctx, p.errs.AppendErrorEnvelope(nil, id, e.label, storage.Wrap("proxy", storage.Internal, err)))
		return
	}
	writeJSON(ctx, rpc.AppendResultEnvelope(nil, id, res))
}

// accountsEntry is e as forwarded: to iap.endpoint's role.
func (p *Proxy) accountsEntry(e *entry) *entry {
	ue := *e
	ue.mode, ue.configured = Upstream, Upstream
	return &ue
}

// askLocal runs the local handler on body and returns its answer, false
// when that is an error envelope. The response is reset afterwards.
func (p *Proxy) askLocal(ctx *fasthttp.RequestCtx, next fasthttp.RequestHandler, body []byte) ([]byte, bool) {
	ctx.Request.SetBody(body)
	next(ctx)
	ans := append([]byte(nil), ctx.Response.Body()...)
	ctx.Response.Reset()
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(ans, &env) != nil || env.Error != nil {
		return ans, false
	}
	return ans, true
}

// rebuild is a request envelope with params whose iap_accounts is items.
func rebuild(id json.RawMessage, params map[string]json.RawMessage, items []json.RawMessage) []byte {
	ps := make(map[string]json.RawMessage, len(params))
	for k, v := range params {
		ps[k] = v
	}
	a, _ := json.Marshal(items) // raw items: valid JSON
	ps["iap_accounts"] = a
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": id, "params": ps})
	if err != nil {
		panic(fmt.Sprintf("proxy: rebuilding a request: %v", err)) // raw JSON that was decoded: cannot happen
	}
	return b
}

// ans2map returns the result object of a success envelope (nil if it is
// not an object).
func ans2map(ans []byte) map[string]json.RawMessage {
	var env struct {
		Result map[string]json.RawMessage `json:"result"`
	}
	if json.Unmarshal(ans, &env) != nil {
		return nil
	}
	return env.Result
}
