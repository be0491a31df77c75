/**
 * The client side of kyu's job API: enqueue jobs, read them, follow one to its end, cancel
 * and retry, list. Workers are built on it (see worker.ts).
 */
import { KyuError } from "./errors.js";
import { Transport, type TransportOptions } from "./http.js";
import { jobBody, type EnqueueOptions, type JobSpec } from "./enqueue.js";
import {
  FINISHED,
  enqueuedFromWire,
  jobFromWire,
  type Enqueued,
  type Job,
  type JobStatus,
  type WireEnqueued,
  type WireJob,
} from "./job.js";

export type ClientOptions = TransportOptions;

export interface WaitOptions {
  /** Called whenever the job's progress changes (and once with the first reading). */
  onProgress?: (progress: number, job: Job) => void;
  /** Give up after this long with a KyuError `wait_timeout` (default: wait forever). */
  timeoutMs?: number;
  /** The longest pause between two readings (default 1000 ms; it starts at 50 ms). */
  maxIntervalMs?: number;
  signal?: AbortSignal;
}

export interface ListFilter {
  type?: string;
  status?: JobStatus;
  queue?: string;
  owner?: string;
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface JobPage {
  jobs: Job[];
  /** Pass as `cursor` for the next page; absent on the last page. */
  nextCursor?: string;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason as Error);
    }, { once: true });
  });

export class Client {
  private readonly http: Transport;

  constructor(options: ClientOptions) {
    this.http = new Transport(options);
  }

  /**
   * Any call under `/api/v1` (e.g. `request("GET", "/queues")`), with the client's token
   * and errors; the worker speaks the protocol through it.
   */
  request<T>(method: string, path: string, body?: unknown, init?: { signal?: AbortSignal; extraMs?: number }): Promise<T> {
    return this.http.request<T>(method, path, body, init);
  }

  /** Creates one job; a bad payload is a KyuError `invalid_payload` (422) naming the field. */
  async enqueue<P>(type: string, payload: P, options: EnqueueOptions = {}): Promise<Enqueued> {
    const w = await this.http.request<WireEnqueued>("POST", "/jobs", jobBody(type, payload, options));
    return enqueuedFromWire(w);
  }

  /** Creates several jobs in one request, all or none. */
  async enqueueMany(jobs: JobSpec[]): Promise<Enqueued[]> {
    const body = { jobs: jobs.map((j) => jobBody(j.type, j.payload, j)) };
    const w = await this.http.request<{ jobs: WireEnqueued[] }>("POST", "/jobs/batch", body);
    return w.jobs.map(enqueuedFromWire);
  }

  async get<P = unknown, R = unknown>(id: string): Promise<Job<P, R>> {
    return jobFromWire<P, R>(await this.http.request<WireJob>("GET", `/jobs/${encodeURIComponent(id)}`));
  }

  /**
   * Reads the job until it is completed, failed or canceled and returns it (check
   * `status`); reports progress on the way. Polls, quickly at first.
   */
  async wait<P = unknown, R = unknown>(id: string, options: WaitOptions = {}): Promise<Job<P, R>> {
    const started = Date.now();
    const maxInterval = options.maxIntervalMs ?? 1000;
    let interval = 50;
    let seen = -1;
    for (;;) {
      const job = await this.get<P, R>(id);
      if (job.progress !== seen) {
        seen = job.progress;
        interval = 50;
        options.onProgress?.(job.progress, job);
      }
      if (FINISHED.has(job.status)) return job;
      if (options.timeoutMs !== undefined && Date.now() - started + interval > options.timeoutMs) {
        throw new KyuError("wait_timeout", `job ${id} still ${job.status} after ${options.timeoutMs} ms`, 0);
      }
      await sleep(interval, options.signal);
      interval = Math.min(maxInterval, Math.ceil(interval * 1.5));
    }
  }

  /** Cancels a queued or scheduled job, or asks a running one to stop (its worker sees `cancel`). */
  async cancel(id: string): Promise<Job> {
    return jobFromWire(await this.http.request<WireJob>("POST", `/jobs/${encodeURIComponent(id)}/cancel`));
  }

  /** Queues a failed or canceled job again. */
  async retry(id: string): Promise<Job> {
    return jobFromWire(await this.http.request<WireJob>("POST", `/jobs/${encodeURIComponent(id)}/retry`));
  }

  /** One page of jobs, newest first. */
  async list(filter: ListFilter = {}): Promise<JobPage> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v !== undefined) q.set(k, String(v));
    const qs = q.size ? `?${q.toString()}` : "";
    const w = await this.http.request<{ jobs: WireJob[]; next_cursor?: string | null }>("GET", `/jobs${qs}`);
    const page: JobPage = { jobs: w.jobs.map((j) => jobFromWire(j)) };
    if (w.next_cursor) page.nextCursor = w.next_cursor;
    return page;
  }
}
