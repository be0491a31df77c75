// Command worker runs seed 003's delay_print handler in Go, as a kyu remote worker for the
// type go_delay_print (declared in ../kyu.toml). With -demo it also enqueues one job,
// waits for it and stops, so CI can run it end to end.
//
//	KYU_URL=http://127.0.0.1:7878 go run ./worker          # serve until Ctrl-C / SIGTERM
//	KYU_URL=http://127.0.0.1:7878 go run ./worker -demo    # one job, then exit
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
)

func printJob(ctx context.Context, job *kyu.Task) (any, error) {
	var p struct{ Message string }
	if err := job.Decode(&p); err != nil {
		return nil, kyu.NonRetryable(err)
	}
	job.Progress(50)
	fmt.Printf("[%s] %s\n", time.Now().Format("2006-01-02 15:04:05"), p.Message)
	return map[string]string{"printed": p.Message}, nil
}

func main() {
	demo := flag.Bool("demo", false, "enqueue one job, wait for it, then stop")
	flag.Parse()
	url := os.Getenv("KYU_URL")
	if url == "" {
		url = "http://127.0.0.1:7878"
	}
	client := kyu.NewClient(url, kyu.WithToken(os.Getenv("KYU_TOKEN")))
	worker := kyu.NewWorker(client, kyu.WorkerOptions{Concurrency: 10},
		map[string]kyu.Handler{"go_delay_print": printJob})

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if *demo {
		go func() {
			defer stop()
			job, err := client.Enqueue(ctx, "go_delay_print", map[string]string{"message": "hello from a Go worker"},
				&kyu.EnqueueOptions{Delay: time.Second})
			if err != nil {
				log.Fatal(err)
			}
			final, err := client.Wait(ctx, job.JobID, nil)
			if err != nil || final.Status != kyu.StatusCompleted {
				log.Fatalf("job %s: %v %v", job.JobID, final, err)
			}
			fmt.Printf("job %s completed: %s\n", final.ID, final.Result)
		}()
	}
	if err := worker.Run(ctx); err != nil { // also stops on SIGINT / SIGTERM
		log.Fatal(err)
	}
}
