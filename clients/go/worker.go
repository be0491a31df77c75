package kyu

// Worker pulls jobs of remote types from kyu and runs them (docs/worker-protocol.md, "A
// worker's loop"): long-poll fetch for as many jobs as it has free slots, one goroutine
// per job with its heartbeats, batched reports, and a graceful stop.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Version is sent to kyu with each fetch and shown in its node listing.
const Version = "go-0.1.0"

// WorkerOptions configure a Worker; the zero value of each field takes its default.
type WorkerOptions struct {
	Concurrency      int           // jobs run at once (default 10)
	Queues           []string      // only jobs of these queues (default: any)
	Lease            time.Duration // lease per job, 5s–1h (default 30s)
	PollWait         time.Duration // long-poll wait of a fetch, up to 30s (default 30s)
	ShutdownGrace    time.Duration // running jobs get this long to finish at stop (default 10s)
	ProgressInterval time.Duration // least time between two progress heartbeats (default 500ms)
	WorkerID         string        // default: host-pid-random, fresh at each start
	IgnoreSignals    bool          // Run stops on ctx only, not on SIGINT/SIGTERM
	Logger           *log.Logger   // where failures to reach kyu are logged (default: log's)
}

// Worker runs handlers for the job types it serves. Make one with NewWorker.
type Worker struct {
	client   *Client
	opts     WorkerOptions
	handlers map[string]Handler
	types    []string
	host     string

	stopOnce sync.Once
	stopCh   chan struct{} // closed when the worker should fetch no more

	mu      sync.Mutex
	running map[*Task]struct{}
	acks    *acker
}

// NewWorker returns a worker that runs handlers[type] for each fetched job of that type.
func NewWorker(client *Client, opts WorkerOptions, handlers map[string]Handler) *Worker {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 10
	}
	if opts.PollWait <= 0 || opts.PollWait > 30*time.Second {
		opts.PollWait = 30 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = 500 * time.Millisecond
	}
	host, _ := os.Hostname()
	if opts.WorkerID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		opts.WorkerID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if opts.Logger == nil {
		opts.Logger = log.Default()
	}
	w := &Worker{
		client: client, opts: opts, handlers: handlers, host: host,
		stopCh: make(chan struct{}), running: map[*Task]struct{}{},
	}
	for t := range handlers {
		w.types = append(w.types, t)
	}
	sort.Strings(w.types)
	return w
}

// ID is the worker id kyu knows this worker by (its leases' owner, its node id).
func (w *Worker) ID() string { return w.opts.WorkerID }

// Run fetches and runs jobs until ctx is canceled, SIGINT or SIGTERM arrives (unless
// IgnoreSignals), or kyu asks this worker to stop. Then it fetches no more, gives running
// handlers ShutdownGrace to finish, cancels the rest and gives their jobs back to kyu,
// sends the last reports and returns. It returns an error only when kyu refuses the
// fetch itself (a bad token, an unknown queue, …). A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if len(w.types) == 0 {
		return errors.New("kyu: a worker needs at least one handler")
	}
	if !w.opts.IgnoreSignals {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		go func() {
			select {
			case <-sig:
				w.requestStop()
			case <-w.stopCh:
			}
		}()
	}
	go func() {
		select {
		case <-ctx.Done():
			w.requestStop()
		case <-w.stopCh:
		}
	}()
	w.acks = newAcker(w)
	var handlers sync.WaitGroup
	err := w.fetchLoop(&handlers)
	w.requestStop()
	w.drain(&handlers)
	w.acks.close()
	return err
}

// requestStop makes the worker fetch no more (idempotent).
func (w *Worker) requestStop() { w.stopOnce.Do(func() { close(w.stopCh) }) }

func (w *Worker) stopping() bool {
	select {
	case <-w.stopCh:
		return true
	default:
		return false
	}
}

// fetchLoop fetches as many jobs as there are free slots and starts them, until stop.
func (w *Worker) fetchLoop(handlers *sync.WaitGroup) error {
	slots := make(chan struct{}, w.opts.Concurrency) // a token is a free slot
	for i := 0; i < w.opts.Concurrency; i++ {
		slots <- struct{}{}
	}
	fetchCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-w.stopCh; cancel() }()
	pause := 100 * time.Millisecond
	for {
		select {
		case <-w.stopCh:
			return nil
		case <-slots:
		}
		n := 1
		for n < w.opts.Concurrency && n < 100 {
			select {
			case <-slots:
				n++
				continue
			default:
			}
			break
		}
		req := &fetchRequest{
			WorkerID: w.opts.WorkerID, Types: w.types, Queues: w.opts.Queues, Max: n,
			WaitMS: w.opts.PollWait.Milliseconds(), LeaseSeconds: int(w.opts.Lease.Seconds()),
			Host: w.host, Version: Version,
		}
		ans, err := w.client.fetch(fetchCtx, req)
		received := time.Now()
		got := 0
		if err == nil {
			got = len(ans.Jobs)
		}
		for i := got; i < n; i++ {
			slots <- struct{}{}
		}
		if err != nil {
			if w.stopping() {
				return nil
			}
			var kerr *Error
			if errors.As(err, &kerr) && kerr.Status >= 400 && kerr.Status < 500 && kerr.Status != 408 && kerr.Status != 429 {
				return err
			}
			w.logf("fetch: %v", err)
			select {
			case <-w.stopCh:
				return nil
			case <-time.After(pause):
			}
			if pause *= 2; pause > 5*time.Second {
				pause = 5 * time.Second
			}
			continue
		}
		pause = 100 * time.Millisecond
		for i := range ans.Jobs {
			t := newTask(&ans.Jobs[i], w.opts.Lease, received)
			w.mu.Lock()
			w.running[t] = struct{}{} // before the goroutine, so a drain always sees it
			w.mu.Unlock()
			handlers.Add(1)
			go func(j *fetchedJob) {
				defer handlers.Done()
				w.runTask(t, time.Duration(j.HeartbeatMS)*time.Millisecond)
				slots <- struct{}{}
			}(&ans.Jobs[i])
		}
		if ans.Stop {
			w.requestStop()
		}
	}
}

// drain waits up to the grace for running handlers, then cancels the rest and gives
// their jobs back.
func (w *Worker) drain(handlers *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	t := time.NewTimer(w.opts.ShutdownGrace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	w.mu.Lock()
	left := make([]*Task, 0, len(w.running))
	for t := range w.running {
		left = append(left, t)
	}
	w.mu.Unlock()
	for _, t := range left {
		if t.settle() {
			w.acks.send(ack{JobID: t.ID, Lease: t.lease, Op: "release"})
		}
		t.stop(ErrShutdown)
	}
	// Handlers that honour their context end now; their reports are moot (released).
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

func (w *Worker) logf(format string, args ...any) {
	w.opts.Logger.Printf("kyu worker %s: "+format, append([]any{w.opts.WorkerID}, args...)...)
}
