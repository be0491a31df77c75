/** A worker killed while it holds a job: kyu declares it dead and another worker runs the job. */
import { after, before, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { Client, Worker } from "../src/index.js";
import { CLIENT_DIR, startKyu, type Kyu } from "./kyu.js";

let kyu: Kyu | undefined;
before(async () => {
  // kyu wants dead_after above its own heartbeat interval (2 s by default).
  kyu = await startKyu({ env: { KYU_NODE_DEAD_AFTER: "2s", KYU_NODE_HEARTBEAT_INTERVAL: "500ms" } });
});
after(() => kyu?.stop());

it("runs a SIGKILLed worker's job again elsewhere", async () => {
  assert.ok(kyu);
  const url = kyu.url;
  const client = new Client({ url });
  const { id } = await client.enqueue("ts_test", { v: 1 });

  const child = spawn(process.execPath, [join(CLIENT_DIR, "build/test/fixtures/stuck-worker.js")], {
    env: { ...process.env, KYU_URL: url },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  while (!out.includes(`took ${id}`)) {
    if (child.exitCode !== null) throw new Error(`stuck worker exited: ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal((await client.get(id)).status, "running");
  child.kill("SIGKILL");
  await once(child, "exit");

  const killedAt = Date.now();
  const worker = new Worker(client, { handlers: { ts_test: (job) => ({ attempt: job.attempt }) }, handleSignals: false, waitMs: 1000 });
  const running = worker.run();
  const done = await client.wait(id, { timeoutMs: 15_000 });
  await worker.stop();
  await running;
  assert.equal(done.status, "completed");
  assert.deepEqual(done.result, { attempt: 2 });
  assert.ok(Date.now() - killedAt < 10_000, `re-run ${Date.now() - killedAt} ms after the kill`);
});
