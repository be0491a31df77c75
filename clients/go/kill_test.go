package kyu_test

// A worker that dies holding a job (SIGKILL: no release, no report) must not strand it:
// kyu declares it dead after KYU_NODE_DEAD_AFTER and another worker runs the job.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
	"github.com/kyu-rs/kyu/clients/go/internal/kyutest"
)

// helperEnv, set to a kyu URL, makes this test binary a child worker (TestChildWorker);
// with modeEnv=finish its handler ends after 500ms instead of hanging.
const (
	helperEnv = "KYU_GO_TEST_CHILD_WORKER"
	modeEnv   = "KYU_GO_TEST_CHILD_MODE"
)

// startChild runs TestChildWorker against url and returns once it took job id.
func startChild(t *testing.T, url, mode, id string) *exec.Cmd {
	child := exec.Command(os.Args[0], "-test.run=^TestChildWorker$", "-test.v")
	child.Env = append(os.Environ(), helperEnv+"="+url, modeEnv+"="+mode)
	took := make(chan string, 1)
	child.Stdout = tookWriter(took)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	select {
	case got := <-took:
		if got != id {
			t.Fatalf("the child took %q, not %s", got, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the child worker took no job")
	}
	return child
}

func TestKilledWorkersJobRunsAgain(t *testing.T) {
	srv, err := kyutest.Start(kyutest.Options{Config: remoteTypes, Env: []string{"KYU_NODE_DEAD_AFTER=2s", "KYU_NODE_HEARTBEAT_INTERVAL=500ms", "KYU_RESCUE_INTERVAL=1s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() }) // after the worker below stops
	c := kyu.NewClient(srv.URL)
	ctx := testCtx(t, 40*time.Second)

	id := mustEnqueue(t, c, "go_killed", nil, &kyu.EnqueueOptions{MaxRetries: kyu.Int(2)})
	child := startChild(t, srv.URL, "hang", id)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	w := kyu.NewWorker(c, workerOpts(), map[string]kyu.Handler{
		"go_killed": func(ctx context.Context, job *kyu.Task) (any, error) {
			return map[string]int{"attempt": job.Attempt}, nil
		},
	})
	startWorker(t, w)
	job, err := c.Wait(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != kyu.StatusCompleted || job.Attempts != 2 {
		t.Fatalf("status %s after %d attempts, errors %+v", job.Status, job.Attempts, job.Errors)
	}
	if d := time.Since(killed); d > 15*time.Second {
		t.Fatalf("the job ran again only %s after the kill", d)
	}
	t.Logf("ran again %s after the kill", time.Since(killed).Round(time.Millisecond))
}

func TestSIGTERMLetsTheRunningJobFinish(t *testing.T) {
	c := newClient()
	id := mustEnqueue(t, c, "go_killed", nil, nil)
	child := startChild(t, server.URL, "finish", id)
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("the worker's exit after SIGTERM: %v", err)
	}
	job, err := c.Get(context.Background(), id)
	if err != nil || job.Status != kyu.StatusCompleted {
		t.Fatalf("job %+v, %v", job, err)
	}
}

// tookWriter passes the job id of the child's "TOOK id" line to took.
type tookWriter chan<- string

func (w tookWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "TOOK ") {
			select {
			case w <- strings.TrimPrefix(line, "TOOK "):
			default:
			}
		}
	}
	return len(b), nil
}

// TestChildWorker is the worker TestKilledWorkersJobRunsAgain kills: it takes one job,
// says so on stdout, and hangs.
func TestChildWorker(t *testing.T) {
	url := os.Getenv(helperEnv)
	if url == "" {
		t.Skip("only run as TestKilledWorkersJobRunsAgain's child")
	}
	opts := workerOpts()
	opts.Concurrency = 1
	opts.Lease = time.Minute // so only kyu's dead-worker detection can free the job
	opts.IgnoreSignals = false
	w := kyu.NewWorker(kyu.NewClient(url), opts, map[string]kyu.Handler{
		"go_killed": func(ctx context.Context, job *kyu.Task) (any, error) {
			fmt.Printf("TOOK %s\n", job.ID)
			if os.Getenv(modeEnv) == "finish" {
				time.Sleep(500 * time.Millisecond)
				return "finished", nil
			}
			select {}
		},
	})
	_ = w.Run(context.Background())
}
