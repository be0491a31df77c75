/** @kyu/client: enqueue and follow kyu jobs, and run them in Node workers. */
export { Client, type ClientOptions, type WaitOptions, type ListFilter, type JobPage } from "./client.js";
export { KyuError } from "./errors.js";
export type { EnqueueOptions, JobSpec } from "./enqueue.js";
export type { Job, JobError, JobStatus, Enqueued } from "./job.js";
export { Worker, VERSION, type Handler, type WorkerOptions, type Logger } from "./worker.js";
export type { WorkerJob, JobContext } from "./lease.js";
export { Retryable, NonRetryable, RateLimited, Snooze } from "./outcomes.js";
export { JobCanceled, JobTimedOut, LeaseLost, WorkerShutdown } from "./aborts.js";
