package kyu

// The job API (README "The API"): enqueue one or many, read, list, cancel, retry. Thin
// wrappers over Client.call, one per endpoint.

import (
	"context"
	"net/url"
	"strconv"
)

// Enqueue creates a job of type typ with payload (anything encoding/json accepts; nil is
// {}). opts may be nil.
func (c *Client) Enqueue(ctx context.Context, typ string, payload any, opts *EnqueueOptions) (*Enqueued, error) {
	var out Enqueued
	if err := c.call(ctx, "POST", "/jobs", newCreateJob(typ, payload, opts), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EnqueueMany creates jobs together or not at all (up to KYU_MAX_BATCH, 1000 by default);
// the answers are in the same order.
func (c *Client) EnqueueMany(ctx context.Context, jobs []NewJob) ([]Enqueued, error) {
	in := struct {
		Jobs []createJob `json:"jobs"`
	}{make([]createJob, len(jobs))}
	for i := range jobs {
		in.Jobs[i] = newCreateJob(jobs[i].Type, jobs[i].Payload, &jobs[i].EnqueueOptions)
	}
	var out struct {
		Jobs []Enqueued `json:"jobs"`
	}
	if err := c.call(ctx, "POST", "/jobs/batch", in, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}

// Get reads one job.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) {
	var out Job
	if err := c.call(ctx, "GET", "/jobs/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cancel asks kyu to cancel a queued, scheduled or running job (a running one's handler
// sees its context canceled at its next heartbeat). It returns the job as it is then.
func (c *Client) Cancel(ctx context.Context, id string) (*Job, error) {
	return c.jobAction(ctx, id, "cancel")
}

// Retry queues a failed or canceled job again (an *Error with code invalid_state
// otherwise).
func (c *Client) Retry(ctx context.Context, id string) (*Job, error) {
	return c.jobAction(ctx, id, "retry")
}

func (c *Client) jobAction(ctx context.Context, id, action string) (*Job, error) {
	var out Job
	if err := c.call(ctx, "POST", "/jobs/"+url.PathEscape(id)+"/"+action, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListOptions filter List; zero fields do not filter.
type ListOptions struct {
	Type   string
	Status Status
	Queue  string
	Owner  string
	Limit  int
	Cursor string // JobPage.NextCursor of the previous page
}

// JobPage is one page of jobs, newest first; NextCursor is "" on the last page.
type JobPage struct {
	Jobs       []Job  `json:"jobs"`
	NextCursor string `json:"next_cursor"`
}

// List reads one page of jobs; opts may be nil.
func (c *Client) List(ctx context.Context, opts *ListOptions) (*JobPage, error) {
	q := url.Values{}
	if opts != nil {
		set := func(k, v string) {
			if v != "" {
				q.Set(k, v)
			}
		}
		set("type", opts.Type)
		set("status", string(opts.Status))
		set("queue", opts.Queue)
		set("owner", opts.Owner)
		set("cursor", opts.Cursor)
		if opts.Limit > 0 {
			q.Set("limit", strconv.Itoa(opts.Limit))
		}
	}
	path := "/jobs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out JobPage
	if err := c.call(ctx, "GET", path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
