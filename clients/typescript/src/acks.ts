/**
 * Batches the worker's reports into `POST /api/v1/acks`: reports made while one request is
 * on its way go together in the next, so a busy worker sends few large requests and an
 * idle one sends each report at once. A failed request is tried again a few times.
 */
import { KyuError } from "./errors.js";
import type { Ack, AckResult } from "./protocol.js";

const MAX_BATCH = 1000;
const RETRY_DELAYS_MS = [100, 300, 1000, 3000];

interface Pending {
  ack: Ack;
  done: (r: AckResult) => void;
}

export class AckBatcher {
  private queue: Pending[] = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly send: (acks: Ack[]) => Promise<AckResult[]>,
    private readonly warn: (message: string) => void,
  ) {}

  /** Queues one report; resolves with kyu's answer for it (`ok: false` when it could not be sent). */
  push(ack: Ack): Promise<AckResult> {
    return new Promise((done) => {
      this.queue.push({ ack, done });
      // setImmediate: reports of handlers that end in the same turn go in one request.
      this.running ??= new Promise<void>((r) => setImmediate(r)).then(() => this.drain());
    });
  }

  /** Resolves when every queued report has been sent (or given up on). */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        const results = await this.sendWithRetries(batch.map((p) => p.ack));
        batch.forEach((p, i) => p.done(results[i] ?? { job_id: p.ack.job_id, ok: false, code: "no_answer" }));
      }
    } finally {
      this.running = null;
    }
  }

  private async sendWithRetries(acks: Ack[]): Promise<AckResult[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.send(acks);
      } catch (err) {
        const delay = RETRY_DELAYS_MS[attempt];
        const permanent = err instanceof KyuError && err.status >= 400 && err.status < 500 && err.status !== 429;
        const why = err instanceof Error ? err.message : String(err);
        if (permanent || delay === undefined) {
          this.warn(`kyu: ${acks.length} report(s) not delivered: ${why}`);
          const code = err instanceof KyuError ? err.code : "unreachable";
          return acks.map((a) => ({ job_id: a.job_id, ok: false, code }));
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
