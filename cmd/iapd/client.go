package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultOps is the admin API address the CLI calls when neither -ops nor
// $IAPD_OPS says otherwise.
const DefaultOps = "127.0.0.1:9070"

// adminClient calls iapd's admin API (package rpc/admin).
type adminClient struct {
	base  string // http://host:port
	token string
	hc    *http.Client
}

// clientFlags are the flags every admin command takes.
type clientFlags struct {
	ops  *string
	json *bool
}

func addClientFlags(fs *flag.FlagSet, getenv func(string) string) clientFlags {
	def := getenv("IAPD_OPS")
	if def == "" {
		def = DefaultOps
	}
	return clientFlags{
		ops:  fs.String("ops", def, "`address` of iapd's ops listener (host:port or URL)"),
		json: fs.Bool("json", false, "print JSON instead of a table"),
	}
}

func (f clientFlags) client(getenv func(string) string) (*adminClient, error) {
	token := getenv("IAPD_ADMIN_TOKEN")
	if token == "" {
		return nil, errors.New("IAPD_ADMIN_TOKEN is not set: export the admin token of the iapd you call")
	}
	base := strings.TrimRight(*f.ops, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("-ops %q: want host:port or http(s)://host:port", *f.ops)
	}
	return &adminClient{base: base, token: token, hc: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiError is an error answered by the admin API.
type apiError struct {
	Status  int
	Kind    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, strings.ReplaceAll(e.Kind, "_", " "), e.Status)
}

// call sends one request. query may be nil; body, when non-nil, is sent as
// JSON; out, when non-nil, receives the JSON answer.
func (c *adminClient) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The URL holds account tokens in its query: name the host only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach iapd's admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Kind    string `json:"kind"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error.Kind == "" {
			return &apiError{Status: resp.StatusCode, Kind: "http", Message: fmt.Sprintf("unexpected answer from %s: %s", c.base, resp.Status)}
		}
		return &apiError{Status: resp.StatusCode, Kind: e.Error.Kind, Message: e.Error.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding the answer of %s: %w", c.base, err)
	}
	return nil
}
