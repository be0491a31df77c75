/**
 * The options of a new job, spelled for JavaScript, and their translation to the body of
 * `POST /api/v1/jobs` (snake_case; a Date for `runAt` becomes RFC 3339).
 */

export interface EnqueueOptions {
  /** 0–10, higher runs first (default: the type's). */
  priority?: number;
  queue?: string;
  /** The rate-limit bucket the job draws from. */
  provider?: string;
  /** Run no earlier than this many seconds from now. */
  delaySeconds?: number;
  /** Run no earlier than this time (instead of `delaySeconds`). */
  runAt?: Date | string;
  maxRetries?: number;
  timeoutSeconds?: number;
  /** While a live job has this key, enqueueing again answers that job (`duplicate: true`). */
  uniqueKey?: string;
}

/** One job of `enqueueMany`. */
export interface JobSpec<P = unknown> extends EnqueueOptions {
  type: string;
  payload: P;
}

export function jobBody(type: string, payload: unknown, o: EnqueueOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { type, payload };
  if (o.priority !== undefined) body.priority = o.priority;
  if (o.queue !== undefined) body.queue = o.queue;
  if (o.provider !== undefined) body.provider = o.provider;
  if (o.delaySeconds !== undefined) body.delay_seconds = o.delaySeconds;
  if (o.runAt !== undefined) body.run_at = o.runAt instanceof Date ? o.runAt.toISOString() : o.runAt;
  if (o.maxRetries !== undefined) body.max_retries = o.maxRetries;
  if (o.timeoutSeconds !== undefined) body.timeout_seconds = o.timeoutSeconds;
  if (o.uniqueKey !== undefined) body.unique_key = o.uniqueKey;
  return body;
}
