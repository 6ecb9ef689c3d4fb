package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// adminClient sets up the run through iapd's admin API (rpc/admin).
type adminClient struct {
	base  string // http://ops-address
	token string
	http  http.Client
}

func (a *adminClient) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Kind, Message string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return resp.StatusCode, fmt.Errorf("%s %s: HTTP %d %s: %s", method, path, resp.StatusCode, e.Error.Kind, e.Error.Message)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// ensureService creates the load service if needed and returns a fresh key
// (creating, or rotating when the service exists: keys are shown only once).
func (a *adminClient) ensureService(ctx context.Context, name string) (string, error) {
	var out struct {
		Key string `json:"key"`
	}
	code, err := a.do(ctx, "POST", "/v1/services", map[string]any{"name": name, "auto_register": true}, &out)
	if code == http.StatusConflict {
		_, err = a.do(ctx, "POST", "/v1/services/"+name+"/key", map[string]any{}, &out)
	}
	if err != nil {
		return "", err
	}
	if out.Key == "" {
		return "", fmt.Errorf("admin API returned no key for service %s", name)
	}
	return out.Key, nil
}

// credit recharges an account, idempotently on ref.
func (a *adminClient) credit(ctx context.Context, service, token, amount, ref string) error {
	_, err := a.do(ctx, "POST", "/v1/account/credit", map[string]any{
		"service": service, "token": token, "amount": json.Number(amount), "ref": ref, "description": "iapload setup",
	}, nil)
	return err
}
