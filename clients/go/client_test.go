package kyu_test

// The client side: enqueue, wait, read, list, and kyu's refusals as *kyu.Error.

import (
	"context"
	"errors"
	"testing"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
)

func TestEnqueueAndWait(t *testing.T) {
	c := newClient()
	ctx := testCtx(t, 20*time.Second)
	e, err := c.Enqueue(ctx, "echo", map[string]any{"hello": "go"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.JobID == "" || e.Duplicate {
		t.Fatalf("enqueued: %+v", e)
	}
	var seen []kyu.Status
	job, err := c.Wait(ctx, e.JobID, func(j *kyu.Job) { seen = append(seen, j.Status) })
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != kyu.StatusCompleted {
		t.Fatalf("status %s, error %+v", job.Status, job.Error)
	}
	var res map[string]string
	if err := job.DecodeResult(&res); err != nil || res["hello"] != "go" {
		t.Fatalf("result %s (%v)", job.Result, err)
	}
	if len(seen) == 0 || seen[len(seen)-1] != kyu.StatusCompleted {
		t.Fatalf("onProgress saw %v", seen)
	}
}

func TestEnqueueManyGetAndList(t *testing.T) {
	c := newClient()
	ctx := testCtx(t, 20*time.Second)
	key := "go-unique-" + time.Now().Format("150405.000000")
	jobs, err := c.EnqueueMany(ctx, []kyu.NewJob{
		{Type: "echo", Payload: map[string]int{"n": 1}, EnqueueOptions: kyu.EnqueueOptions{Queue: "go-list", Delay: time.Hour}},
		{Type: "echo", Payload: map[string]int{"n": 2}, EnqueueOptions: kyu.EnqueueOptions{Queue: "go-list", Delay: time.Hour, UniqueKey: key, MaxRetries: kyu.Int(0), Priority: 9}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Status != kyu.StatusScheduled {
		t.Fatalf("batch answer %+v", jobs)
	}
	dup, err := c.Enqueue(ctx, "echo", nil, &kyu.EnqueueOptions{UniqueKey: key})
	if err != nil || !dup.Duplicate || dup.JobID != jobs[1].JobID {
		t.Fatalf("unique key: %+v, %v", dup, err)
	}
	j, err := c.Get(ctx, jobs[1].JobID)
	if err != nil {
		t.Fatal(err)
	}
	if j.Priority != 9 || j.MaxAttempts != 1 || j.Queue != "go-list" || j.Type != "echo" {
		t.Fatalf("job %+v", j)
	}
	page, err := c.List(ctx, &kyu.ListOptions{Queue: "go-list", Status: kyu.StatusScheduled, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Jobs) != 1 || page.NextCursor == "" {
		t.Fatalf("first page %+v", page)
	}
	next, err := c.List(ctx, &kyu.ListOptions{Queue: "go-list", Limit: 1, Cursor: page.NextCursor})
	if err != nil || len(next.Jobs) != 1 || next.Jobs[0].ID == page.Jobs[0].ID {
		t.Fatalf("second page %+v, %v", next, err)
	}
	// Cancel a scheduled job, then retry it.
	canceled, err := c.Cancel(ctx, jobs[0].JobID)
	if err != nil || canceled.Status != kyu.StatusCanceled {
		t.Fatalf("cancel: %+v, %v", canceled, err)
	}
	again, err := c.Retry(ctx, jobs[0].JobID)
	if err != nil || again.Status.Final() {
		t.Fatalf("retry: %+v, %v", again, err)
	}
}

func TestBadInputIsAnError(t *testing.T) {
	c := newClient()
	ctx := testCtx(t, 10*time.Second)
	var kerr *kyu.Error

	_, err := c.Enqueue(ctx, "go_stocks", map[string]any{"symbols": "7203"}, nil)
	if !errors.As(err, &kerr) || kerr.Status != 422 || kerr.Code != "invalid_payload" || kerr.Field != "payload.symbols" {
		t.Fatalf("schema refusal: %#v", err)
	}
	_, err = c.Enqueue(ctx, "echo", nil, &kyu.EnqueueOptions{Priority: 11})
	if !errors.As(err, &kerr) || kerr.Status/100 != 4 || kerr.Field != "priority" {
		t.Fatalf("bad priority: %#v", err)
	}
	_, err = c.Enqueue(ctx, "no_such_type", nil, nil)
	if !errors.As(err, &kerr) || kerr.Code != "unknown_job_type" {
		t.Fatalf("unknown type: %#v", err)
	}
	_, err = c.Get(ctx, "0193a3e2-0000-7000-8000-000000000000")
	if !errors.As(err, &kerr) || kerr.Status != 404 || kerr.Code != "not_found" {
		t.Fatalf("missing job: %#v", err)
	}
	e, err := c.Enqueue(ctx, "echo", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, e.JobID, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Retry(ctx, e.JobID) // a completed job cannot be retried
	if !errors.As(err, &kerr) || kerr.Status != 409 {
		t.Fatalf("retry of a completed job: %#v", err)
	}
	if kerr.Error() == "" {
		t.Fatal("empty message")
	}
}

func TestWaitGivesUpWithTheContext(t *testing.T) {
	c := newClient()
	id := mustEnqueue(t, c, "echo", nil, &kyu.EnqueueOptions{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Wait(ctx, id, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait: %v", err)
	}
}
