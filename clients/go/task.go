package kyu

// Task is what a handler gets besides its context: the leased job's data, a way to report
// progress (carried by the next heartbeat) and, once the context is canceled, why.

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Handler runs one job. Its ctx is canceled when the job is canceled, when the lease is
// lost, at the attempt's deadline, and when the worker's shutdown grace ends; Task.Cause
// tells which. Return the result (any JSON value) and nil to complete the job, or an
// error: Retryable, NonRetryable, RateLimited, Snooze, or any other (retryable).
type Handler func(ctx context.Context, t *Task) (any, error)

// Task is one leased job as a handler sees it.
type Task struct {
	ID          string
	Type        string
	Queue       string
	Provider    string
	Priority    int
	Payload     json.RawMessage
	Attempt     int       // 1 for the first attempt
	MaxAttempts int       // attempts the job has in all
	Deadline    time.Time // when this attempt times out, on this machine's clock (zero: none)

	lease    string
	progress atomic.Int32 // -1: never set
	nudge    chan struct{}

	mu      sync.Mutex
	cause   error
	cancel  func()
	settled bool // the job's report (or release) is decided
}

// newTask makes the handler's view of j, fetched with a lease of lease. The deadline is
// moved to this machine's clock: kyu's clock at the fetch was lease_expires_at - lease.
func newTask(j *fetchedJob, lease time.Duration, fetchedAt time.Time) *Task {
	t := &Task{
		ID: j.JobID, Type: j.Type, Queue: j.Queue, Priority: j.Priority, Payload: j.Payload,
		Attempt: j.Attempt, MaxAttempts: j.MaxAttempts, lease: j.Lease,
		nudge: make(chan struct{}, 1),
	}
	if j.Provider != nil {
		t.Provider = *j.Provider
	}
	if j.Deadline != nil {
		t.Deadline = *j.Deadline
		if lease > 0 && !j.LeaseExpiresAt.IsZero() {
			t.Deadline = fetchedAt.Add(j.Deadline.Sub(j.LeaseExpiresAt.Add(-lease)))
		}
	}
	t.progress.Store(-1)
	return t
}

// Decode unmarshals the payload into v.
func (t *Task) Decode(v any) error { return json.Unmarshal(t.Payload, v) }

// Progress records how far the job is (0–100); kyu shows it (GET /jobs/{id}) after the
// next heartbeat, which a change brings forward (at most one per ProgressInterval).
func (t *Task) Progress(percent int) {
	if percent < 0 {
		percent = 0
	} else if percent > 100 {
		percent = 100
	}
	if t.progress.Swap(int32(percent)) != int32(percent) {
		select {
		case t.nudge <- struct{}{}:
		default:
		}
	}
}

// Cause is why the worker canceled the handler's context: ErrJobCanceled, ErrLeaseLost,
// ErrShutdown, or nil (still running, or only the deadline passed: ctx.Err() is then
// context.DeadlineExceeded).
func (t *Task) Cause() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cause
}

// stop cancels the handler's context for cause (the first cause wins).
func (t *Task) stop(cause error) {
	t.mu.Lock()
	if t.cause == nil {
		t.cause = cause
	}
	cancel := t.cancel
	t.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// settle claims the right to report the job; only the first caller gets true.
func (t *Task) settle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.settled {
		return false
	}
	t.settled = true
	return true
}

func jsonResult(v any) (json.RawMessage, error) {
	switch r := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(r) {
			return nil, errors.New("invalid json.RawMessage")
		}
		return r, nil
	}
	return json.Marshal(v)
}
