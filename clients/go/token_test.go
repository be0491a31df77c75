package kyu_test

// kyu with tokens: an admin enqueues and stops a worker, a `worker` token runs jobs but
// may not read them, and a bad token is a 401 *kyu.Error.

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
	"github.com/kyu-rs/kyu/clients/go/internal/kyutest"
)

// newToken runs `kyu token NAME --role ROLE`: the token, and its KYU_API_TOKENS entry.
func newToken(t *testing.T, name, role string) (token, entry string) {
	out, err := exec.Command(kyutest.Bin(), "token", name, "--role", role).Output()
	if err != nil {
		t.Fatalf("kyu token: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.LastIndex(line, ": "); i >= 0 {
			v := strings.TrimSpace(line[i+2:])
			if strings.HasPrefix(v, name+":") {
				entry = v
			} else if v != "" {
				token = v
			}
		}
	}
	if token == "" || entry == "" {
		t.Fatalf("cannot read kyu token's output:\n%s", out)
	}
	return token, entry
}

func TestTokensAndWorkerStop(t *testing.T) {
	adminTok, adminEntry := newToken(t, "go-admin", "admin")
	workerTok, workerEntry := newToken(t, "go-worker", "worker")
	srv, err := kyutest.Start(kyutest.Options{Config: remoteTypes, Env: []string{"KYU_API_TOKENS=" + adminEntry + "," + workerEntry}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	admin := kyu.NewClient(srv.URL, kyu.WithToken(adminTok))
	ctx := testCtx(t, 20*time.Second)

	var kerr *kyu.Error
	if _, err := kyu.NewClient(srv.URL, kyu.WithToken("kyu_nope")).Enqueue(ctx, "echo", nil, nil); !errors.As(err, &kerr) || kerr.Status != 401 {
		t.Fatalf("bad token: %#v", err)
	}

	workerClient := kyu.NewClient(srv.URL, kyu.WithToken(workerTok))
	w := kyu.NewWorker(workerClient, workerOpts(), map[string]kyu.Handler{
		"go_progress": func(ctx context.Context, job *kyu.Task) (any, error) { return "ran", nil },
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()

	id := mustEnqueue(t, admin, "go_progress", nil, nil)
	job, err := admin.Wait(ctx, id, nil)
	if err != nil || job.Status != kyu.StatusCompleted {
		t.Fatalf("job %+v, %v", job, err)
	}
	if _, err := workerClient.Get(ctx, id); !errors.As(err, &kerr) || kerr.Status/100 != 4 {
		t.Fatalf("a worker token read a job: %#v", err)
	}
	if err := admin.StopWorker(ctx, w.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stopped worker kept running")
	}
}
