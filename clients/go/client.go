package kyu

// Client is the one place that speaks HTTP to kyu: base URL, bearer token, JSON in and
// out, and turning refusals into *Error. Everything else (jobs, waiting, the worker) is
// written in terms of Client.call.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to one kyu server. It is safe for concurrent use.
type Client struct {
	base    string // e.g. http://127.0.0.1:7878 (no trailing slash)
	token   string
	http    *http.Client
	timeout time.Duration // per request, except long polls
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends "Authorization: Bearer token" (kyu with KYU_API_TOKENS).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient replaces the default HTTP client (keep-alive, 64 idle connections).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithTimeout bounds each request (default 30s); a worker's long poll gets its wait on top.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// NewClient returns a client for the kyu at url, e.g. "http://127.0.0.1:7878".
func NewClient(url string, opts ...Option) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 64
	t.MaxIdleConnsPerHost = 64 // a worker holds a connection per running job's heartbeat
	c := &Client{
		base:    strings.TrimRight(url, "/"),
		http:    &http.Client{Transport: t},
		timeout: 30 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// call sends method path with in as JSON (if not nil) and decodes a 2xx answer into out
// (if not nil). A refusal is an *Error; a transport failure is returned as is.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	return c.callTimeout(ctx, c.timeout, method, path, in, out)
}

func (c *Client) callTimeout(ctx context.Context, timeout time.Duration, method, path string, in, out any) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("kyu: encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errorFrom(resp, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("kyu: decoding answer of %s %s: %w", method, path, err)
	}
	return nil
}
