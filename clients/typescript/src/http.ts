/**
 * The one place that talks HTTP: base URL, bearer token, JSON both ways, timeouts, and
 * kyu's error shape turned into a KyuError. Node's own fetch (undici) keeps connections
 * alive, which the worker's throughput relies on.
 */
import { KyuError, errorFromAnswer } from "./errors.js";

export interface TransportOptions {
  /** kyu's base URL, e.g. `http://127.0.0.1:7878`. */
  url: string;
  /** A token made with `kyu token NAME --role ROLE`; omit when kyu runs without tokens. */
  token?: string | undefined;
  /** How long one request may take before it fails with `unreachable` (default 30 s). */
  timeoutMs?: number | undefined;
}

export class Transport {
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;

  constructor(options: TransportOptions) {
    this.base = options.url.replace(/\/+$/, "");
    this.headers = { "content-type": "application/json", accept: "application/json" };
    if (options.token) this.headers.authorization = `Bearer ${options.token}`;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * Sends one request under `/api/v1` and returns the parsed answer. `extraMs` lengthens
   * the timeout (a long poll); `signal` cancels it.
   */
  async request<T>(method: string, path: string, body?: unknown, init: { signal?: AbortSignal; extraMs?: number } = {}): Promise<T> {
    const timeout = AbortSignal.timeout(this.timeoutMs + (init.extraMs ?? 0));
    const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await fetch(`${this.base}/api/v1${path}`, {
        method,
        headers: this.headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal,
      });
      text = await res.text();
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason;
      const why = err instanceof Error ? err.message : String(err);
      throw new KyuError("unreachable", `${method} ${path}: ${why}`, 0, undefined, { cause: err });
    }
    if (!res.ok) throw errorFromAnswer(res.status, text);
    return (text ? JSON.parse(text) : null) as T;
  }
}
