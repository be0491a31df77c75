/** Worker against a real kyu: progress, cancel through the heartbeat, retries, the other outcomes, deadline, graceful stop. */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Client, JobCanceled, JobTimedOut, NonRetryable, RateLimited, Retryable, Snooze, Worker, type Handler } from "../src/index.js";
import { eventually, startKyu, type Kyu } from "./kyu.js";

/** A promise with its resolve, for handlers the test steps through. */
function gate<T = void>(): { promise: Promise<T>; open: (v: T) => void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => (open = r));
  return { promise, open };
}

describe("Worker", () => {
  let kyu: Kyu;
  let client: Client;

  before(async () => {
    kyu = await startKyu();
    client = new Client({ url: kyu.url });
  });
  after(() => kyu.stop());

  /** Runs a worker for `ts_test` jobs while `body` runs. */
  async function withWorker(handler: Handler, body: (w: Worker) => Promise<void>, leaseSeconds = 5): Promise<void> {
    const worker = new Worker(client, { handlers: { ts_test: handler }, concurrency: 4, leaseSeconds, handleSignals: false, waitMs: 1000 });
    const running = worker.run();
    try {
      await body(worker);
    } finally {
      await worker.stop({ graceMs: 1000 });
      await running;
    }
  }

  it("runs a job and shows its progress", async () => {
    const reported = gate();
    const seen = gate();
    await withWorker(async (job: { payload: { n: number } }, ctx) => {
      await ctx.progress(40);
      reported.open();
      await seen.promise;
      return { doubled: job.payload.n * 2 };
    }, async () => {
      const { id } = await client.enqueue("ts_test", { n: 21 });
      await reported.promise;
      const during = await client.get(id);
      assert.equal(during.status, "running");
      assert.equal(during.progress, 40);
      seen.open();
      const done = await client.wait(id, { timeoutMs: 10_000 });
      assert.equal(done.status, "completed");
      assert.deepEqual(done.result, { doubled: 42 });
    });
  });

  it("aborts a running handler when its job is canceled", async () => {
    const started = gate();
    const reason = gate<unknown>();
    await withWorker(async (_job, ctx) => {
      started.open();
      await new Promise((_, fail) => ctx.signal.addEventListener("abort", () => {
        reason.open(ctx.signal.reason);
        fail(ctx.signal.reason as Error);
      }));
    }, async () => {
      const { id } = await client.enqueue("ts_test", {});
      await started.promise;
      await client.cancel(id);
      assert.ok((await reason.promise) instanceof JobCanceled, "the signal's reason is JobCanceled");
      const done = await client.wait(id, { timeoutMs: 10_000 });
      assert.equal(done.status, "canceled");
    });
  });

  it("retries after a Retryable error and completes the second attempt", async () => {
    await withWorker((job) => {
      if (job.attempt === 1) throw new Retryable("flaky upstream");
      return { attempt: job.attempt };
    }, async () => {
      const { id } = await client.enqueue("ts_test", {});
      const done = await client.wait(id, { timeoutMs: 15_000 });
      assert.equal(done.status, "completed");
      assert.deepEqual(done.result, { attempt: 2 });
      assert.equal(done.attempts, 2);
      assert.equal(done.errors[0]?.kind, "retryable");
      assert.equal(done.errors[0]?.message, "flaky upstream");
    });
  });

  it("maps NonRetryable, RateLimited and Snooze to their reports", async () => {
    await withWorker((job: { payload: { outcome: string } }) => {
      switch (job.payload.outcome) {
        case "fail": throw new NonRetryable("bad input");
        case "limit": throw new RateLimited("slow down", { retryAfterSeconds: 60 });
        default: throw new Snooze(60);
      }
    }, async () => {
      const fail = await client.enqueue("ts_test", { outcome: "fail" });
      const limit = await client.enqueue("ts_test", { outcome: "limit" });
      const snooze = await client.enqueue("ts_test", { outcome: "snooze" });
      const failed = await client.wait(fail.id, { timeoutMs: 10_000 });
      assert.equal(failed.status, "failed");
      assert.equal(failed.error?.kind, "non_retryable");
      const limited = await eventually(async () => { const j = await client.get(limit.id); return j.status === "scheduled" ? j : undefined; });
      assert.equal(limited.error?.kind, "rate_limit");
      assert.ok(limited.runAt.getTime() > Date.now() + 30_000);
      const snoozed = await eventually(async () => { const j = await client.get(snooze.id); return j.status === "scheduled" ? j : undefined; });
      assert.equal(snoozed.errors.length, 0);
    });
  });

  it("aborts a handler at its deadline and reports a timeout", async () => {
    const reason = gate<unknown>();
    await withWorker(async (_job, ctx) => {
      await new Promise((_, fail) => ctx.signal.addEventListener("abort", () => {
        reason.open(ctx.signal.reason);
        fail(ctx.signal.reason as Error);
      }));
    }, async () => {
      const { id } = await client.enqueue("ts_test", {}, { timeoutSeconds: 1, maxRetries: 0 });
      assert.ok((await reason.promise) instanceof JobTimedOut);
      const done = await client.wait(id, { timeoutMs: 10_000 });
      assert.equal(done.status, "failed");
      assert.equal(done.error?.kind, "timeout");
    });
  });

  it("gives unfinished jobs back when stopped past its grace", async () => {
    const started = gate();
    const worker = new Worker(client, { handlers: { ts_test: (_job, ctx) => { started.open(); return new Promise((r) => ctx.signal.addEventListener("abort", r)); } }, handleSignals: false, waitMs: 1000 });
    const running = worker.run();
    const { id } = await client.enqueue("ts_test", {});
    await started.promise;
    const t0 = Date.now();
    await worker.stop({ graceMs: 300 });
    await running;
    assert.ok(Date.now() - t0 < 3000, "stop returns soon after the grace");
    const back = await client.get(id);
    assert.equal(back.status, "queued");
    await client.cancel(id);
  });

  it("drains a batch of no-op jobs", async () => {
    const jobs = await client.enqueueMany(Array.from({ length: 300 }, (_, n) => ({ type: "ts_noop", payload: { n } })));
    const worker = new Worker(client, { handlers: { ts_noop: () => null }, concurrency: 10, handleSignals: false, waitMs: 500 });
    const running = worker.run();
    const last = jobs[jobs.length - 1]!.id;
    const done = await client.wait(last, { timeoutMs: 20_000 });
    assert.equal(done.status, "completed");
    await eventually(async () => ((await client.list({ type: "ts_noop", status: "completed", limit: 500 })).jobs.length >= 300 ? true : undefined));
    await worker.stop();
    await running;
  });
});
