/**
 * A job as kyu shows it (`GET /api/v1/jobs/{id}`), in JavaScript's spelling: camelCase
 * fields and Dates, with the payload and result left exactly as kyu stored them.
 */

export type JobStatus = "queued" | "scheduled" | "running" | "completed" | "failed" | "canceled";

/** Statuses a job does not leave on its own. */
export const FINISHED: ReadonlySet<JobStatus> = new Set<JobStatus>(["completed", "failed", "canceled"]);

/** One failed attempt. `attempt` and `at` are shown to admins only. */
export interface JobError {
  /** `retryable`, `non_retryable`, `rate_limit`, `timeout`, `panic` or `canceled`. */
  kind: string;
  message: string;
  attempt?: number;
  at?: Date;
}

export interface Job<P = unknown, R = unknown> {
  id: string;
  type: string;
  queue: string;
  provider: string | null;
  priority: number;
  status: JobStatus;
  /** 0–100, as last reported by the worker. */
  progress: number;
  payload: P;
  result: R | null;
  /** The last attempt's error, if any. */
  error: JobError | null;
  /** Every failed attempt's error, oldest first. */
  errors: JobError[];
  attempts: number;
  maxAttempts: number;
  timeoutSeconds: number;
  runAt: Date;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
  cancelRequested: boolean;
  uniqueKey: string | null;
  owner: string | null;
  /** Jobs sharing it run at most its limit at once. */
  concurrencyKey: string | null;
}

/** What `POST /jobs` answers. */
export interface Enqueued {
  id: string;
  status: JobStatus;
  /** `true` when a live job with the same `uniqueKey` answered instead of a new one. */
  duplicate: boolean;
}

export interface WireError {
  kind: string;
  message: string;
  attempt?: number;
  at?: string;
}

export interface WireJob {
  job_id: string;
  type: string;
  queue: string;
  provider: string | null;
  priority: number;
  status: JobStatus;
  progress: number;
  payload: unknown;
  result: unknown;
  error: WireError | null;
  errors: WireError[];
  attempts: number;
  max_attempts: number;
  timeout_seconds: number;
  run_at: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
  cancel_requested: boolean;
  unique_key: string | null;
  concurrency_key?: string | null;
  owner: string | null;
}

export interface WireEnqueued {
  job_id: string;
  status: JobStatus;
  duplicate: boolean;
}

const date = (s: string): Date => new Date(s);
const maybeDate = (s: string | null | undefined): Date | null => (s ? new Date(s) : null);

function errorFromWire(e: WireError): JobError {
  const out: JobError = { kind: e.kind, message: e.message };
  if (e.attempt !== undefined) out.attempt = e.attempt;
  if (e.at !== undefined) out.at = new Date(e.at);
  return out;
}

export function jobFromWire<P, R>(w: WireJob): Job<P, R> {
  return {
    id: w.job_id,
    type: w.type,
    queue: w.queue,
    provider: w.provider,
    priority: w.priority,
    status: w.status,
    progress: w.progress,
    payload: w.payload as P,
    result: (w.result ?? null) as R | null,
    error: w.error ? errorFromWire(w.error) : null,
    errors: (w.errors ?? []).map(errorFromWire),
    attempts: w.attempts,
    maxAttempts: w.max_attempts,
    timeoutSeconds: w.timeout_seconds,
    runAt: date(w.run_at),
    createdAt: date(w.created_at),
    startedAt: maybeDate(w.started_at),
    finishedAt: maybeDate(w.finished_at),
    updatedAt: date(w.updated_at),
    cancelRequested: w.cancel_requested,
    uniqueKey: w.unique_key,
    owner: w.owner,
    concurrencyKey: w.concurrency_key ?? null,
  };
}

export function enqueuedFromWire(w: WireEnqueued): Enqueued {
  return { id: w.job_id, status: w.status, duplicate: w.duplicate };
}
