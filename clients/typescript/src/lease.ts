/**
 * One job in a worker's hands, from fetch to report: it keeps the lease alive with
 * heartbeats (which carry progress), and fires the handler's AbortSignal when the
 * heartbeat says `cancel`, when the lease is lost, or at the attempt's deadline.
 */
import type { Client } from "./client.js";
import { KyuError } from "./errors.js";
import { JobCanceled, JobTimedOut, LeaseLost } from "./aborts.js";
import { heartbeat, type LeasedJob } from "./protocol.js";

/** The job a handler runs. */
export interface WorkerJob<P = unknown> {
  id: string;
  type: string;
  payload: P;
  queue: string;
  provider: string | null;
  priority: number;
  /** 1 for the first attempt. */
  attempt: number;
  maxAttempts: number;
  /** When this attempt times out (the signal fires then), or null without a timeout. */
  deadline: Date | null;
}

/** What a handler gets besides the job. */
export interface JobContext {
  /**
   * Fires when the job is canceled, times out, is no longer this worker's, or the worker
   * stops and its grace has run out; `signal.reason` says which (see aborts.ts). Pass it to
   * fetch and friends, or check `signal.aborted`.
   */
  signal: AbortSignal;
  /**
   * Reports progress (0–100) in a heartbeat sent now; resolves once kyu has it. Throws
   * `signal.reason` if the job was canceled meanwhile, so a loop that reports progress stops there.
   */
  progress(percent: number): Promise<void>;
  workerId: string;
}

export interface HeldJobHooks {
  /** kyu asked the worker to stop (a heartbeat said `stop: true`). */
  onStop(): void;
  warn(message: string): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export class HeldJob {
  readonly job: WorkerJob;
  readonly lease: string;
  readonly controller = new AbortController();
  private leaseExpiresAt: number;
  private progressValue: number | undefined;
  private beatTail: Promise<void> = Promise.resolve();
  private beatsQueued = 0;
  private ticker: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private released = false;

  constructor(
    wire: LeasedJob,
    private readonly client: Client,
    private readonly hooks: HeldJobHooks,
  ) {
    this.lease = wire.lease;
    this.leaseExpiresAt = Date.parse(wire.lease_expires_at);
    this.job = {
      id: wire.job_id,
      type: wire.type,
      payload: wire.payload,
      queue: wire.queue,
      provider: wire.provider,
      priority: wire.priority,
      attempt: wire.attempt,
      maxAttempts: wire.max_attempts,
      deadline: wire.deadline ? new Date(wire.deadline) : null,
    };
    this.ticker = setInterval(() => {
      if (this.beatsQueued === 0) void this.beat().catch(() => undefined);
    }, Math.max(100, wire.heartbeat_ms));
    if (this.job.deadline) {
      const ms = this.job.deadline.getTime() - Date.now();
      if (ms < MAX_TIMER_MS) {
        this.deadlineTimer = setTimeout(() => this.abort(new JobTimedOut(`job ${this.job.id} reached its deadline`)), Math.max(0, ms));
      }
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  context(workerId: string): JobContext {
    return {
      signal: this.controller.signal,
      workerId,
      progress: async (percent: number) => {
        this.progressValue = Math.max(0, Math.min(100, Math.round(percent)));
        await this.beat();
        this.controller.signal.throwIfAborted();
      },
    };
  }

  abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** Stops heartbeats and the deadline: the job has been reported (or given up). */
  release(): void {
    this.released = true;
    clearInterval(this.ticker);
    clearTimeout(this.deadlineTimer);
  }

  /** One heartbeat after those already on their way (so it carries the latest progress). */
  private beat(): Promise<void> {
    this.beatsQueued++;
    const p = this.beatTail.then(() => this.sendBeat()).finally(() => this.beatsQueued--);
    this.beatTail = p.catch(() => undefined);
    return p;
  }

  private async sendBeat(): Promise<void> {
    if (this.released) return;
    const body: { lease: string; progress?: number } = { lease: this.lease };
    if (this.progressValue !== undefined) body.progress = this.progressValue;
    try {
      const answer = await heartbeat(this.client, this.job.id, body);
      this.leaseExpiresAt = Date.parse(answer.lease_expires_at);
      if (answer.cancel) this.abort(new JobCanceled(`job ${this.job.id} was canceled`));
      if (answer.stop) this.hooks.onStop();
    } catch (err) {
      if (err instanceof KyuError && (err.code === "lease_lost" || err.status === 404)) {
        this.abort(new LeaseLost(`job ${this.job.id}: ${err.message}`));
      } else {
        const why = err instanceof Error ? err.message : String(err);
        this.hooks.warn(`kyu: heartbeat for job ${this.job.id} failed: ${why}`);
        if (Date.now() > this.leaseExpiresAt) this.abort(new LeaseLost(`job ${this.job.id}: lease expired without a heartbeat`));
      }
    }
  }
}
