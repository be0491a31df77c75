package kyu

// One job's life in a worker: its context (deadline, cancel), its heartbeats, the handler
// (panics included), and the one report that follows from how it ended.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

func (w *Worker) runTask(t *Task, heartbeatEvery time.Duration) {
	var ctx context.Context
	var cancel context.CancelFunc
	if t.Deadline.IsZero() {
		ctx, cancel = context.WithCancel(context.Background())
	} else {
		ctx, cancel = context.WithDeadline(context.Background(), t.Deadline)
	}
	defer cancel()
	t.mu.Lock()
	t.cancel = cancel
	t.mu.Unlock()

	defer func() {
		w.mu.Lock()
		delete(w.running, t)
		w.mu.Unlock()
	}()

	done := make(chan struct{})
	go w.heartbeat(t, heartbeatEvery, done)
	result, err := w.call(ctx, t)
	close(done)

	if !t.settle() {
		return // released at shutdown
	}
	switch cause := t.Cause(); {
	case cause == ErrLeaseLost || cause == ErrShutdown:
		return
	case cause == ErrJobCanceled:
		w.acks.send(ack{JobID: t.ID, Lease: t.lease, Op: "fail", Kind: kindCanceled, Message: "canceled"})
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		w.acks.send(ack{JobID: t.ID, Lease: t.lease, Op: "fail", Kind: kindTimeout,
			Message: fmt.Sprintf("deadline %s passed", t.Deadline.Format(time.RFC3339))})
	default:
		w.acks.send(reportFor(t, result, err))
	}
}

// call runs the job's handler, turning a panic into a retryable error.
func (w *Worker) call(ctx context.Context, t *Task) (result any, err error) {
	h := w.handlers[t.Type]
	if h == nil {
		return nil, NonRetryable(fmt.Errorf("no handler for type %q", t.Type))
	}
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, Retryable(fmt.Errorf("panic: %v", p))
		}
	}()
	return h(ctx, t)
}
