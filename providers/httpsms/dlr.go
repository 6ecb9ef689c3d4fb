package httpsms

import (
	"context"
	"mime"
	"net/http"
	"net/url"

	"github.com/iapd/iapd/providers"
	"github.com/iapd/iapd/providers/vendorhttp"
)

// SetSink implements providers.DeliveryReporter.
func (h *HTTP) SetSink(s providers.DeliverySink) { h.sink = s }

// StatusPath returns the path of the delivery-report callback of the
// instance named name: the SMS service gives <public_url><StatusPath> as
// SMS.StatusURL.
func StatusPath(name string) string { return "/providers/" + name + "/status" }

// CallbackRoutes implements providers.Callbacks: the delivery-report
// callback, when dlr.secret is set.
func (h *HTTP) CallbackRoutes() []providers.Callback {
	if h.cfg.DLR.Secret == "" {
		return nil
	}
	return []providers.Callback{{Path: StatusPath(h.name), Handler: h.report}}
}

// report handles a delivery report: GET (Kannel) or POST form, the
// fields in the query or the body. Without the shared secret it is
// answered 403 and ignored.
func (h *HTTP) report(ctx context.Context, req *providers.CallbackRequest) providers.CallbackResponse {
	u, err := url.Parse(req.URL)
	if err != nil {
		return text(http.StatusBadRequest, "bad URL")
	}
	params := u.Query()
	if req.Method == http.MethodPost && len(req.Body) > 0 {
		if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
			body, err := url.ParseQuery(string(req.Body))
			if err != nil {
				return text(http.StatusBadRequest, "bad form")
			}
			for k, vs := range body {
				if _, inURL := params[k]; !inURL {
					params[k] = vs
				}
			}
		}
	}
	d := h.cfg.DLR
	if !vendorhttp.Equal(params.Get(d.SecretParam), d.Secret) {
		h.log.Warn("delivery report refused: bad secret", "remote", req.Remote)
		return text(http.StatusForbidden, "forbidden")
	}
	id, raw := params.Get(d.IDParam), params.Get(d.StatusParam)
	st, ok := h.cc.statusMap[raw]
	if !ok || id == "" {
		h.log.Info("delivery report ignored", "status", raw)
		return text(http.StatusOK, "OK")
	}
	code := ""
	if d.CodeParam != "" {
		code = params.Get(d.CodeParam)
		if len(code) > 100 {
			code = code[:100]
		}
	}
	if h.sink != nil {
		h.sink(ctx, h.name, []providers.DeliveryReport{{ProviderID: id, Status: st, Code: code}})
	}
	return text(http.StatusOK, "OK")
}

func text(status int, body string) providers.CallbackResponse {
	return providers.CallbackResponse{Status: status, ContentType: "text/plain; charset=utf-8", Body: []byte(body)}
}
