/**
 * One error type for everything kyu (or the way to it) refuses, so callers branch on a
 * stable `code` instead of parsing messages.
 */

/** kyu's answer `{"error": {"code", "message", "field"?}}`, or a transport failure. */
export class KyuError extends Error {
  override readonly name = "KyuError";
  /** kyu's stable code (`invalid_payload`, `not_found`, `lease_lost`, …), or `unreachable`, `wait_timeout`. */
  readonly code: string;
  /** The offending field for bad input (`payload.symbols`), when kyu names one. */
  readonly field: string | undefined;
  /** The HTTP status; 0 when no answer came (network error, client-side timeout). */
  readonly status: number;

  constructor(code: string, message: string, status: number, field?: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.status = status;
    this.field = field;
  }
}

/** Builds the error for a non-2xx answer from its body (kyu's shape, or anything else). */
export function errorFromAnswer(status: number, body: string): KyuError {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown; field?: unknown } };
    const e = parsed.error;
    if (e && typeof e.code === "string") {
      const message = typeof e.message === "string" ? e.message : e.code;
      const field = typeof e.field === "string" ? e.field : undefined;
      return new KyuError(e.code, message, status, field);
    }
  } catch {
    // not JSON: fall through to a generic error
  }
  return new KyuError(`http_${status}`, body.slice(0, 200) || `HTTP ${status}`, status);
}
