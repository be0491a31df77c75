/** The job API through Client: enqueue and wait, reading and listing, cancel and retry, kyu's errors as KyuError. */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Client, KyuError } from "../src/index.js";
import { startKyu, type Kyu } from "./kyu.js";

describe("Client", () => {
  let kyu: Kyu;
  let client: Client;

  before(async () => {
    kyu = await startKyu();
    client = new Client({ url: kyu.url });
  });
  after(() => kyu.stop());

  it("enqueues a job and waits for its result", async () => {
    const job = await client.enqueue("echo", { hello: "kyu" });
    assert.equal(job.duplicate, false);
    const seen: number[] = [];
    const done = await client.wait(job.id, { onProgress: (p) => seen.push(p), timeoutMs: 10_000 });
    assert.equal(done.status, "completed");
    assert.deepEqual(done.result, { hello: "kyu" });
    assert.ok(done.finishedAt instanceof Date);
    assert.ok(seen.length >= 1);
  });

  it("enqueues many at once and lists them", async () => {
    const jobs = await client.enqueueMany([
      { type: "ts_noop", payload: { n: 1 }, queue: "listing" },
      { type: "ts_noop", payload: { n: 2 }, queue: "listing", priority: 9 },
    ]);
    assert.equal(jobs.length, 2);
    const page = await client.list({ queue: "listing", limit: 10 });
    assert.deepEqual(new Set(page.jobs.map((j) => j.id)), new Set(jobs.map((j) => j.id)));
    const one = await client.get(jobs[1]!.id);
    assert.equal(one.priority, 9);
    assert.equal(one.status, "queued");
  });

  it("answers a repeated unique key with the live job", async () => {
    const a = await client.enqueue("ts_noop", {}, { uniqueKey: "only-one" });
    const b = await client.enqueue("ts_noop", {}, { uniqueKey: "only-one" });
    assert.equal(b.id, a.id);
    assert.equal(b.duplicate, true);
  });

  it("cancels a waiting job and retries it", async () => {
    const { id } = await client.enqueue("ts_noop", {}, { delaySeconds: 3600 });
    assert.equal((await client.cancel(id)).status, "canceled");
    assert.equal((await client.retry(id)).status, "queued");
  });

  it("surfaces kyu's error code, field and status", async () => {
    await assert.rejects(client.enqueue("ts_stocks", { symbols: "7203" }), (e: unknown) => {
      assert.ok(e instanceof KyuError);
      assert.equal(e.code, "invalid_payload");
      assert.equal(e.status, 422);
      assert.equal(e.field, "payload.symbols");
      return true;
    });
    await assert.rejects(client.enqueue("no_such_type", {}), { name: "KyuError", code: "unknown_job_type" });
    await assert.rejects(client.get("0193b3c0-0000-7000-8000-000000000000"), { code: "not_found", status: 404 });
    await assert.rejects(client.enqueue("echo", {}, { priority: 99 }), (e: unknown) => {
      assert.ok(e instanceof KyuError && e.status >= 400 && e.status < 500 && e.field === "priority");
      return true;
    });
  });

  it("says unreachable when no kyu answers", async () => {
    const nowhere = new Client({ url: "http://127.0.0.1:1", timeoutMs: 2000 });
    await assert.rejects(nowhere.get("x"), { code: "unreachable", status: 0 });
  });

  it("gives up waiting after timeoutMs", async () => {
    const { id } = await client.enqueue("ts_noop", {}, { delaySeconds: 3600 });
    await assert.rejects(client.wait(id, { timeoutMs: 300 }), { code: "wait_timeout" });
  });
});
