package kyu

// A handler says how its attempt ended by the error it returns: nil completes the job,
// these wrappers pick the fail kind of the protocol (or a snooze), and any other error is
// retryable. They are errors so they travel through fmt.Errorf("%w") and errors.As.

import (
	"errors"
	"fmt"
	"time"
)

// The fail kinds of the worker protocol.
const (
	kindRetryable    = "retryable"
	kindNonRetryable = "non_retryable"
	kindRateLimit    = "rate_limit"
	kindTimeout      = "timeout"
	kindCanceled     = "canceled"
)

// outcome is a handler's verdict other than "retry with the default back-off".
type outcome struct {
	kind   string        // a fail kind, or "snooze"
	after  time.Duration // rate_limit: retry after; snooze: run again after
	err    error
	snooze bool
}

func (o *outcome) Error() string {
	switch {
	case o.snooze:
		return fmt.Sprintf("kyu: snooze %s", o.after)
	case o.err == nil:
		return o.kind
	default:
		return o.err.Error()
	}
}

func (o *outcome) Unwrap() error { return o.err }

// Retryable marks err as worth another attempt after kyu's default back-off (what any
// plain error means too); the job fails when its attempts are used up.
func Retryable(err error) error { return &outcome{kind: kindRetryable, err: err} }

// NonRetryable fails the job at once, whatever attempts are left.
func NonRetryable(err error) error { return &outcome{kind: kindNonRetryable, err: err} }

// RateLimited retries the job after retryAfter and cools down its provider's bucket.
func RateLimited(err error, retryAfter time.Duration) error {
	return &outcome{kind: kindRateLimit, err: err, after: retryAfter}
}

// Snooze runs the job again after d without counting the attempt or recording an error.
func Snooze(d time.Duration) error { return &outcome{snooze: true, after: d} }

// ErrJobCanceled is Task.Cause when the job was canceled (the heartbeat said cancel).
var ErrJobCanceled = errors.New("kyu: job canceled")

// ErrLeaseLost is Task.Cause when kyu no longer counts this worker as the job's owner
// (the lease expired and the job runs elsewhere): its outcome will not be reported.
var ErrLeaseLost = errors.New("kyu: lease lost")

// ErrShutdown is Task.Cause when the worker's shutdown grace ended before the handler:
// the job was given back to kyu and its outcome will not be reported.
var ErrShutdown = errors.New("kyu: worker shut down")

// reportFor turns a handler's verdict into the ack to send.
func reportFor(t *Task, result any, err error) ack {
	a := ack{JobID: t.ID, Lease: t.lease}
	if err == nil {
		b, merr := jsonResult(result)
		if merr == nil {
			a.Op, a.Result = "complete", b
			return a
		}
		err = NonRetryable(fmt.Errorf("result is not JSON: %w", merr))
	}
	a.Op, a.Kind, a.Message = "fail", kindRetryable, truncate(err.Error(), 4000)
	var o *outcome
	if errors.As(err, &o) {
		if o.snooze {
			s := o.after.Seconds()
			return ack{JobID: t.ID, Lease: t.lease, Op: "snooze", Seconds: &s}
		}
		a.Kind = o.kind
		if o.kind == kindRateLimit {
			s := o.after.Seconds()
			a.RetryAfterSeconds = &s
		}
	}
	return a
}
