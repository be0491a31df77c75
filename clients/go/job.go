package kyu

// The shapes of jobs as kyu's API shows them (GET /api/v1/jobs/{id}), kept in one file so
// the rest of the client can speak of Job and Status without repeating JSON tags.

import (
	"encoding/json"
	"time"
)

// Status is a job's state.
type Status string

// The states of a job; Completed, Failed and Canceled are final.
const (
	StatusQueued    Status = "queued"
	StatusScheduled Status = "scheduled"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
)

// Final reports whether a job in this state will not change again (unless retried).
func (s Status) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCanceled
}

// JobError is one failed attempt: Kind is retryable, non_retryable, rate_limit, timeout,
// panic or canceled. Attempt and At are shown to admins only.
type JobError struct {
	Kind    string     `json:"kind"`
	Message string     `json:"message"`
	Attempt int        `json:"attempt,omitempty"`
	At      *time.Time `json:"at,omitempty"`
}

// Job is a job as kyu shows it.
type Job struct {
	ID              string          `json:"job_id"`
	Type            string          `json:"type"`
	Queue           string          `json:"queue"`
	Provider        *string         `json:"provider"`
	Priority        int             `json:"priority"`
	Status          Status          `json:"status"`
	Progress        int             `json:"progress"`
	Payload         json.RawMessage `json:"payload"`
	Result          json.RawMessage `json:"result"`
	Error           *JobError       `json:"error"`
	Errors          []JobError      `json:"errors"`
	Attempts        int             `json:"attempts"`
	MaxAttempts     int             `json:"max_attempts"`
	TimeoutSeconds  float64         `json:"timeout_seconds"`
	RunAt           time.Time       `json:"run_at"`
	CreatedAt       time.Time       `json:"created_at"`
	StartedAt       *time.Time      `json:"started_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	CancelRequested bool            `json:"cancel_requested"`
	UniqueKey       *string         `json:"unique_key"`
	Owner           *string         `json:"owner"`
	ConcurrencyKey  *string         `json:"concurrency_key"`
}

// DecodeResult unmarshals the job's result (what its handler returned) into v.
func (j *Job) DecodeResult(v any) error { return json.Unmarshal(j.Result, v) }

// Enqueued is kyu's answer to an enqueue: the job's id and status; Duplicate is true when
// a live job with the same UniqueKey answered instead of a new one.
type Enqueued struct {
	JobID     string `json:"job_id"`
	Status    Status `json:"status"`
	Duplicate bool   `json:"duplicate"`
}

// EnqueueOptions are the optional settings of a new job; the zero value takes the job
// type's defaults. Delay and RunAt exclude each other.
type EnqueueOptions struct {
	Priority   int           // 1 (low) to 10 (critical); 0: the type's default
	Queue      string        // "": the type's queue
	Provider   string        // the rate-limit bucket the job draws from
	Delay      time.Duration // run no sooner than this from now
	RunAt      time.Time     // run no sooner than this instant
	MaxRetries *int          // retries after the first attempt; nil: the type's default
	Timeout    time.Duration // longest one attempt may run; 0: the default (300 s)
	UniqueKey  string        // while a job with this key is not final, enqueue returns it
	// ConcurrencyKey: jobs sharing it run at most ConcurrencyLimit at once, on all
	// nodes together ("": the type's key from kyu's config, if any).
	ConcurrencyKey   string
	ConcurrencyLimit int    // 0: the limit kyu's config sets for the key (else 1)
	Tenant           string // whose fair share the job counts against (admin tokens only)
	Tier             string // picks the type's priority for that tier (admin tokens only)
}

// NewJob is one job of EnqueueMany.
type NewJob struct {
	Type    string
	Payload any
	EnqueueOptions
}

// Int returns a pointer to n, for EnqueueOptions.MaxRetries.
func Int(n int) *int { return &n }

// createJob is the JSON body of one job to create.
type createJob struct {
	Type         string   `json:"type"`
	Payload      any      `json:"payload,omitempty"`
	Priority     int      `json:"priority,omitempty"`
	Queue        string   `json:"queue,omitempty"`
	Provider     string   `json:"provider,omitempty"`
	DelaySeconds *float64 `json:"delay_seconds,omitempty"`
	RunAt        *string  `json:"run_at,omitempty"`
	MaxRetries   *int     `json:"max_retries,omitempty"`
	Timeout      *float64 `json:"timeout_seconds,omitempty"`
	UniqueKey    string   `json:"unique_key,omitempty"`
	// Flow control.
	ConcurrencyKey   string `json:"concurrency_key,omitempty"`
	ConcurrencyLimit int    `json:"concurrency_limit,omitempty"`
	Tenant           string `json:"tenant,omitempty"`
	Tier             string `json:"tier,omitempty"`
}

func newCreateJob(typ string, payload any, o *EnqueueOptions) createJob {
	c := createJob{Type: typ, Payload: payload}
	if o == nil {
		return c
	}
	c.Priority, c.Queue, c.Provider, c.MaxRetries, c.UniqueKey = o.Priority, o.Queue, o.Provider, o.MaxRetries, o.UniqueKey
	c.ConcurrencyKey, c.ConcurrencyLimit, c.Tenant, c.Tier = o.ConcurrencyKey, o.ConcurrencyLimit, o.Tenant, o.Tier
	if o.Delay > 0 {
		s := o.Delay.Seconds()
		c.DelaySeconds = &s
	}
	if !o.RunAt.IsZero() {
		s := o.RunAt.UTC().Format(time.RFC3339Nano)
		c.RunAt = &s
	}
	if o.Timeout > 0 {
		s := o.Timeout.Seconds()
		c.Timeout = &s
	}
	return c
}
