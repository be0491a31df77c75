package kyu

// Reports go out in batches through POST /acks: one request in flight at a time, and
// whatever finished meanwhile rides the next one, so a busy worker sends few requests and
// an idle one sends each report at once. Reports are idempotent, so a failed request is
// simply sent again.

import (
	"context"
	"errors"
	"sync"
	"time"
)

const maxAcks = 1000

type acker struct {
	w    *Worker
	in   chan ack
	done chan struct{}

	mu     sync.Mutex
	closed bool
}

func newAcker(w *Worker) *acker {
	a := &acker{w: w, in: make(chan ack, 4*maxAcks), done: make(chan struct{})}
	go a.run()
	return a
}

// send queues a report; after close (a handler that outlived the shutdown) it is dropped.
func (a *acker) send(x ack) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		a.in <- x
	}
}

// close sends what is queued and returns when it is sent (or given up).
func (a *acker) close() {
	a.mu.Lock()
	a.closed = true
	close(a.in)
	a.mu.Unlock()
	<-a.done
}

func (a *acker) run() {
	defer close(a.done)
	batch := make([]ack, 0, maxAcks)
	for x := range a.in {
		batch = append(batch[:0], x)
	more:
		for len(batch) < maxAcks {
			select {
			case y, ok := <-a.in:
				if !ok {
					break more
				}
				batch = append(batch, y)
			default:
				break more
			}
		}
		a.flush(batch)
	}
}

// flush sends one batch, retrying transport failures and 5xx for about a minute.
func (a *acker) flush(batch []ack) {
	pause := 100 * time.Millisecond
	for try := 0; ; try++ {
		results, err := a.w.client.acks(context.Background(), batch)
		if err == nil {
			for i, r := range results {
				if !r.OK && r.Code != "lease_lost" && i < len(batch) {
					a.w.logf("report %s of job %s refused: %s", batch[i].Op, r.JobID, r.Code)
				}
			}
			return
		}
		var kerr *Error
		if (errors.As(err, &kerr) && kerr.Status < 500) || try >= 10 {
			a.w.logf("reporting %d jobs failed: %v", len(batch), err)
			return
		}
		time.Sleep(pause)
		if pause *= 2; pause > 5*time.Second {
			pause = 5 * time.Second
		}
	}
}
