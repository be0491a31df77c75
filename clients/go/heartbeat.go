package kyu

// Each running job's lease lives by its heartbeats: one goroutine per job sends them every
// heartbeat_ms (sooner when the handler reports progress, so progress shows live), and
// turns the answers into cancellation: cancel: true, 409 lease_lost, and stop: true.

import (
	"context"
	"errors"
	"time"
)

// heartbeat runs until done is closed.
func (w *Worker) heartbeat(t *Task, every time.Duration, done <-chan struct{}) {
	if every <= 0 {
		every = 10 * time.Second
	}
	minGap := w.opts.ProgressInterval
	last := time.Now()
	sent := int32(-1)
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.nudge:
			// Progress changed: beat now, or as soon as the gap allows.
			if wait := minGap - time.Since(last); wait > 0 {
				if wait < every-time.Since(last) {
					resetTimer(timer, wait)
				}
				continue
			}
		case <-timer.C:
		}
		p := t.progress.Load()
		req := &heartbeatRequest{Lease: t.lease}
		if p >= 0 && p != sent {
			n := int(p)
			req.Progress = &n
		}
		last = time.Now()
		ans, err := w.client.heartbeat(context.Background(), t.ID, req)
		resetTimer(timer, every)
		var kerr *Error
		switch {
		case err == nil:
			if req.Progress != nil {
				sent = p
			}
			if ans.Cancel {
				t.stop(ErrJobCanceled)
			}
			if ans.Stop {
				w.requestStop()
			}
		case errors.As(err, &kerr) && kerr.Code == "lease_lost":
			t.stop(ErrLeaseLost)
			return
		case errors.As(err, &kerr) && kerr.Status == 404:
			t.stop(ErrLeaseLost) // the job is gone (pruned): nobody to report to
			return
		default:
			w.logf("heartbeat of job %s: %v", t.ID, err)
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}
