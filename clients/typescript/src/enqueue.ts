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
  /** Jobs sharing this key run at most `concurrencyLimit` at once, on all nodes together
   * (default: the type's key from kyu's config, if any). */
  concurrencyKey?: string;
  /** The key's limit (default: kyu's config for the key, else 1). */
  concurrencyLimit?: number;
  /** Whose fair share the job counts against (admin tokens only; default: the token's). */
  tenant?: string;
  /** Picks the type's priority for that tier (admin tokens only). */
  tier?: string;
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
  if (o.concurrencyKey !== undefined) body.concurrency_key = o.concurrencyKey;
  if (o.concurrencyLimit !== undefined) body.concurrency_limit = o.concurrencyLimit;
  if (o.tenant !== undefined) body.tenant = o.tenant;
  if (o.tier !== undefined) body.tier = o.tier;
  return body;
}
