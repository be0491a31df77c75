/**
 * Why a running handler's `ctx.signal` fired: `signal.reason` is one of these, so a
 * handler can tell a cancel from a timeout, a lost lease or the worker shutting down.
 */

/** Someone canceled the job (the heartbeat said `cancel: true`); the worker reports `canceled`. */
export class JobCanceled extends Error {
  override readonly name: string = "JobCanceled";
}

/** The attempt reached its deadline (`timeout_seconds`); the worker reports `timeout`. */
export class JobTimedOut extends Error {
  override readonly name: string = "JobTimedOut";
}

/** kyu no longer counts this worker as the job's owner (the job runs elsewhere); nothing is reported. */
export class LeaseLost extends Error {
  override readonly name: string = "LeaseLost";
}

/** The worker stopped and its grace ran out; the job was given back to kyu (released). */
export class WorkerShutdown extends Error {
  override readonly name: string = "WorkerShutdown";
}
