package kyu_test

// One real kyu for the suite (tests that need other settings start their own), and the
// helpers the tests share.

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
	"github.com/kyu-rs/kyu/clients/go/internal/kyutest"
)

// remoteTypes declares the job types the tests' workers serve, one per test so that no
// worker takes another test's jobs.
const remoteTypes = `
[[kyu_remote_type]]
name = "go_progress"

[[kyu_remote_type]]
name = "go_cancel"

[[kyu_remote_type]]
name = "go_retry"

[[kyu_remote_type]]
name = "go_outcomes"

[[kyu_remote_type]]
name = "go_shutdown"

[[kyu_remote_type]]
name = "go_killed"

[[kyu_remote_type]]
name = "go_stocks"
schema = '''{"type": "object", "required": ["symbols"],
             "properties": {"symbols": {"type": "array", "items": {"type": "string"}}}}'''
`

var server *kyutest.Server

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" { // a child worker of TestKilledWorkerJobRunsAgain
		os.Exit(m.Run())
	}
	var err error
	server, err = kyutest.Start(kyutest.Options{Config: remoteTypes})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting kyu:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "kyu's log:\n"+server.Log())
	}
	server.Close()
	os.Exit(code)
}

func newClient() *kyu.Client { return kyu.NewClient(server.URL) }

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startWorker runs w until the test ends and fails the test if Run returns an error.
func startWorker(t *testing.T, w *kyu.Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker.Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("worker did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// until polls cond every 50ms until it holds or d passes.
func until(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustEnqueue(t *testing.T, c *kyu.Client, typ string, payload any, o *kyu.EnqueueOptions) string {
	t.Helper()
	e, err := c.Enqueue(context.Background(), typ, payload, o)
	if err != nil {
		t.Fatalf("enqueue %s: %v", typ, err)
	}
	return e.JobID
}

// workerOpts are the tests' worker settings: short leases, so heartbeats come often.
func workerOpts() kyu.WorkerOptions {
	return kyu.WorkerOptions{Concurrency: 4, Lease: 5 * time.Second, PollWait: 2 * time.Second,
		ShutdownGrace: 2 * time.Second, IgnoreSignals: true}
}
