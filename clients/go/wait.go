package kyu

// Following a job to its end: kyu's API has no push for one job, so Wait polls GET
// /jobs/{id}, starting fast (most jobs are short) and slowing down to a steady pace.

import (
	"context"
	"time"
)

// WaitPollMax is the longest pause between two reads of a job in Wait.
var WaitPollMax = time.Second

// Wait reads the job until its status is final and returns it as it ended (a failed or
// canceled job is not an error: look at Job.Status and Job.Error). onProgress, if not nil,
// is called with the first reading and with every reading whose status or progress
// changed. It gives up with ctx's error; wrap ctx with a timeout to bound the wait.
func (c *Client) Wait(ctx context.Context, id string, onProgress func(*Job)) (*Job, error) {
	pause := 50 * time.Millisecond
	var lastStatus Status
	lastProgress := -1
	for {
		job, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if onProgress != nil && (job.Status != lastStatus || job.Progress != lastProgress) {
			onProgress(job)
		}
		lastStatus, lastProgress = job.Status, job.Progress
		if job.Status.Final() {
			return job, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		if pause *= 2; pause > WaitPollMax {
			pause = WaitPollMax
		}
	}
}
