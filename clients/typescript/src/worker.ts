/**
 * A worker process's loop: long-poll fetch as many jobs as it has room for, run each
 * through its type's handler with a heartbeat and an AbortSignal, report outcomes in
 * batches, and on SIGTERM stop fetching, let running jobs finish within a grace, then give
 * the rest back to kyu.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Client } from "./client.js";
import { KyuError } from "./errors.js";
import { AckBatcher } from "./acks.js";
import { JobCanceled, JobTimedOut, LeaseLost, WorkerShutdown } from "./aborts.js";
import { HeldJob, type JobContext, type WorkerJob } from "./lease.js";
import { NonRetryable, reportForError } from "./outcomes.js";
import { Pacing } from "./pacing.js";
import { fetchJobs, sendAcks, stopWorker, type Ack, type LeasedJob } from "./protocol.js";

export const VERSION = "ts-0.1.0";

/** Runs one job; what it returns (JSON) becomes the job's result. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each handler narrows its own payload
export type Handler<P = any> = (job: WorkerJob<P>, ctx: JobContext) => unknown;

export interface Logger {
  warn(message: string): void;
}

export interface WorkerOptions {
  /** One handler per job type this worker runs. */
  handlers: Record<string, Handler>;
  /** Jobs run at once (default 10). */
  concurrency?: number;
  /** Most jobs fetched ahead of free slots, waiting in the worker (default 100; 0 for none). Only while jobs are short next to a fetch (measured): they are leased meanwhile, so other workers do not get them. */
  prefetch?: number;
  /** Only jobs of these queues (default: any). */
  queues?: string[];
  /** How long each lease lasts between heartbeats (5–3600, default kyu's 30). */
  leaseSeconds?: number;
  /** How long one fetch waits for a job (long poll, 0–30000, default 30000). */
  waitMs?: number;
  /** After `stop()` or SIGTERM, how long running handlers may take before they are aborted and released (default 10000). */
  graceMs?: number;
  /** Stop gracefully on SIGTERM and SIGINT while `run()` runs (a second signal skips the grace). Default true. */
  handleSignals?: boolean;
  /** Defaults to `host-pid-random`: fresh at each start. */
  workerId?: string;
  /** Where warnings go (default `console`). */
  logger?: Logger;
}

type Report = Omit<Ack, "job_id" | "lease">;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A 4xx that repeating will not fix (bad token, unknown type, bad field). */
function isFatal(err: unknown): boolean {
  return err instanceof KyuError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429;
}

export class Worker {
  readonly id: string;
  private readonly handlers: Record<string, Handler>;
  private readonly types: string[];
  private readonly concurrency: number;
  private readonly pacing: Pacing;
  private readonly waitMs: number;
  private graceMs: number;
  private readonly logger: Logger;
  private readonly acks: AckBatcher;
  /** Fetched and not yet reported. */
  private readonly held = new Map<string, HeldJob>();
  /** Fetched, not started. */
  private readonly waiting: HeldJob[] = [];
  private readonly running = new Map<string, { at: number; done: Promise<void> }>();
  private stopping = false;
  private wakeUp: (() => void) | null = null;
  private cutGrace: (() => void) | null = null;
  private fetchAbort: AbortController | null = null;
  private runPromise: Promise<void> | null = null;

  constructor(
    private readonly client: Client,
    private readonly options: WorkerOptions,
  ) {
    this.handlers = options.handlers;
    this.types = Object.keys(options.handlers);
    if (this.types.length === 0) throw new TypeError("Worker needs at least one handler");
    this.concurrency = Math.max(1, options.concurrency ?? 10);
    this.pacing = new Pacing(this.concurrency, Math.max(0, options.prefetch ?? 100));
    this.waitMs = options.waitMs ?? 30_000;
    this.graceMs = options.graceMs ?? 10_000;
    this.logger = options.logger ?? console;
    this.id = options.workerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.acks = new AckBatcher((acks) => sendAcks(client, acks), (m) => this.logger.warn(m));
  }

  /** Runs until `stop()`, a signal, or kyu asks this worker to stop; rejects if kyu refuses its fetch (bad token, unknown type). */
  run(): Promise<void> {
    this.runPromise ??= this.loop();
    return this.runPromise;
  }

