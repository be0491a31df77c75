/**
 * What a handler throws to say how its attempt ended other than "done": each maps to one
 * report of the worker protocol. Any other thrown value counts as `Retryable`.
 */
import type { Ack } from "./protocol.js";

/** Try again later, with kyu's back-off, while attempts remain. */
export class Retryable extends Error {
  override readonly name: string = "Retryable";
}

/** Give up: the job ends `failed` at once. */
export class NonRetryable extends Error {
  override readonly name: string = "NonRetryable";
}

/** The job's provider refused for now: retry after `retryAfterSeconds`; the provider cools down. */
export class RateLimited extends Error {
  override readonly name: string = "RateLimited";
  readonly retryAfterSeconds: number | undefined;

  constructor(message: string, options: { retryAfterSeconds?: number } = {}) {
    super(message);
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** Not now: run the job again in `seconds`; the attempt is not counted and no error is recorded. */
export class Snooze extends Error {
  override readonly name: string = "Snooze";
  readonly seconds: number;

  constructor(seconds: number) {
    super(`snoozed for ${seconds} s`);
    this.seconds = seconds;
  }
}

type Report = Omit<Ack, "job_id" | "lease">;

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** The report for a handler that threw `err`. */
export function reportForError(err: unknown): Report {
  if (err instanceof Snooze) return { op: "snooze", seconds: Math.max(0, Math.ceil(err.seconds)) };
  if (err instanceof NonRetryable) return { op: "fail", kind: "non_retryable", message: messageOf(err) };
  if (err instanceof RateLimited) {
    const r: Report = { op: "fail", kind: "rate_limit", message: messageOf(err) };
    if (err.retryAfterSeconds !== undefined) r.retry_after_seconds = Math.max(0, Math.ceil(err.retryAfterSeconds));
    return r;
  }
  return { op: "fail", kind: "retryable", message: messageOf(err) };
}
