// Command go-delay-print is seed 003's demo on kyu: it enqueues the built-in delay_print
// job (which prints its message with a timestamp) to run after a short delay, then follows
// it to its end, printing each status it goes through.
//
//	KYU_URL=http://127.0.0.1:7878 go run . -message "hello from Go" -delay 3s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	kyu "github.com/kyu-rs/kyu/clients/go"
)

func main() {
	message := flag.String("message", "Job executed successfully", "what delay_print prints")
	delay := flag.Duration("delay", 3*time.Second, "run no sooner than this from now")
	flag.Parse()

	client := kyu.NewClient(env("KYU_URL", "http://127.0.0.1:7878"), kyu.WithToken(os.Getenv("KYU_TOKEN")))
	ctx, cancel := context.WithTimeout(context.Background(), *delay+time.Minute)
	defer cancel()

	job, err := client.Enqueue(ctx, "delay_print", map[string]string{"message": *message},
		&kyu.EnqueueOptions{Delay: *delay})
	var kerr *kyu.Error
	if errors.As(err, &kerr) {
		log.Fatalf("kyu refused the job: %s (field %q, HTTP %d)", kerr.Code, kerr.Field, kerr.Status)
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("enqueued %s, runs in %s\n", job.JobID, *delay)

	final, err := client.Wait(ctx, job.JobID, func(j *kyu.Job) {
		fmt.Printf("%s  %-9s progress %d%%\n", time.Now().Format("15:04:05.000"), j.Status, j.Progress)
	})
	if err != nil {
		log.Fatal(err)
	}
	if final.Status != kyu.StatusCompleted {
		log.Fatalf("job ended %s: %+v", final.Status, final.Error)
	}
	fmt.Printf("done: %s\n", final.Result)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