  /** Stops fetching, lets running jobs finish within `graceMs`, releases the rest; resolves when `run()` is done. */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    if (options.graceMs !== undefined) this.graceMs = options.graceMs;
    this.requestStop();
    return (this.runPromise ?? Promise.resolve()).catch(() => undefined);
  }

  private async loop(): Promise<void> {
    const onSignal = (): void => {
      if (this.stopping) this.cutGrace?.();
      else this.requestStop();
    };
    if (this.options.handleSignals ?? true) {
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    }
    try {
      let failures = 0;
      while (!this.stopping) {
        const capacity = this.concurrency + this.pacing.ahead(this.oldestRunningMs());
        const room = capacity - this.held.size;
        // With jobs waiting for a slot, fetch again once half the capacity is free:
        // the next fetch is on its way while those run, and stays large.
        const lowWater = this.waiting.length === 0 ? 1 : Math.max(1, Math.ceil(capacity / 2));
        if (room < lowWater) {
          await this.nextWake();
          continue;
        }
        try {
          await this.fetchOnce(Math.min(room, 100));
          failures = 0;
        } catch (err) {
          if (this.stopping) break;
          if (isFatal(err)) throw err;
          failures++;
          const why = err instanceof Error ? err.message : String(err);
          this.logger.warn(`kyu: fetch failed (${why}), trying again`);
          await Promise.race([sleep(Math.min(5000, 100 * 2 ** failures)), this.nextWake()]);
        }
      }
    } finally {
      await this.shutdown();
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }
  }

  private async fetchOnce(max: number): Promise<void> {
    this.fetchAbort = new AbortController();
    const asked = performance.now();
    try {
      const answer = await fetchJobs(this.client, {
        worker_id: this.id,
        types: this.types,
        ...(this.options.queues ? { queues: this.options.queues } : {}),
        max,
        wait_ms: this.waitMs,
        ...(this.options.leaseSeconds ? { lease_seconds: this.options.leaseSeconds } : {}),
        host: hostname(),
        version: VERSION,
      }, this.fetchAbort.signal);
      this.fetchAbort = null;
      if (answer.jobs.length > 0) this.pacing.fetched(performance.now() - asked);
      for (const wire of answer.jobs) this.take(wire);
      if (answer.stop) this.requestStop();
    } finally {
      this.fetchAbort = null;
    }
  }

  private take(wire: LeasedJob): void {
    const held = new HeldJob(wire, this.client, {
      onStop: () => this.requestStop(),
      warn: (m) => this.logger.warn(m),
    });
    this.held.set(held.job.id, held);
    this.waiting.push(held);
    this.pump();
  }

  /** How long the job running longest has run so far (0 with none). */
  private oldestRunningMs(): number {
    let oldest = Infinity;
    for (const started of this.running.values()) oldest = Math.min(oldest, started.at);
    return oldest === Infinity ? 0 : performance.now() - oldest;
  }

  private pump(): void {
    while (!this.stopping && this.running.size < this.concurrency && this.waiting.length > 0) {
      const held = this.waiting.shift() as HeldJob;
      const id = held.job.id;
      const at = performance.now();
      const done = this.execute(held).finally(() => {
        this.running.delete(id);
        this.pacing.jobRan(performance.now() - at);
        this.pump();
        this.wake();
      });
      this.running.set(id, { at, done });
    }
  }

  private async execute(held: HeldJob): Promise<void> {
    let report: Report | null;
    try {
      const handler = this.handlers[held.job.type];
      if (!handler) throw new NonRetryable(`this worker has no handler for ${held.job.type}`);
      const result = await handler(held.job, held.context(this.id));
      report = { op: "complete", result: result ?? null };
    } catch (err) {
      report = reportForError(err);
    }
    const reason: unknown = held.signal.aborted ? held.signal.reason : undefined;
    if (reason instanceof LeaseLost || reason instanceof WorkerShutdown) report = null;
    else if (reason instanceof JobCanceled && report.op !== "complete") report = { op: "fail", kind: "canceled", message: reason.message };
    else if (reason instanceof JobTimedOut && report.op !== "complete") report = { op: "fail", kind: "timeout", message: reason.message };
    this.finish(held, report);
  }

  /** The job leaves the worker's hands: heartbeats stop and its report (if any) is queued. */
  private finish(held: HeldJob, report: Report | null): void {
    if (!this.held.delete(held.job.id)) return;
    held.release();
    if (!report) return;
    void this.acks.push({ job_id: held.job.id, lease: held.lease, ...report }).then((r) => {
      if (!r.ok && r.code !== "lease_lost") this.logger.warn(`kyu: report for job ${r.job_id} refused: ${r.code ?? "?"}`);
    });
  }

  private requestStop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.wakeNow();
    const pending = this.fetchAbort;
    if (pending) {
      // kyu answers the waiting fetch at once when told to stop this worker; drop it
      // ourselves if that call fails or takes long.
      const drop = setTimeout(() => pending.abort(new WorkerShutdown("worker stopping")), 2000);
      drop.unref();
      stopWorker(this.client, this.id).catch(() => {
        clearTimeout(drop);
        pending.abort(new WorkerShutdown("worker stopping"));
      });
    }
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    for (const held of this.waiting.splice(0)) this.finish(held, { op: "release" });
    if (this.running.size > 0) {
      const grace = new Promise<void>((r) => {
        this.cutGrace = r;
        setTimeout(r, this.graceMs).unref();
      });
      await Promise.race([Promise.allSettled([...this.running.values()].map((r) => r.done)), grace]);
    }
    for (const held of [...this.held.values()]) {
      held.abort(new WorkerShutdown(`worker ${this.id} stopped before job ${held.job.id} ended`));
      this.finish(held, { op: "release" });
    }
    await this.acks.flush();
  }

  private nextWake(): Promise<void> {
    return new Promise((r) => (this.wakeUp = r));
  }

  /** Wakes the loop after this turn, so jobs that end together free their slots together. */
  private wake(): void {
    const w = this.wakeUp;
    if (w) {
      this.wakeUp = null;
      setImmediate(w);
    }
  }

  private wakeNow(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }
}
