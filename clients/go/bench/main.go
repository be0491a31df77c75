// Command bench measures how fast one Go worker process drains no-op jobs: N jobs are
// enqueued through the batch endpoint, then a Worker with the given concurrency runs
// them; the drain rate (jobs/s until kyu counts all N completed) is printed as JSON.
//
//	go run ./bench                      # starts its own kyu (SQLite in a temp dir), 3 runs
//	go run ./bench -url http://127.0.0.1:7878 -runs 1   # a kyu declaring type go_bench_noop
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sort"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
	"github.com/kyu-rs/kyu/clients/go/internal/kyutest"
)

const jobType = "go_bench_noop"

type run struct {
	EnqueueSeconds float64 `json:"enqueue_seconds"`
	DrainSeconds   float64 `json:"drain_seconds"`
	JobsPerSecond  float64 `json:"jobs_per_s"`
}

func main() {
	n := flag.Int("n", 20000, "jobs per run")
	concurrency := flag.Int("concurrency", 10, "worker concurrency")
	runs := flag.Int("runs", 3, "runs (the median is reported)")
	url := flag.String("url", "", "a running kyu (default: start one per run)")
	flag.Parse()

	var results []run
	for i := 0; i < *runs; i++ {
		r, err := once(*url, *n, *concurrency, fmt.Sprintf("bench-%d-%d", time.Now().Unix(), i))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "run %d: %.0f jobs/s\n", i+1, r.JobsPerSecond)
		results = append(results, r)
	}
	sort.Slice(results, func(a, b int) bool { return results[a].JobsPerSecond < results[b].JobsPerSecond })
	out, _ := json.Marshal(map[string]any{
		"client": "go", "n": *n, "concurrency": *concurrency,
		"jobs_per_s_median": results[len(results)/2].JobsPerSecond, "runs": results,
	})
	fmt.Println(string(out))
}

func once(url string, n, concurrency int, queue string) (run, error) {
	if url == "" {
		srv, err := kyutest.Start(kyutest.Options{Config: "[[kyu_remote_type]]\nname = \"" + jobType + "\"\n"})
		if err != nil {
			return run{}, err
		}
		defer srv.Close()
		url = srv.URL
	}
	ctx := context.Background()
	c := kyu.NewClient(url, kyu.WithToken(os.Getenv("KYU_TOKEN")))
	start := time.Now()
	batch := make([]kyu.NewJob, 0, 1000)
	for i := 0; i < n; i++ {
		batch = append(batch, kyu.NewJob{Type: jobType, EnqueueOptions: kyu.EnqueueOptions{Queue: queue}})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := c.EnqueueMany(ctx, batch); err != nil {
				return run{}, err
			}
			batch = batch[:0]
		}
	}
	enqueued := time.Since(start)

	w := kyu.NewWorker(c, kyu.WorkerOptions{Concurrency: concurrency, Queues: []string{queue}}, map[string]kyu.Handler{
		jobType: func(ctx context.Context, t *kyu.Task) (any, error) { return nil, nil },
	})
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	drainStart := time.Now()
	go func() { done <- w.Run(wctx) }()
	for {
		completed, err := completedIn(url, queue)
		if err != nil {
			return run{}, err
		}
		if completed >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	drained := time.Since(drainStart)
	stop()
	if err := <-done; err != nil {
		return run{}, err
	}
	return run{enqueued.Seconds(), drained.Seconds(), float64(n) / drained.Seconds()}, nil
}

// completedIn reads GET /api/v1/queues: how many jobs of queue are completed.
func completedIn(url, queue string) (int, error) {
	req, _ := http.NewRequest("GET", url+"/api/v1/queues", nil)
	if tok := os.Getenv("KYU_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Queues []struct {
			Name   string
			Counts struct{ Completed int }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	for _, q := range out.Queues {
		if q.Name == queue {
			return q.Counts.Completed, nil
		}
	}
	return 0, nil
}
