// Package kyu is the Go client of kyu, a durable job engine with an HTTP API.
//
// It exists so that Go applications neither hand-roll HTTP calls to enqueue and follow
// jobs nor re-implement the worker protocol (docs/worker-protocol.md) to run them:
// [Client] enqueues, reads, waits for, cancels and retries jobs; [Worker] pulls jobs of
// remote types over HTTP and runs them with leases, heartbeats, progress, cancellation
// and graceful shutdown. Only the standard library is used.
package kyu
