package kyu

// The wire shapes of the worker protocol (docs/worker-protocol.md): fetch, heartbeat and
// batched acks. Only the Worker uses them; they stay unexported so the protocol can grow
// without changing the package's surface.

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

type fetchRequest struct {
	WorkerID     string   `json:"worker_id"`
	Types        []string `json:"types"`
	Queues       []string `json:"queues,omitempty"`
	Max          int      `json:"max"`
	WaitMS       int64    `json:"wait_ms"`
	LeaseSeconds int      `json:"lease_seconds,omitempty"`
	Host         string   `json:"host,omitempty"`
	Version      string   `json:"version,omitempty"`
}

type fetchedJob struct {
	JobID          string          `json:"job_id"`
	Type           string          `json:"type"`
	Payload        json.RawMessage `json:"payload"`
	Queue          string          `json:"queue"`
	Provider       *string         `json:"provider"`
	Priority       int             `json:"priority"`
	Attempt        int             `json:"attempt"`
	MaxAttempts    int             `json:"max_attempts"`
	Lease          string          `json:"lease"`
	LeaseExpiresAt time.Time       `json:"lease_expires_at"`
	Deadline       *time.Time      `json:"deadline"`
	HeartbeatMS    int64           `json:"heartbeat_ms"`
}

type fetchAnswer struct {
	Jobs []fetchedJob `json:"jobs"`
	Stop bool         `json:"stop"`
}

func (c *Client) fetch(ctx context.Context, req *fetchRequest) (*fetchAnswer, error) {
	var out fetchAnswer
	wait := time.Duration(req.WaitMS) * time.Millisecond
	if err := c.callTimeout(ctx, c.timeout+wait, "POST", "/fetch", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

type heartbeatRequest struct {
	Lease    string `json:"lease"`
	Progress *int   `json:"progress,omitempty"`
}

type heartbeatAnswer struct {
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	Cancel         bool      `json:"cancel"`
	Stop           bool      `json:"stop"`
}

func (c *Client) heartbeat(ctx context.Context, id string, req *heartbeatRequest) (*heartbeatAnswer, error) {
	var out heartbeatAnswer
	if err := c.call(ctx, "POST", "/jobs/"+url.PathEscape(id)+"/heartbeat", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ack is one report: op complete, fail, snooze or release.
type ack struct {
	JobID             string          `json:"job_id"`
	Lease             string          `json:"lease"`
	Op                string          `json:"op"`
	Result            json.RawMessage `json:"result,omitempty"`
	Kind              string          `json:"kind,omitempty"`
	Message           string          `json:"message,omitempty"`
	RetryAfterSeconds *float64        `json:"retry_after_seconds,omitempty"`
	Seconds           *float64        `json:"seconds,omitempty"`
}

type ackResult struct {
	JobID  string `json:"job_id"`
	OK     bool   `json:"ok"`
	Status Status `json:"status"`
	Code   string `json:"code"`
}

func (c *Client) acks(ctx context.Context, acks []ack) ([]ackResult, error) {
	in := struct {
		Acks []ack `json:"acks"`
	}{acks}
	var out struct {
		Results []ackResult `json:"results"`
	}
	if err := c.call(ctx, "POST", "/acks", in, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}

// StopWorker asks the worker with this id to stop (admin): its waiting fetch answers at
// once, it fetches no more and finishes what it holds.
func (c *Client) StopWorker(ctx context.Context, workerID string) error {
	return c.call(ctx, "POST", "/workers/"+url.PathEscape(workerID)+"/stop", nil, nil)
}
