package kyu_test

// The worker side against a real kyu: progress, cancel reaching the handler, retry after a
// retryable error, the other outcomes, and graceful shutdown.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
)

func TestWorkerRunsJobsWithProgress(t *testing.T) {
	c := newClient()
	release := make(chan struct{})
	w := kyu.NewWorker(c, workerOpts(), map[string]kyu.Handler{
		"go_progress": func(ctx context.Context, job *kyu.Task) (any, error) {
			var p struct{ N int }
			if err := job.Decode(&p); err != nil {
				return nil, kyu.NonRetryable(err)
			}
			job.Progress(40)
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return map[string]int{"double": 2 * p.N}, nil
		},
	})
	startWorker(t, w)
	ctx := testCtx(t, 20*time.Second)
	id := mustEnqueue(t, c, "go_progress", map[string]int{"n": 21}, nil)
	until(t, 10*time.Second, "progress 40", func() bool {
		j, err := c.Get(ctx, id)
		return err == nil && j.Status == kyu.StatusRunning && j.Progress == 40
	})
	close(release)
	job, err := c.Wait(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Double int }
	if job.Status != kyu.StatusCompleted || job.DecodeResult(&res) != nil || res.Double != 42 {
		t.Fatalf("job %s result %s", job.Status, job.Result)
	}
}

func TestCancelReachesRunningHandler(t *testing.T) {
	c := newClient()
	started := make(chan string, 1)
	causes := make(chan error, 1)
	w := kyu.NewWorker(c, workerOpts(), map[string]kyu.Handler{
		"go_cancel": func(ctx context.Context, job *kyu.Task) (any, error) {
			started <- job.ID
			<-ctx.Done()
			causes <- job.Cause()
			return nil, ctx.Err()
		},
	})
	startWorker(t, w)
	ctx := testCtx(t, 20*time.Second)
	id := mustEnqueue(t, c, "go_cancel", nil, nil)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the handler never started")
	}
	if _, err := c.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-causes:
		if cause != kyu.ErrJobCanceled {
			t.Fatalf("cause %v", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not canceled")
	}
	job, err := c.Wait(ctx, id, nil)
	if err != nil || job.Status != kyu.StatusCanceled {
		t.Fatalf("job %+v, %v", job, err)
	}
}

func TestRetryAfterRetryableError(t *testing.T) {
	c := newClient()
	w := kyu.NewWorker(c, workerOpts(), map[string]kyu.Handler{
		"go_retry": func(ctx context.Context, job *kyu.Task) (any, error) {
			if job.Attempt == 1 {
				return nil, kyu.Retryable(errors.New("flaky upstream"))
			}
			return map[string]int{"attempt": job.Attempt}, nil
		},
	})
	startWorker(t, w)
	ctx := testCtx(t, 20*time.Second)
	id := mustEnqueue(t, c, "go_retry", nil, &kyu.EnqueueOptions{MaxRetries: kyu.Int(2)})
	job, err := c.Wait(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != kyu.StatusCompleted || job.Attempts != 2 {
		t.Fatalf("status %s after %d attempts", job.Status, job.Attempts)
	}
	if len(job.Errors) != 1 || job.Errors[0].Kind != "retryable" || job.Errors[0].Message != "flaky upstream" {
		t.Fatalf("errors %+v", job.Errors)
	}
}

func TestOutcomes(t *testing.T) {
	c := newClient()
	var snoozed sync.Map
	w := kyu.NewWorker(c, workerOpts(), map[string]kyu.Handler{
		"go_outcomes": func(ctx context.Context, job *kyu.Task) (any, error) {
			var p struct{ Do string }
			_ = job.Decode(&p)
			switch p.Do {
			case "fatal":
				return nil, kyu.NonRetryable(errors.New("bad input"))
			case "panic":
				panic("boom")
			case "snooze":
				if _, again := snoozed.LoadOrStore(job.ID, true); !again {
					return nil, kyu.Snooze(0)
				}
			case "slow":
				<-ctx.Done() // until the 1 s timeout
				return nil, ctx.Err()
			}
			return "ok", nil
		},
	})
	startWorker(t, w)
	ctx := testCtx(t, 20*time.Second)
	fatal := mustEnqueue(t, c, "go_outcomes", map[string]string{"do": "fatal"}, &kyu.EnqueueOptions{MaxRetries: kyu.Int(3)})
	panics := mustEnqueue(t, c, "go_outcomes", map[string]string{"do": "panic"}, &kyu.EnqueueOptions{MaxRetries: kyu.Int(0)})
	slow := mustEnqueue(t, c, "go_outcomes", map[string]string{"do": "slow"}, &kyu.EnqueueOptions{MaxRetries: kyu.Int(0), Timeout: time.Second})

	snooze := mustEnqueue(t, c, "go_outcomes", map[string]string{"do": "snooze"}, nil)

	job, err := c.Wait(ctx, snooze, nil)
	if err != nil || job.Status != kyu.StatusCompleted || job.Attempts != 1 || len(job.Errors) != 0 {
		t.Fatalf("snoozed job: %+v, %v", job, err)
	}
	if _, ok := snoozed.Load(snooze); !ok {
		t.Fatal("the snoozing handler did not run")
	}
	for id, want := range map[string]string{fatal: "non_retryable", panics: "retryable", slow: "timeout"} {
		job, err := c.Wait(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if job.Status != kyu.StatusFailed || job.Error == nil || job.Error.Kind != want || job.Attempts != 1 {
			t.Fatalf("%s: status %s attempts %d error %+v", want, job.Status, job.Attempts, job.Error)
		}
	}
}

func TestGracefulShutdownFinishesThenReleases(t *testing.T) {
	c := newClient()
	started := make(chan string, 2)
	opts := workerOpts()
	opts.ShutdownGrace = 500 * time.Millisecond
	w := kyu.NewWorker(c, opts, map[string]kyu.Handler{
		"go_shutdown": func(ctx context.Context, job *kyu.Task) (any, error) {
			var p struct{ Sleep int }
			_ = job.Decode(&p)
			started <- job.ID
			select {
			case <-time.After(time.Duration(p.Sleep) * time.Millisecond):
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	stop := startWorker(t, w)
	ctx := testCtx(t, 20*time.Second)
	quick := mustEnqueue(t, c, "go_shutdown", map[string]int{"sleep": 200}, nil)
	long := mustEnqueue(t, c, "go_shutdown", map[string]int{"sleep": 60000}, nil)
	for i := 0; i < 2; i++ {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("handlers did not start")
		}
	}
	stop() // returns once the grace is over and the long job is given back
	if j, err := c.Get(ctx, quick); err != nil || j.Status != kyu.StatusCompleted {
		t.Fatalf("the quick job: %+v, %v", j, err)
	}
	j, err := c.Get(ctx, long)
	if err != nil || j.Status != kyu.StatusQueued || j.Attempts != 0 {
		t.Fatalf("the long job should be queued again, uncounted: %+v, %v", j, err)
	}
	if _, err := c.Cancel(ctx, long); err != nil {
		t.Fatal(err)
	}
}
